"""SPEC §11 "no stuck state": whatever path ends a running job, nothing is left behind.

No job stays ``queued`` or ``running`` (a G3 agents job included), no lock is held by an ended
job, no node stays ``INSTALLING``/``REMOVING`` without a reason, and an install that did not
succeed leaves the cluster's stage ``failed``, never ``installing``.
"""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from rke2_manager.config import Settings
from rke2_manager.db import Database
from rke2_manager.execution.ansible_service import RunOutcome
from rke2_manager.jobs.reaper import (
    LEASE_EXPIRED,
    dead_workers_jobs,
    reap_expired,
    recover_dead_workers,
)
from rke2_manager.jobs.stopping import UNCONFIRMED, boot_id, machine_prefix
from rke2_manager.models import Cluster, ClusterStage, Job, Node, NodeStatus, utcnow
from tests.factories import lock_cluster, make_cluster
from tests.test_worker import lock_state, nodes, real_cluster, wait_job


def job_statuses(db: Database, cluster_id: int) -> dict[int, tuple[str, str | None]]:
    with db.read_session() as s:
        rows = s.scalars(select(Job).where(Job.cluster_id == cluster_id)).all()
        return {j.id: (j.status, j.reason) for j in rows}


def stage(db: Database, cluster_id: int) -> str:
    with db.read_session() as s:
        cluster = s.get(Cluster, cluster_id)
        assert cluster is not None
        return cluster.stage


