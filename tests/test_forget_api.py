"""Forgetting a node: DELETE /api/clusters/{id}/nodes/{hostname} — G2, lock, queue, records."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from rke2_manager.cluster_lock import lock_cluster_row
from rke2_manager.config import PACKAGE_DIR, Settings
from rke2_manager.db import Database
from rke2_manager.jobs.queue import start_next
from rke2_manager.models import Cluster, Job, Node
from tests.factories import lock_cluster, make_cluster

NODES = [
    ("m1", "127.0.30.1", "server", "ACTIVE"),
    ("m2", "127.0.30.2", "server", "ACTIVE"),
    ("m3", "127.0.30.3", "server", "FAILED"),
    ("w1", "127.0.30.9", "agent", "FAILED"),
    ("p1", "127.0.30.10", "server", "PENDING"),
]


def counts(db: Database) -> tuple[int, int, str]:
    with db.read_session() as s:
        cluster = s.scalars(select(Cluster)).one()
        return (
            s.scalar(select(func.count(Job.id))) or 0,
            s.scalar(select(func.count(Node.id))) or 0,
            cluster.operation_status,
        )


def params(db: Database, job_id: int) -> dict[str, object]:
    with db.read_session() as s:
        job = s.get(Job, job_id)
        assert job is not None
        return dict(job.params)


@pytest.fixture
def cid(db: Database) -> int:
    return make_cluster(db, nodes=NODES)


def test_forget_a_pending_node_is_a_job(client: TestClient, db: Database, cid: int) -> None:
    r = client.delete(f"/api/clusters/{cid}/nodes/p1")
    assert r.status_code == 202, r.text
    job = r.json()["job"]
    assert job["operation"] == "forget_node"
    assert [n["hostname"] for n in job["nodes"]] == ["p1"]
    assert params(db, job["id"])["pending"] == ["p1"]


def test_forget_a_dead_server_needs_confirmation(
    client: TestClient, db: Database, cid: int
) -> None:
    before = counts(db)
    r = client.delete(f"/api/clusters/{cid}/nodes/m3")
    assert r.status_code == 400
    assert r.json()["detail"] == "Removing control-plane nodes requires explicit confirmation."
    assert r.json()["guardrail"] == "G2"
    assert counts(db) == before
    r = client.delete(f"/api/clusters/{cid}/nodes/m3?confirm_master_removal=true")
    assert r.status_code == 202, r.text
    assert params(db, r.json()["job_id"])["pending"] == []


def test_forget_keeps_quorum(client: TestClient, db: Database) -> None:
    # two of three servers dead: forgetting one leaves one ACTIVE of three members
    cid = make_cluster(
        db,
        nodes=[
            ("m1", "127.0.30.1", "server", "ACTIVE"),
            ("m2", "127.0.30.2", "server", "FAILED"),
            ("m3", "127.0.30.3", "server", "FAILED"),
        ],
    )
    before = counts(db)
    r = client.delete(f"/api/clusters/{cid}/nodes/m3?confirm_master_removal=true")
    assert r.status_code == 400
    assert r.json()["detail"] == "Removing 1 server(s) would break etcd quorum."
    assert counts(db) == before


@pytest.mark.parametrize("status", ["ACTIVE", "INSTALLING", "REMOVING", "UPGRADING"])
def test_forget_refuses_a_node_last_seen_working(
    client: TestClient, db: Database, status: str
) -> None:
    cid = make_cluster(
        db,
        nodes=[
            ("m1", "127.0.30.1", "server", "ACTIVE"),
            ("m2", "127.0.30.2", "server", "ACTIVE"),
            ("m3", "127.0.30.3", "server", "ACTIVE"),
            ("w1", "127.0.30.9", "agent", status),
        ],
    )
    before = counts(db)
    for host in ("m2", "w1") if status == "ACTIVE" else ("w1",):
        r = client.delete(f"/api/clusters/{cid}/nodes/{host}?confirm_master_removal=true")
        assert r.status_code == 409, r.text
        assert r.json()["detail"] == (
            f"Node '{host}' is {status}: only a node never installed (PENDING) or a failed one "
            "(FAILED) can be forgotten. Remove a live node with scale/remove; if its machine is "
            "gone, that removal fails on it and marks it FAILED, and then it can be forgotten."
        )
        # a plan says the same, and writes nothing either
        r = client.delete(f"/api/clusters/{cid}/nodes/{host}?dry_run=true")
        assert r.status_code == 200, r.text
        assert r.json()["refusal"]["status"] == 409
    assert counts(db) == before


def test_forget_an_agent_needs_no_confirmation(client: TestClient, db: Database, cid: int) -> None:
    r = client.delete(f"/api/clusters/{cid}/nodes/w1")
    assert r.status_code == 202, r.text


def test_forget_the_initial_master_hands_its_role_on(client: TestClient, db: Database) -> None:
    cid = make_cluster(
        db,
        nodes=[
            ("m1", "127.0.30.1", "server", "FAILED"),
            ("m2", "127.0.30.2", "server", "ACTIVE"),
            ("m3", "127.0.30.3", "server", "ACTIVE"),
        ],
    )
    r = client.delete(f"/api/clusters/{cid}/nodes/m1?confirm_master_removal=true")
    assert r.status_code == 202, r.text
    with db.read_session() as s:
        masters = [n.hostname for n in s.scalars(select(Node)) if n.is_initial_master]
    assert masters == ["m2"]


def test_forget_refusals(client: TestClient, db: Database, cid: int) -> None:
    before = counts(db)
    r = client.delete(f"/api/clusters/{cid}/nodes/nope")
    assert r.status_code == 404
    assert r.json()["detail"] == "Node 'nope' not found in cluster 'prod'"
    for bad in ("UPPER", "-x", "a_b", "x" * 254):
        assert client.delete(f"/api/clusters/{cid}/nodes/{bad}").status_code == 422
    assert client.delete("/api/clusters/99/nodes/p1").status_code == 404
    assert counts(db) == before
    running = lock_cluster(db, cid, "install")
    r = client.delete(f"/api/clusters/{cid}/nodes/p1")
    assert r.status_code == 409
    assert r.json()["detail"] == (
        f"Cluster is busy with operation 'install' (job {running}). Please wait."
    )
    r = client.delete(f"/api/clusters/{cid}/nodes/p1?on_busy=queue")
    assert r.status_code == 202
    assert (r.json()["status"], r.json()["position"]) == ("queued", 1)


def test_a_queued_forget_is_checked_again_at_its_start(
    client: TestClient, db: Database, cid: int
) -> None:
    """Queued behind a job, then the node is gone when the lock frees: the forget fails at
    its start with the refusal, and the lock goes on."""
    lock_cluster(db, cid, "install")
    r = client.delete(f"/api/clusters/{cid}/nodes/p1?on_busy=queue")
    queued = r.json()["job_id"]
    with db.transaction() as s:
        s.delete(s.scalars(select(Node).where(Node.hostname == "p1")).one())
        cluster = s.get(Cluster, cid)
        assert cluster is not None
        cluster.operation_status, cluster.current_job_id = "idle", None
    with db.transaction() as s:
        cluster = lock_cluster_row(s, cid)
        assert start_next(s, client.app.state.ctx.settings, cluster) is None  # type: ignore[attr-defined]
    with db.read_session() as s:
        job = s.get(Job, queued)
        assert job is not None
        assert (job.status, job.reason) == ("failed", "Node 'p1' not found in cluster 'prod'")


@pytest.fixture
def playbook_dir() -> Path:
    """The playbooks that ship in the package (a PENDING node's forget contacts no host)."""
    return Path(PACKAGE_DIR / "playbooks")


def test_forgetting_a_pending_node_runs_nothing_on_any_host(
    worker_client: TestClient, db: Database, settings: Settings
) -> None:
    # addresses nobody answers on: the run must not try them (the test's network guard and
    # the allowed networks would refuse it anyway)
    cid = make_cluster(
        db,
        nodes=[("m1", "127.0.31.1", "server", "PENDING"), ("p1", "127.0.31.2", "agent", "PENDING")],
    )
    r = worker_client.delete(f"/api/clusters/{cid}/nodes/p1")
    assert r.status_code == 202, r.text
    job_id = r.json()["job_id"]
    deadline = time.monotonic() + 60
    while (job := worker_client.get(f"/api/jobs/{job_id}").json())["status"] not in (
        "succeeded",
        "failed",
    ):
        assert time.monotonic() < deadline, job
        time.sleep(0.2)
    assert job["status"] == "succeeded", job
    with db.read_session() as s:
        assert [n.hostname for n in s.scalars(select(Node))] == ["m1"]
    log = "\n".join(
        line["text"]
        for line in worker_client.get(f"/api/jobs/{job_id}/log", params={"limit": 1000}).json()[
            "lines"
        ]
    )
    assert "p1 is forgotten (it was never installed)" in log
    assert "UNREACHABLE" not in log and "127.0.31" not in log


def test_a_queued_forget_of_a_pending_node_a_job_ahead_installed_is_refused_at_start(
    client: TestClient, db: Database, cid: int
) -> None:
    lock_cluster(db, cid, "install")
    r = client.delete(f"/api/clusters/{cid}/nodes/p1?on_busy=queue&confirm_master_removal=true")
    assert r.status_code == 202, r.text
    queued = r.json()["job_id"]
    assert params(db, queued)["status"] == "PENDING"
    # the install ahead of it installed p1 meanwhile
    with db.transaction() as s:
        s.scalars(select(Node).where(Node.hostname == "p1")).one().status = "ACTIVE"
        cluster = s.get(Cluster, cid)
        assert cluster is not None
        cluster.operation_status, cluster.current_job_id = "idle", None
    with db.transaction() as s:
        assert start_next(s, client.app.state.ctx.settings, lock_cluster_row(s, cid)) is None  # type: ignore[attr-defined]
    with db.read_session() as s:
        job = s.get(Job, queued)
        assert job is not None and job.status == "failed"
        assert job.reason == (
            "Node 'p1' is ACTIVE now, not PENDING as when it was asked to be forgotten. "
            "Ask again if it is still to be forgotten."
        )
        assert s.scalars(select(Node).where(Node.hostname == "p1")).one().status == "ACTIVE"
