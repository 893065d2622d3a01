"""Snapshot save, list, delete and restore endpoints: validation, guardrails, lock, records."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from rke2_manager.db import Database
from rke2_manager.execution.events import HostEvent, interpret
from rke2_manager.jobs.snapshot_records import parse_table, record_reports
from rke2_manager.models import Cluster, Job, JobStatus, Node, Snapshot, SnapshotList
from tests.factories import lock_cluster, make_cluster

NODES = [
    ("m1", "127.0.30.1", "server", "ACTIVE"),
    ("m2", "127.0.30.2", "server", "ACTIVE"),
    ("m3", "127.0.30.3", "server", "ACTIVE"),
    ("w1", "127.0.30.9", "agent", "ACTIVE"),
    ("p1", "127.0.30.10", "server", "PENDING"),
]
LOCATION = "file:///var/lib/rancher/rke2/server/db/snapshots/"


def table(*rows: tuple[str, int, str]) -> list[str]:
    """What files/rke2m-snapshot.sh prints: `rke2 etcd-snapshot ls` between its markers."""
    lines = ["--- snapshots", "Name Location Size Created"]
    lines += [f"{name} {LOCATION}{name} {size} {created}" for name, size, created in rows]
    return [*lines, "--- end"]


def record(db: Database, cid: int, host: str, rows: list[str], saved: str | None = None) -> int:
    """Store what a run reported for ``host`` as a finished save job would; the job's id."""
    with db.transaction() as s:
        job = Job(cluster_id=cid, operation="snapshot_save", status=JobStatus.SUCCEEDED)
        s.add(job)
        s.flush()
        task = "[rke2m] snapshot saved" if saved else "[rke2m] snapshots listed"
        data: dict[str, Any] = {"table": rows, **({"snapshot": saved} if saved else {})}
        record_reports(s, job, [HostEvent(host, "report", task=task, data=data)])
        return job.id


def counts(db: Database) -> tuple[int, int, str]:
    with db.read_session() as s:
        cluster = s.scalars(select(Cluster)).one()
        return (
            s.scalar(select(func.count(Job.id))) or 0,
            s.scalar(select(func.count(Node.id))) or 0,
            cluster.operation_status,
        )


@pytest.fixture
def cid(db: Database) -> int:
    return make_cluster(db, nodes=NODES)


def test_save_starts_a_job_under_the_lock(client: TestClient, db: Database, cid: int) -> None:
    r = client.post(f"/api/clusters/{cid}/snapshots", json={"name": "before-change"})
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["status"] == "running"
    assert body["job"]["operation"] == "snapshot_save"
    assert body["job"]["nodes"] == []
    with db.read_session() as s:
        job = s.get(Job, body["job_id"])
        cluster = s.get(Cluster, cid)
        assert job is not None and cluster is not None
        assert job.params == {"name": "before-change", "on": "m1", "servers": ["m1", "m2", "m3"]}
        assert cluster.current_job_id == job.id
        assert cluster.operation_locked_by == "snapshot_save"
    # and the next one waits: 409, or a place in the queue
    r = client.post(f"/api/clusters/{cid}/snapshots", json={"name": "again"})
    assert r.status_code == 409
    assert r.json()["detail"] == (
        f"Cluster is busy with operation 'snapshot_save' (job {body['job_id']}). Please wait."
    )
    r = client.post(f"/api/clusters/{cid}/snapshots?on_busy=queue", json={"name": "again"})
    assert r.status_code == 202
    assert (r.json()["status"], r.json()["position"]) == ("queued", 1)


def test_save_goes_to_an_active_server_when_the_initial_master_is_not(
    client: TestClient, db: Database
) -> None:
    cid = make_cluster(
        db,
        nodes=[
            ("m1", "127.0.30.1", "server", "FAILED"),
            ("m2", "127.0.30.2", "server", "ACTIVE"),
        ],
    )
    r = client.post(f"/api/clusters/{cid}/snapshots", json={"name": "x"})
    assert r.status_code == 202
    with db.read_session() as s:
        job = s.get(Job, r.json()["job_id"])
        assert job is not None and job.params["on"] == "m2"


