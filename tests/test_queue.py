"""The operation queue, G3 hand-over, cancel and force-unlock, with the real worker."""

from __future__ import annotations

import itertools
import time
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import select

from rke2_manager.config import Settings
from rke2_manager.db import Database
from rke2_manager.models import AuditEntry, Cluster, Job, Node
from tests.factories import lock_cluster, make_cluster, write_playbooks
from tests.test_worker import lock_state, wait_job

M1 = [("m1", "127.0.40.1", "server", "ACTIVE")]


def jobs(db: Database, cluster_id: int) -> list[Job]:
    with db.read_session() as s:
        return list(s.scalars(select(Job).where(Job.cluster_id == cluster_id).order_by(Job.id)))


def test_ten_queued_jobs_run_one_at_a_time_in_order(
    worker_client: TestClient, db: Database
) -> None:
    cid = make_cluster(db, nodes=M1)
    holder = lock_cluster(db, cid, "install")  # a job of another (absent) worker holds the lock
    ids = []
    for i in range(10):
        r = worker_client.post(f"/api/jobs/install/{cid}?on_busy=queue")
        assert r.status_code == 202, r.text
        assert (r.json()["status"], r.json()["position"]) == ("queued", i + 1)
        ids.append(r.json()["job_id"])
    queue = worker_client.get(f"/api/clusters/{cid}/queue").json()
    assert [(q["position"], q["job"]["id"]) for q in queue] == list(enumerate(ids, start=1))
    # without on_busy=queue the seed's 409 still answers
    assert worker_client.post(f"/api/jobs/install/{cid}").status_code == 409

    r = worker_client.post(
        f"/api/admin/clusters/{cid}/force-unlock", json={"job_id": holder, "reason": "test"}
    )
    assert r.status_code == 200, r.text
    finished = [wait_job(worker_client, job_id) for job_id in ids]
    assert [j["status"] for j in finished] == ["succeeded"] * 10
    for before, after in itertools.pairwise(finished):
        assert after["started_at"] >= before["finished_at"]  # one at a time, in arrival order
    assert lock_state(db, cid) == ("idle", None, None)
    assert worker_client.get(f"/api/clusters/{cid}/queue").json() == []


def test_queued_job_rechecks_guardrails_at_start(
    worker_client: TestClient, db: Database, settings: Settings, playbook_dir: Path
) -> None:
    write_playbooks(playbook_dir, mode="slow", operations=("scale_add_masters",))
    settings.ansible_extra_vars = {"sleep_seconds": 2}
    cid = make_cluster(db, nodes=M1)
    server = {"nodes": [{"hostname": "m2", "ip": "127.0.40.2", "role": "server"}]}
    holder = worker_client.post(f"/api/clusters/{cid}/scale/add", json=server).json()["job_id"]
    node = {"nodes": [{"hostname": "w9", "ip": "127.0.40.9", "role": "agent"}]}
    first = worker_client.post(f"/api/clusters/{cid}/scale/add?on_busy=queue", json=node).json()
    second = worker_client.post(f"/api/clusters/{cid}/scale/add?on_busy=queue", json=node).json()
    assert (first["position"], second["position"]) == (1, 2)
    assert wait_job(worker_client, holder)["status"] == "succeeded"
    assert wait_job(worker_client, first["job_id"])["status"] == "succeeded"
    late = wait_job(worker_client, second["job_id"])
    assert late["status"] == "failed"
    assert late["reason"] == "Node with hostname 'w9' already exists in cluster"
    with db.read_session() as s:
        names = s.scalars(select(Node.hostname).where(Node.cluster_id == cid)).all()
        assert sorted(names) == ["m1", "m2", "w9"]
    assert lock_state(db, cid) == ("idle", None, None)


def test_g3_agents_job_runs_before_an_earlier_queued_job(
    worker_client: TestClient, db: Database, settings: Settings, playbook_dir: Path
) -> None:
    write_playbooks(playbook_dir, mode="slow", operations=("scale_add_masters",))
    settings.ansible_extra_vars = {"sleep_seconds": 2}
    cid = make_cluster(db, nodes=M1)
    r = worker_client.post(
        f"/api/clusters/{cid}/scale/add",
        json={
            "nodes": [
                {"hostname": "m2", "ip": "127.0.40.2", "role": "server"},
                {"hostname": "w1", "ip": "127.0.40.11", "role": "agent"},
            ]
        },
    ).json()
    queued = worker_client.post(f"/api/jobs/install/{cid}?on_busy=queue").json()
    assert queued["status"] == "queued" and queued["position"] == 1
    servers = wait_job(worker_client, r["job_id"])
    agents = wait_job(worker_client, r["workers_job_id"])
    later = wait_job(worker_client, queued["job_id"])
    assert (servers["status"], agents["status"], later["status"]) == ("succeeded",) * 3
    assert servers["finished_at"] <= agents["started_at"]
    assert agents["finished_at"] <= later["started_at"]


