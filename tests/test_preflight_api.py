"""Preflight through the API (no hosts): the job, skip_preflight on install and scale add,
the stored results, and what a host may report."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import func, select

from rke2_manager.db import Database
from rke2_manager.execution.events import HostEvent
from rke2_manager.jobs import preflight
from rke2_manager.jobs.plans import request_of
from rke2_manager.models import AuditEntry, Job, Operation
from tests.factories import lock_cluster, make_cluster

ACTIVE = [
    ("m1", "127.0.50.1", "server", "ACTIVE"),
    ("w1", "127.0.50.9", "agent", "PENDING"),
]


def job_row(db: Database, job_id: int) -> Job:
    with db.read_session() as s:
        job = s.get(Job, job_id)
        assert job is not None
        return job


def counts(client: TestClient, db: Database) -> tuple[int, int]:
    client.app.state.refusals.flush()  # type: ignore[attr-defined]
    with db.read_session() as s:
        return (
            s.scalar(select(func.count(Job.id))) or 0,
            s.scalar(select(func.count(AuditEntry.id))) or 0,
        )


def test_preflight_job_checks_every_node_and_changes_none(client: TestClient, db: Database) -> None:
    cid = make_cluster(db, nodes=ACTIVE)
    r = client.post(f"/api/clusters/{cid}/preflight?skip_preflight=swap&skip_preflight=ports")
    assert r.status_code == 202, r.text
    body = r.json()
    assert (body["status"], body["job"]["operation"], body["job"]["nodes"]) == (
        "running",
        "preflight",
        [],
    )
    job = job_row(db, body["job_id"])
    assert job.params == {"skip_preflight": ["swap", "ports"], "nodes": ["m1", "w1"], "reach": True}
    assert isinstance(request_of(job), preflight.PreflightRequest)
    assert request_of(job).skip == ("swap", "ports")  # type: ignore[union-attr]
    # a second one meets the lock like any operation
    busy = client.post(f"/api/clusters/{cid}/preflight")
    assert busy.status_code == 409
    assert busy.json()["detail"] == (
        f"Cluster is busy with operation 'preflight' (job {job.id}). Please wait."
    )


def test_preflight_reach_only_once_a_server_runs(client: TestClient, db: Database) -> None:
    cid = make_cluster(db, nodes=[("m1", "127.0.50.1", "server", "PENDING")])
    r = client.post(f"/api/clusters/{cid}/preflight")
    assert job_row(db, r.json()["job_id"]).params == {
        "skip_preflight": [],
        "nodes": ["m1"],
        "reach": False,
    }


def test_preflight_refusals_and_plan(client: TestClient, db: Database) -> None:
    empty = make_cluster(db, name="empty", nodes=[])
    cid = make_cluster(db, nodes=ACTIVE)
    before = counts(client, db)
    plan = client.post(f"/api/clusters/{cid}/preflight?dry_run=true").json()
    assert (plan["would_succeed"], [j["operation"] for j in plan["jobs"]]) == (True, ["preflight"])
    assert counts(client, db) == before
    r = client.post(f"/api/clusters/{empty}/preflight")
    assert (r.status_code, r.json()["detail"]) == (400, "Cluster has no nodes to check.")
    bad = client.post(f"/api/clusters/{cid}/preflight?skip_preflight=everything")
    assert bad.status_code == 422
    assert bad.json()["detail"].startswith("query.skip_preflight.0: Input should be 'ssh'")
    assert counts(client, db)[0] == before[0]


def test_skip_preflight_reaches_install_and_both_g3_jobs(client: TestClient, db: Database) -> None:
    cid = make_cluster(db, nodes=[("m1", "127.0.50.1", "server", "PENDING")])
    r = client.post(f"/api/jobs/install/{cid}", params={"skip_preflight": ["ports", "disk"]})
    assert r.status_code == 202
    install = job_row(db, r.json()["job_id"])
    assert install.params == {"skip_preflight": ["ports", "disk"]}
    assert request_of(install).skip_preflight == ("ports", "disk")  # type: ignore[union-attr]

    other = make_cluster(db, name="other", nodes=[("m1", "127.0.51.1", "server", "ACTIVE")])
    nodes = [
        {"hostname": "m2", "ip": "127.0.51.2", "role": "server"},
        {"hostname": "w1", "ip": "127.0.51.9", "role": "agent"},
    ]
    url = f"/api/clusters/{other}/scale/add?skip_preflight=swap"
    plan = client.post(url + "&dry_run=true", json={"nodes": nodes}).json()
    assert [(j["operation"], j["preflight_skip"]) for j in plan["jobs"]] == [
        ("scale_add_masters", ["swap"]),
        ("scale_add_workers", ["swap"]),
    ]
    r = client.post(url, json={"nodes": nodes})
    jobs = [job_row(db, j["id"]) for j in r.json()["jobs"]]
    assert [j.params["skip_preflight"] for j in jobs] == [["swap"], ["swap"]]
    assert [request_of(j).skip_preflight for j in jobs] == [("swap",), ("swap",)]  # type: ignore[union-attr]
    # no skip: the parameters are what they always were
    third = make_cluster(db, name="third", nodes=[("m1", "127.0.52.1", "server", "PENDING")])
    assert job_row(db, client.post(f"/api/jobs/install/{third}").json()["job_id"]).params == {}


def line(check: str, result: str, message: str = "m", fix: str = "f") -> str:
    return f"rke2m-preflight|{check}|{result}|{message}|{fix}"


def report(host: str, lines: Any, skipped: Any = ()) -> HostEvent:
    data = {"node": host, "results": lines, "skipped": list(skipped)}
    return HostEvent(host, "report", task=preflight.MARKER, data=data)


def test_parse_keeps_only_known_checks_and_bounds_text() -> None:
    lines = [
        line("ports", "fail", "in use: 9345 (by x, pid 1)", "stop it"),
        line("swap", "warn", "x" * 5000, ""),
        line("rm -rf", "fail"),  # not a check
        line("disk", "maybe"),  # not a result
        "rke2m-preflight|cpu|pass|too|many|fields",
        "garbage",
        42,
    ]
    assert preflight.parse(report("m1", lines, skipped=["ports"])) == [
        {
            "check": "ports",
            "result": "fail",
            "message": "in use: 9345 (by x, pid 1)",
            "fix": "stop it",
            "skipped": True,
        },
        {"check": "swap", "result": "warn", "message": "x" * 1000, "fix": None, "skipped": False},
    ]
    assert preflight.parse(report("m1", "not a list")) == []


def test_results_endpoint(client: TestClient, db: Database) -> None:
    cid = make_cluster(db, nodes=ACTIVE)
    job_id = lock_cluster(db, cid, "install")
    with db.transaction() as s:
        job = s.get(Job, job_id)
        assert job is not None
        job.targets = [{"id": None, "hostname": h, "ip": "", "role": ""} for h in ("m1", "w1")]
        preflight.record(
            job,
            [
                report("m1", [line("ports", "fail"), line("swap", "fail")], skipped=["swap"]),
                HostEvent("m1", "report", task="[rke2m] snapshots listed", data={}),
            ],
        )
    r = client.get(f"/api/jobs/{job_id}/preflight")
    assert r.status_code == 200
    body = r.json()
    assert body["failed"] == {"m1": ["ports"]}
    assert [c["check"] for c in body["hosts"]["m1"]] == ["ports", "swap"]
    assert body["unreported"] == []  # the job has not ended: w1 may still report
    with db.transaction() as s:
        job = s.get(Job, job_id)
        assert job is not None
        job.status, job.finished_at = "failed", job.created_at
    assert client.get(f"/api/jobs/{job_id}/preflight").json()["unreported"] == ["w1"]

    remove = lock_cluster(db, make_cluster(db, name="b", nodes=[]), Operation.SCALE_REMOVE_WORKERS)
    r = client.get(f"/api/jobs/{remove}/preflight")
    assert (r.status_code, r.json()["detail"]) == (
        404,
        f"Job {remove} (scale_remove_workers) ran no preflight checks: preflight, install and "
        "scale add jobs do",
    )
    assert client.get("/api/jobs/999999/preflight").status_code == 404


def test_failure_reason_names_every_host_and_check() -> None:
    job = Job(operation="install", targets=[], params={})
    assert preflight.failure_reason(job, "failed", "m1: unreachable") == "m1: unreachable"
    preflight.record(
        job,
        [
            report("m1", [line("ports", "fail", "in use: 9345"), line("swap", "warn")]),
            report("w1", [line("disk", "fail", "1.0 GiB free"), line("os", "fail", "no")], ["os"]),
            report("w2", [line("cpu", "pass")]),
        ],
    )
    own = "m1: task 'Stop on a failed preflight check' failed: m1: preflight failed: ports (x)"
    assert preflight.failure_reason(job, "failed", own) == (
        "m1: preflight failed: ports (in use: 9345); w1: preflight failed: disk (1.0 GiB free)"
    )
    assert preflight.failure_reason(job, "failed", "w3: unreachable: no route") == (
        "m1: preflight failed: ports (in use: 9345); w1: preflight failed: disk (1.0 GiB free); "
        "also w3: unreachable: no route"
    )
    assert preflight.failure_reason(job, "canceled", "canceled by ops") == "canceled by ops"


def test_a_host_the_checks_never_ran_on_fails_its_ssh_or_sudo_check(
    client: TestClient, db: Database
) -> None:
    """The manager says what kept the checks off a host: SSH (unreachable) or sudo; the job's
    own reason stays as it was, and other failures leave the host unreported."""
    cid = make_cluster(db, nodes=[*ACTIVE, ("w2", "127.0.50.10", "agent", "PENDING")])
    job_id = lock_cluster(db, cid, "preflight")
    down = "unreachable: Failed to connect to the host via ssh: Connection refused"
    sudo = "task 'Raise the fence' failed: Missing sudo password"
    with db.transaction() as s:
        job = s.get(Job, job_id)
        assert job is not None
        job.params = {"nodes": ["m1", "w1", "w2"]}
        preflight.record(
            job,
            [report("m1", [line("ports", "pass")])],
            {"w1": down, "w2": sudo, "m1": "ignored: m1 reported"},
        )
        assert preflight.failure_reason(job, "failed", f"w1: {down}") == f"w1: {down}"
        job.status, job.finished_at = "failed", job.created_at
    body = client.get(f"/api/jobs/{job_id}/preflight").json()
    assert body["hosts"]["w1"] == [
        {
            "check": "ssh",
            "result": "fail",
            "message": down,
            "fix": "make the host reachable over SSH from the manager: its address and port, "
            "the cluster's SSH user, and the cluster's public key (ssh.public_key) in that "
            "user's authorized_keys",
            "skipped": False,
        }
    ]
    assert [(c["check"], c["result"]) for c in body["hosts"]["w2"]] == [("sudo", "fail")]
    assert body["hosts"]["w2"][0]["fix"] == (
        "connect as root, or give the SSH user passwordless sudo (NOPASSWD)"
    )
    assert [c["check"] for c in body["hosts"]["m1"]] == ["ports"]
    assert body["failed"] == {"w1": ["ssh"], "w2": ["sudo"]}
    assert body["unreported"] == []

    other = Job(operation="preflight", targets=[], params={"nodes": ["w1"]})
    preflight.record(other, [], {"w1": "task 'x' failed: fenced: node w1 was taken over by job 9"})
    assert other.preflight is None  # not an SSH or sudo failure: w1 stays unreported