def test_save_without_an_active_server_is_refused(client: TestClient, db: Database) -> None:
    cid = make_cluster(db, nodes=[("m1", "127.0.30.1", "server", "PENDING")])
    before = counts(db)
    r = client.post(f"/api/clusters/{cid}/snapshots", json={"name": "x"})
    assert r.status_code == 400
    assert r.json()["detail"] == "No ACTIVE server to save the snapshot on."
    assert counts(db) == before


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"name": ""},
        {"name": "Upper"},
        {"name": "-lead"},
        {"name": "trail-"},
        {"name": "a" * 41},
        {"name": "a/b"},
        {"name": "../etc"},
        {"name": "a.b"},
        {"name": "a b"},
        {"name": "$(id)"},
        {"name": "x\n"},
        {"name": 5},
        {"name": "x", "extra": 1},
    ],
)
def test_save_validates_the_name(
    client: TestClient, db: Database, cid: int, body: dict[str, Any]
) -> None:
    before = counts(db)
    r = client.post(f"/api/clusters/{cid}/snapshots", json=body)
    assert r.status_code == 422, r.text
    assert counts(db) == before


def test_unknown_cluster_is_404(client: TestClient, db: Database) -> None:
    for r in (
        client.post("/api/clusters/99/snapshots", json={"name": "x"}),
        client.get("/api/clusters/99/snapshots"),
        client.delete("/api/clusters/99/snapshots/x-m1-1"),
        client.post("/api/clusters/99/restore?confirm_restore=true", json={"snapshot": "x"}),
    ):
        assert r.status_code == 404, r.text
        assert r.json()["detail"] == "Cluster 99 not found"


def test_list_answers_from_the_recorded_lists(client: TestClient, db: Database, cid: int) -> None:
    r = client.get(f"/api/clusters/{cid}/snapshots")
    assert r.status_code == 200
    # never listed: no snapshot known, every installed server says so
    assert r.json() == {
        "snapshots": [],
        "servers": [{"node": h, "listed_at": None, "job_id": None} for h in ("m1", "m2", "m3")],
    }
    job = record(
        db,
        cid,
        "m1",
        table(
            ("a-m1-100", 1024, "2026-12-01T10:00:00Z"), ("b-m1-200", 2048, "2026-12-02T10:00:00Z")
        ),
        saved="b-m1-200",
    )
    record(db, cid, "m2", table())
    body = client.get(f"/api/clusters/{cid}/snapshots").json()
    assert [(s["name"], s["node"], s["size"]) for s in body["snapshots"]] == [
        ("b-m1-200", "m1", 2048),
        ("a-m1-100", "m1", 1024),
    ]
    assert body["snapshots"][0]["location"] == LOCATION + "b-m1-200"
    assert datetime.fromisoformat(body["snapshots"][1]["taken_at"]) == datetime(
        2026, 12, 1, 10, tzinfo=UTC
    )
    servers = {s["node"]: s for s in body["servers"]}
    assert servers["m1"]["job_id"] == job and servers["m1"]["listed_at"] is not None
    assert servers["m2"]["listed_at"] is not None
    assert servers["m3"]["listed_at"] is None
    with db.read_session() as s:
        saved = s.get(Job, job)
        assert saved is not None and saved.snapshot == "b-m1-200"
    # a later list replaces the server's rows
    record(db, cid, "m1", table(("b-m1-200", 2048, "2026-12-02T10:00:00Z")))
    names = [s["name"] for s in client.get(f"/api/clusters/{cid}/snapshots").json()["snapshots"]]
    assert names == ["b-m1-200"]


def test_rows_go_with_their_node(db: Database, cid: int) -> None:
    record(db, cid, "m2", table(("a-m2-1", 1, "2026-12-01T10:00:00Z")))
    with db.transaction() as s:
        node = s.scalars(select(Node).where(Node.hostname == "m2")).one()
        s.delete(node)
    with db.read_session() as s:
        assert s.scalar(select(func.count(Snapshot.id))) == 0
        assert s.scalar(select(func.count(SnapshotList.id))) == 0