def test_cancel_queued_and_running_jobs(
    worker_client: TestClient, db: Database, settings: Settings, playbook_dir: Path, tmp_path: Path
) -> None:
    marker = tmp_path / "finished"
    write_playbooks(playbook_dir, mode="slow", operations=("install",))
    settings.ansible_extra_vars = {"sleep_seconds": 30, "done_marker": str(marker)}
    cid = make_cluster(db, nodes=[*M1, ("w1", "127.0.40.11", "agent", "PENDING")])
    running = worker_client.post(f"/api/jobs/install/{cid}").json()["job_id"]
    queued = worker_client.post(f"/api/jobs/install/{cid}?on_busy=queue").json()["job_id"]
    r = worker_client.post(f"/api/jobs/{queued}/cancel")
    assert r.status_code == 200 and r.json()["status"] == "canceled"
    assert r.json()["reason"] == "canceled by local"
    assert worker_client.get(f"/api/clusters/{cid}/queue").json() == []

    # the job shows each host's current task while it runs: cancel once w1 is in the long one
    deadline = time.monotonic() + 60
    while (
        worker_client.get(f"/api/jobs/{running}").json()["progress"].get("w1", {}).get("task")
        != "take a while"
    ):
        assert time.monotonic() < deadline, "w1 did not reach the long task"
        time.sleep(0.1)
    started = time.monotonic()
    r = worker_client.post(f"/api/jobs/{running}/cancel")
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "canceled"
    assert lock_state(db, cid) == ("idle", None, None)
    with db.read_session() as s:
        w1 = s.scalars(select(Node).where(Node.hostname == "w1")).one()
        assert w1.status == "FAILED"
        # its worker ended the run first, so the job knows where w1 was cut off
        assert w1.status_reason == "state unknown: canceled by local during task 'take a while'"
    # the run is stopped: the worker lets go of it well before the 30 s task would end
    while worker_client.app.state.worker.busy:  # type: ignore[attr-defined]
        assert time.monotonic() - started < 20, "the canceled run did not stop"
        time.sleep(0.1)
    assert not marker.exists()
    assert worker_client.get(f"/api/jobs/{running}").json()["status"] == "canceled"
    again = worker_client.post(f"/api/jobs/{running}/cancel")
    assert again.status_code == 409
    assert again.json()["detail"] == f"Job {running} has already ended (canceled)"


def test_force_unlock(
    worker_client: TestClient, db: Database, settings: Settings, playbook_dir: Path, tmp_path: Path
) -> None:
    marker = tmp_path / "finished"
    write_playbooks(playbook_dir, mode="slow", operations=("install",))
    settings.ansible_extra_vars = {"sleep_seconds": 30, "done_marker": str(marker)}
    cid = make_cluster(db, nodes=M1)
    job_id = worker_client.post(f"/api/jobs/install/{cid}").json()["job_id"]
    deadline = time.monotonic() + 30
    while not worker_client.get(f"/api/jobs/{job_id}/log").json()["lines"]:
        assert time.monotonic() < deadline
        time.sleep(0.1)

    with db.read_session() as s:
        before = s.get(Cluster, cid)
        assert before is not None
        token = before.lock_token
    wrong = worker_client.post(
        f"/api/admin/clusters/{cid}/force-unlock", json={"job_id": job_id + 1, "reason": "oops"}
    )
    assert wrong.status_code == 409
    assert wrong.json()["detail"] == (
        f"Cluster {cid} is locked by job {job_id} ('install'), not job {job_id + 1}"
    )
    assert wrong.json()["current_job_id"] == job_id
    assert lock_state(db, cid) == ("running", job_id, "install")

    r = worker_client.post(
        f"/api/admin/clusters/{cid}/force-unlock",
        json={"job_id": job_id, "reason": "host rebooted"},
    )
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "canceled"
    assert r.json()["reason"] == "force-unlocked by local: host rebooted"
    assert lock_state(db, cid) == ("idle", None, None)
    with db.read_session() as s:
        entry = s.scalars(
            select(AuditEntry).where(AuditEntry.action == "cluster.force_unlock")
        ).one()
        assert (entry.actor, entry.job_id, entry.detail) == (
            "local",
            job_id,
            {"reason": "host rebooted"},
        )
        after = s.get(Cluster, cid)
        assert after is not None and after.lock_token == token  # released, not re-acquired
    deadline = time.monotonic() + 20
    while worker_client.app.state.worker.busy:  # type: ignore[attr-defined]
        assert time.monotonic() < deadline, "the playbook was not stopped"
        time.sleep(0.1)
    assert not marker.exists()
    assert worker_client.get(f"/api/jobs/{job_id}").json()["status"] == "canceled"
    not_locked = worker_client.post(
        f"/api/admin/clusters/{cid}/force-unlock", json={"job_id": job_id, "reason": "again"}
    )
    assert (not_locked.status_code, not_locked.json()["detail"]) == (
        409,
        f"Cluster {cid} is not locked",
    )
