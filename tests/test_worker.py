"""The worker runs jobs through real ansible-runner and always frees the lock."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from rke2_manager.db import Database
from rke2_manager.execution import ansible_service
from rke2_manager.models import Cluster, Job, JobLogLine, Node
from rke2_manager.vault import SecretBox
from tests.factories import write_playbooks

LOCAL = [
    ("m1", "127.0.10.1", "server", "PENDING"),
    ("w1", "127.0.10.2", "agent", "PENDING"),
    ("w2", "127.0.10.3", "agent", "PENDING"),
]


def wait_job(client: TestClient, job_id: int, timeout: float = 90) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/api/jobs/{job_id}").json()
        if job["status"] in ("succeeded", "failed", "canceled"):
            return job  # type: ignore[no-any-return]
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} did not finish: {job}")


def nodes(db: Database, cluster_id: int = 1) -> dict[str, tuple[str, str | None]]:
    with db.read_session() as s:
        rows = s.scalars(select(Node).where(Node.cluster_id == cluster_id)).all()
        return {n.hostname: (n.status, n.status_reason) for n in rows}


def lock_state(db: Database, cluster_id: int = 1) -> tuple[str, int | None, str | None]:
    with db.read_session() as s:
        c = s.get(Cluster, cluster_id)
        assert c is not None
        return c.operation_status, c.current_job_id, c.operation_locked_by


def real_cluster(db: Database, client: TestClient, nodes_: list[Any] = LOCAL) -> int:
    """Create through the API (so secrets are real), then set node states directly."""
    r = client.post(
        "/api/clusters",
        json={
            "name": "prod",
            "nodes": [{"hostname": h, "ip": ip, "role": role} for h, ip, role, _ in nodes_],
        },
    )
    assert r.status_code == 201, r.text
    with db.transaction() as s:
        for node in s.scalars(select(Node)):
            node.status = next(st for h, _, _, st in nodes_ if h == node.hostname)
    return int(r.json()["id"])


def test_successful_install_activates_nodes_and_releases(
    worker_client: TestClient, db: Database
) -> None:
    cid = real_cluster(db, worker_client)
    job = wait_job(worker_client, worker_client.post(f"/api/jobs/install/{cid}").json()["job_id"])
    assert job["status"] == "succeeded", job
    assert job["reason"] is None and job["started_at"] and job["finished_at"]
    assert nodes(db) == {"m1": ("ACTIVE", None), "w1": ("ACTIVE", None), "w2": ("ACTIVE", None)}
    assert lock_state(db) == ("idle", None, None)
    cluster = worker_client.get(f"/api/clusters/{cid}").json()
    assert cluster["stage"] == "ready"
    log = worker_client.get(f"/api/jobs/{job['id']}/log").json()
    text = "\n".join(line["text"] for line in log["lines"])
    assert "TASK [work]" in text and "PLAY RECAP" in text and log["finished"] is True


def test_failure_on_one_host_marks_it_failed_and_releases(
    worker_client: TestClient, db: Database, playbook_dir: Path
) -> None:
    write_playbooks(playbook_dir, mode="fail_one")
    cid = real_cluster(db, worker_client)
    job = wait_job(worker_client, worker_client.post(f"/api/jobs/install/{cid}").json()["job_id"])
    assert job["status"] == "failed"
    assert job["reason"] == "w1: task 'break one host' failed: disk full on w1"
    state = nodes(db)
    assert state["w1"] == ("FAILED", "task 'break one host' failed: disk full on w1")
    assert state["m1"] == ("ACTIVE", None) and state["w2"] == ("ACTIVE", None)
    assert lock_state(db) == ("idle", None, None)
    assert worker_client.get(f"/api/clusters/{cid}").json()["stage"] == "failed"


@pytest.mark.parametrize("where", ["adapter", "ansible_runner"])
def test_exception_in_job_code_fails_job_and_releases(
    worker_client: TestClient, db: Database, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    def boom(*_: Any, **__: Any) -> Any:
        raise RuntimeError("boom")

    if where == "adapter":
        monkeypatch.setattr("rke2_manager.jobs.runner.run.run_playbook", boom)
    else:
        monkeypatch.setattr(ansible_service.ansible_runner, "run", boom)
    cid = real_cluster(db, worker_client)
    job = wait_job(worker_client, worker_client.post(f"/api/jobs/install/{cid}").json()["job_id"])
    assert job["status"] == "failed"
    assert job["reason"] == "internal error: RuntimeError: boom"
    assert lock_state(db) == ("idle", None, None)
    assert {s for s, _ in nodes(db).values()} == {"PENDING"}  # never touched, back as they were
    # the cluster takes the next operation at once
    assert worker_client.post(f"/api/jobs/install/{cid}").status_code == 202


def test_job_never_connects_outside_allowed_networks(
    worker_client: TestClient, db: Database
) -> None:
    cid = real_cluster(db, worker_client, [("m1", "10.0.0.1", "server", "PENDING")])
    job = wait_job(worker_client, worker_client.post(f"/api/jobs/install/{cid}").json()["job_id"])
    assert job["status"] == "failed"
    assert job["reason"].startswith("10.0.0.1 is outside RKE2M_ALLOWED_NETWORKS")
    assert lock_state(db) == ("idle", None, None)


def test_secrets_never_reach_the_job_log(
    worker_client: TestClient, db: Database, playbook_dir: Path, settings: Any
) -> None:
    write_playbooks(playbook_dir, mode="echo_secret")
    cid = real_cluster(db, worker_client)
    job = wait_job(worker_client, worker_client.post(f"/api/jobs/install/{cid}").json()["job_id"])
    assert job["status"] == "succeeded"
    box = SecretBox.from_settings(settings)
    with db.read_session() as s:
        cluster = s.get(Cluster, cid)
        assert cluster is not None
        token = box.decrypt(cluster.token_enc)
        text = "\n".join(s.scalars(select(JobLogLine.text).where(JobLogLine.job_id == job["id"])))
    assert "token=********" in text
    assert token not in text
    assert token not in worker_client.get(f"/api/clusters/{cid}").text


def test_g3_agents_job_runs_after_servers_job(worker_client: TestClient, db: Database) -> None:
    cid = real_cluster(db, worker_client, [("m1", "127.0.10.1", "server", "ACTIVE")])
    r = worker_client.post(
        f"/api/clusters/{cid}/scale/add",
        json={
            "nodes": [
                {"hostname": "w1", "ip": "127.0.10.2", "role": "agent"},
                {"hostname": "m2", "ip": "127.0.10.3", "role": "server"},
                {"hostname": "w2", "ip": "127.0.10.4", "role": "agent"},
            ]
        },
    )
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["sequenced"] is True and body["workers_pending"] == 2
    assert body["job"]["operation"] == "scale_add_masters"
    assert [n["hostname"] for n in body["job"]["nodes"]] == ["m2"]
    agents_id = body["workers_job_id"]
    first = wait_job(worker_client, body["job_id"])
    second = wait_job(worker_client, agents_id)
    assert (first["status"], second["status"]) == ("succeeded", "succeeded")
    assert second["predecessor_id"] == first["id"]
    assert second["started_at"] >= first["finished_at"]
    assert {s for s, _ in nodes(db).values()} == {"ACTIVE"}
    assert lock_state(db) == ("idle", None, None)


def test_g3_agents_job_canceled_when_servers_job_fails(
    worker_client: TestClient, db: Database, playbook_dir: Path
) -> None:
    write_playbooks(playbook_dir, mode="fail_one")
    cid = real_cluster(db, worker_client, [("m1", "127.0.10.1", "server", "ACTIVE")])
    r = worker_client.post(
        f"/api/clusters/{cid}/scale/add",
        json={
            "nodes": [
                {"hostname": "w1", "ip": "127.0.10.2", "role": "server"},
                {"hostname": "w2", "ip": "127.0.10.3", "role": "agent"},
            ]
        },
    )
    body = r.json()
    first = wait_job(worker_client, body["job_id"])
    second = wait_job(worker_client, body["workers_job_id"])
    assert first["status"] == "failed"
    assert second["status"] == "canceled"
    assert second["reason"] == f"servers job {first['id']} failed"
    state = nodes(db)
    assert state["w1"][0] == "FAILED" and "w2" not in state  # never-installed agent forgotten
    assert lock_state(db) == ("idle", None, None)


def test_removal_deletes_nodes(worker_client: TestClient, db: Database) -> None:
    cid = real_cluster(
        db,
        worker_client,
        [("m1", "127.0.10.1", "server", "ACTIVE"), ("w1", "127.0.10.2", "agent", "ACTIVE")],
    )
    r = worker_client.post(
        f"/api/clusters/{cid}/scale/remove", json={"nodes": [{"hostname": "w1"}]}
    )
    assert r.status_code == 202, r.text
    job = wait_job(worker_client, r.json()["job_id"])
    assert job["status"] == "succeeded"
    assert nodes(db) == {"m1": ("ACTIVE", None)}
    with db.read_session() as s:
        stored = s.get(Job, job["id"])
        assert stored is not None and stored.targets[0]["hostname"] == "w1"  # history kept