def test_delete_needs_a_known_snapshot(client: TestClient, db: Database, cid: int) -> None:
    before = counts(db)
    r = client.delete(f"/api/clusters/{cid}/snapshots/nope-m1-1")
    assert r.status_code == 404
    assert r.json()["detail"] == (
        f"Snapshot 'nope-m1-1' not found in cluster 'prod' (GET /api/clusters/{cid}/snapshots "
        "lists the known ones)"
    )
    for bad in ("-x", "a%20b", "a;id", "x" * 256, ".hidden", "a%2Fb"):
        assert client.delete(f"/api/clusters/{cid}/snapshots/{bad}").status_code in (404, 422)
        assert counts(db) == before
    assert client.delete(f"/api/clusters/{cid}/snapshots/a;id").status_code == 422
    record(db, cid, "m1", table(("s-m1-1", 1, "2026-12-01T10:00:00Z")))
    record(db, cid, "m2", table(("s-m1-1", 1, "2026-12-01T10:00:00Z")))
    r = client.delete(f"/api/clusters/{cid}/snapshots/s-m1-1")
    assert r.status_code == 202, r.text
    assert r.json()["job"]["operation"] == "snapshot_delete"
    with db.read_session() as s:
        job = s.get(Job, r.json()["job_id"])
        assert job is not None and job.params == {"name": "s-m1-1", "on": ["m1", "m2"]}


def test_delete_while_busy_is_409(client: TestClient, db: Database, cid: int) -> None:
    record(db, cid, "m1", table(("s-m1-1", 1, "2026-12-01T10:00:00Z")))
    running = lock_cluster(db, cid, "install")
    r = client.delete(f"/api/clusters/{cid}/snapshots/s-m1-1")
    assert r.status_code == 409
    assert r.json()["detail"] == (
        f"Cluster is busy with operation 'install' (job {running}). Please wait."
    )


def test_restore_needs_confirmation(client: TestClient, db: Database, cid: int) -> None:
    record(db, cid, "m2", table(("s-m2-1", 1, "2026-12-01T10:00:00Z")))
    before = counts(db)
    for query in ("", "?confirm_restore=false"):
        r = client.post(f"/api/clusters/{cid}/restore{query}", json={"snapshot": "s-m2-1"})
        assert r.status_code == 400
        assert r.json()["detail"] == "Restoring a snapshot requires explicit confirmation."
        assert r.json()["guardrail"] == "restore"
    assert counts(db) == before


def test_restore_checks_busy_first_then_the_snapshot(
    client: TestClient, db: Database, cid: int
) -> None:
    r = client.post(f"/api/clusters/{cid}/restore?confirm_restore=true", json={"snapshot": "x-1"})
    assert r.status_code == 404
    assert r.json()["detail"].startswith("Snapshot 'x-1' not found in cluster 'prod'")
    for bad in ({"snapshot": "../../etc/passwd"}, {"snapshot": ""}, {}, {"snapshot": "a b"}):
        assert client.post(f"/api/clusters/{cid}/restore", json=bad).status_code == 422
    running = lock_cluster(db, cid, "scale_add_workers")
    r = client.post(f"/api/clusters/{cid}/restore", json={"snapshot": "x-1"})
    assert r.status_code == 409
    assert r.json()["job_id"] == running