def test_g3_agents_job_is_canceled_when_the_servers_job_cannot_record_its_end(
    worker_client: TestClient, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_finish(*_: Any, **__: Any) -> None:
        raise RuntimeError("database hiccup")

    def silent_run(*_: Any, **__: Any) -> RunOutcome:
        return RunOutcome(status="successful", rc=0)  # no host events: m2 stays INSTALLING

    monkeypatch.setattr("rke2_manager.jobs.runner.run.finish", broken_finish)
    monkeypatch.setattr("rke2_manager.jobs.runner.run.run_playbook", silent_run)
    cid = real_cluster(db, worker_client, [("m1", "127.0.10.1", "server", "ACTIVE")])
    r = worker_client.post(
        f"/api/clusters/{cid}/scale/add",
        json={
            "nodes": [
                {"hostname": "m2", "ip": "127.0.10.3", "role": "server"},
                {"hostname": "w2", "ip": "127.0.10.4", "role": "agent"},
            ]
        },
    )
    assert r.status_code == 202, r.text
    servers = wait_job(worker_client, r.json()["job_id"])
    agents = wait_job(worker_client, r.json()["workers_job_id"], timeout=15)
    assert servers["status"] == "failed"
    assert servers["reason"] == "the run succeeded; the job's end could not be fully recorded"
    assert (agents["status"], agents["reason"]) == (
        "canceled",
        f"servers job {servers['id']} failed",
    )
    assert all(s in ("succeeded", "failed", "canceled") for s, _ in job_statuses(db, cid).values())
    assert lock_state(db, cid) == ("idle", None, None)
    state = nodes(db, cid)
    assert state["m2"] == ("FAILED", f"state unknown: {servers['reason']}")
    assert "w2" not in state  # the agent was never created, so nothing to forget
    assert not [n for n, (s, _) in state.items() if s in ("INSTALLING", "REMOVING")]


#: A worker of another machine, which cannot answer (gone, or partitioned away).
ELSEWHERE = "host:machine:boot:999999999:abcdef"


def _running_install(db: Database, worker_id: str = ELSEWHERE) -> tuple[int, int]:
    """A cluster whose install (by an absent worker) is under way: m1 mid-change."""
    cid = make_cluster(db, nodes=[("m1", "127.0.70.1", "server", "INSTALLING")])
    job_id = lock_cluster(db, cid, "install")
    with db.transaction() as s:
        cluster = s.get(Cluster, cid)
        job = s.get(Job, job_id)
        assert cluster is not None and job is not None
        cluster.stage = ClusterStage.INSTALLING
        m1 = s.scalars(select(Node).where(Node.cluster_id == cid)).one()
        job.targets = [{"id": m1.id, "hostname": "m1", "ip": m1.ip, "role": "server"}]
        job.worker_id = worker_id
    return cid, job_id


def _end(way: str, client: TestClient, db: Database, settings: Settings, cid: int, job: int) -> str:
    """End the running install ``job`` the ``way`` given; return the reason it gets."""
    # its worker is on another machine and never answers: nothing here can end its run, so
    # the reason says the nodes' fences are what stops it
    unconfirmed = UNCONFIRMED.format(worker=ELSEWHERE)
    settings.stop_timeout = 0.5
    if way == "cancel":
        r = client.post(f"/api/jobs/{job}/cancel")
        assert r.status_code == 200, r.text
        return f"canceled by local; {unconfirmed}"
    if way == "force-unlock":
        r = client.post(
            f"/api/admin/clusters/{cid}/force-unlock", json={"job_id": job, "reason": "stuck"}
        )
        assert r.status_code == 200, r.text
        return f"force-unlocked by local: stuck; {unconfirmed}"
    if way == "reaper":
        with db.transaction() as s:
            cluster = s.get(Cluster, cid)
            assert cluster is not None
            cluster.lock_expires_at = utcnow() - timedelta(seconds=1)
        with db.transaction() as s:
            assert reap_expired(s, settings) == [job]
        return f"{LEASE_EXPIRED}; {unconfirmed}"
    # a worker of this machine that died: start-up recovery ends its run (none left here)
    dead = f"{machine_prefix()}{boot_id()}:999999999:abcdef"
    with db.transaction() as s:
        s.get(Job, job).worker_id = dead  # type: ignore[union-attr]
    with db.read_session() as s:
        found = dead_workers_jobs(s, lambda _: False)
    with db.transaction() as s:
        assert recover_dead_workers(s, settings, found, {job}) == [job]
    return f"worker {dead} stopped while the job ran (found at start-up; its run was ended)"


@pytest.mark.parametrize("way", ["cancel", "force-unlock", "reaper", "recovery"])
def test_an_install_ended_from_outside_leaves_the_stage_failed(
    client: TestClient, db: Database, settings: Settings, way: str
) -> None:
    cid, job = _running_install(db)
    reason = _end(way, client, db, settings, cid, job)
    assert job_statuses(db, cid)[job] == (
        "canceled" if way in ("cancel", "force-unlock") else "failed",
        reason,
    )
    assert lock_state(db, cid) == ("idle", None, None)
    assert stage(db, cid) == "failed"
    assert client.get(f"/api/clusters/{cid}").json()["stage"] == "failed"
    assert nodes(db, cid) == {"m1": ("FAILED", f"state unknown: {reason}")}


def test_the_fallback_leaves_an_install_failed_and_its_nodes_explained(
    worker_client: TestClient, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_finish(*_: Any, **__: Any) -> None:
        raise RuntimeError("database hiccup")

    monkeypatch.setattr("rke2_manager.jobs.runner.run.finish", broken_finish)
    monkeypatch.setattr(
        "rke2_manager.jobs.runner.run.run_playbook",
        lambda *_, **__: (_ for _ in ()).throw(OSError("x")),
    )
    cid = real_cluster(db, worker_client, [("m1", "127.0.10.1", "server", "PENDING")])
    job = wait_job(worker_client, worker_client.post(f"/api/jobs/install/{cid}").json()["job_id"])
    assert job["status"] == "failed"
    reason = "internal error: OSError: x; the job's end could not be fully recorded"
    assert job["reason"] == reason
    assert lock_state(db, cid) == ("idle", None, None)
    assert stage(db, cid) == "failed"
    with db.read_session() as s:
        m1 = s.scalars(select(Node).where(Node.cluster_id == cid)).one()
        assert (m1.status, m1.status_reason) == (NodeStatus.FAILED, f"state unknown: {reason}")


def test_when_passing_the_lock_on_fails_too_the_lock_is_still_released_and_the_queue_runs(
    worker_client: TestClient, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_: Any, **__: Any) -> None:
        raise RuntimeError("database hiccup")

    go = threading.Event()  # the servers job runs until the install is queued behind it

    def silent_run(*_: Any, **__: Any) -> RunOutcome:
        go.wait(30)
        return RunOutcome(status="successful", rc=0)

    monkeypatch.setattr("rke2_manager.jobs.runner.run.finish", broken)
    monkeypatch.setattr("rke2_manager.jobs.settle.pass_on", broken)
    monkeypatch.setattr("rke2_manager.jobs.runner.run.run_playbook", silent_run)
    cid = real_cluster(db, worker_client, [("m1", "127.0.10.1", "server", "ACTIVE")])
    r = worker_client.post(
        f"/api/clusters/{cid}/scale/add",
        json={
            "nodes": [
                {"hostname": "m2", "ip": "127.0.10.3", "role": "server"},
                {"hostname": "w2", "ip": "127.0.10.4", "role": "agent"},
            ]
        },
    ).json()
    queued = worker_client.post(f"/api/jobs/install/{cid}?on_busy=queue").json()
    go.set()
    assert queued["status"] == "queued"
    servers = wait_job(worker_client, r["job_id"])
    agents = wait_job(worker_client, r["workers_job_id"], timeout=15)
    assert servers["status"] == "failed"
    assert (agents["status"], agents["reason"]) == ("canceled", f"servers job {r['job_id']} failed")
    assert nodes(db, cid)["m2"] == ("FAILED", f"state unknown: {servers['reason']}")
    # the queue sweep starts the next job (its own end fails the same way, and is settled too)
    later = wait_job(worker_client, queued["job_id"], timeout=30)
    assert later["status"] == "failed"
    assert lock_state(db, cid) == ("idle", None, None)
    assert stage(db, cid) == "failed"