def test_restore_starts_on_the_server_holding_the_snapshot(
    client: TestClient, db: Database, cid: int
) -> None:
    record(db, cid, "m2", table(("s-m2-1", 7, "2026-12-01T10:00:00Z")))
    r = client.post(
        f"/api/clusters/{cid}/restore?confirm_restore=true", json={"snapshot": "s-m2-1"}
    )
    assert r.status_code == 202, r.text
    job_out = r.json()["job"]
    assert job_out["operation"] == "restore"
    assert job_out["snapshot"] == "s-m2-1"
    # every installed node restarts; the PENDING one is left alone
    assert [n["hostname"] for n in job_out["nodes"]] == ["m1", "m2", "m3", "w1"]
    with db.read_session() as s:
        job = s.get(Job, job_out["id"])
        assert job is not None
        assert job.params == {
            "snapshot": "s-m2-1",
            "confirm_restore": True,
            "on": "m2",
            "path": "/var/lib/rancher/rke2/server/db/snapshots/s-m2-1",
            "servers": ["m2", "m1", "m3"],
        }
        masters = [n.hostname for n in s.scalars(select(Node)) if n.is_initial_master]
        assert masters == ["m2"]


def test_restore_refuses_a_snapshot_that_is_not_a_local_file(
    client: TestClient, db: Database, cid: int
) -> None:
    rows = ["--- snapshots", "s3-m1-1 s3://bucket/s3-m1-1 1 2026-12-01T10:00:00Z", "--- end"]
    record(db, cid, "m1", rows)
    before = counts(db)
    r = client.post(
        f"/api/clusters/{cid}/restore?confirm_restore=true", json={"snapshot": "s3-m1-1"}
    )
    assert r.status_code == 400
    assert r.json()["detail"] == (
        "Snapshot 's3-m1-1' on m1 is at s3://bucket/s3-m1-1, not in a local file: only a "
        "snapshot file on a server can be restored."
    )
    assert counts(db) == before


def test_parse_table_keeps_rows_and_drops_what_is_not_one() -> None:
    rows = parse_table(
        [
            "saved=x-m1-5",
            "--- snapshots",
            "time=... level=info msg=listing",
            "Name Location Size Created",
            "x-m1-5 file:///d/x-m1-5 12 2026-12-01T10:00:00+02:00",
            "bad;name file:///d/bad 1 2026-12-01T10:00:00Z",
            "y-m1-6.zip file:///d/y-m1-6.zip n/a not-a-time",
            "--- end",
            "z-m1-7 file:///d/z 1 2026-12-01T10:00:00Z",
        ]
    )
    assert rows is not None
    assert [(r.name, r.size) for r in rows] == [("x-m1-5", 12), ("y-m1-6.zip", None)]
    assert rows[0].taken_at == datetime(2026, 12, 1, 8, tzinfo=UTC)
    assert rows[1].taken_at is None
    assert parse_table(["Name Location Size Created"]) is None


def test_a_report_task_is_a_report_fact() -> None:
    event = {
        "event": "runner_on_ok",
        "event_data": {
            "host": "m1",
            "task": "[rke2m] snapshot saved",
            "res": {"msg": {"snapshot": "x-m1-1", "table": []}},
        },
    }
    fact = interpret(event)
    assert fact == HostEvent(
        "m1", "report", task="[rke2m] snapshot saved", data={"snapshot": "x-m1-1", "table": []}
    )
    event["event_data"]["task"] = "[rke2m] snapshot savedX"
    fact = interpret(event)
    assert fact is not None and fact.kind == "touched"


def test_dry_runs_plan_and_write_nothing(client: TestClient, db: Database, cid: int) -> None:
    record(db, cid, "m2", table(("s-m2-1", 7, "2026-12-01T10:00:00Z")))
    before = counts(db)
    r = client.post(f"/api/clusters/{cid}/snapshots?dry_run=true", json={"name": "x"})
    assert r.status_code == 200, r.text
    assert r.json()["would_succeed"] is True
    assert [j["operation"] for j in r.json()["jobs"]] == ["snapshot_save"]
    r = client.post(f"/api/clusters/{cid}/restore?dry_run=true", json={"snapshot": "s-m2-1"})
    assert r.status_code == 200, r.text
    assert r.json()["would_succeed"] is False
    assert r.json()["refusal"]["detail"] == "Restoring a snapshot requires explicit confirmation."
    r = client.delete(f"/api/clusters/{cid}/nodes/p1?dry_run=true")
    assert r.status_code == 200, r.text
    assert r.json()["would_succeed"] is True
    assert counts(db) == before
