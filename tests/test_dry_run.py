"""``?dry_run=true``: the plan of install / scale add / scale remove, with nothing written.

Every test takes a full dump of the database (clusters with their lock columns, nodes, jobs,
audit entries) before and after the dry run, and then makes the real call to check that the
plan is what the real call does.
"""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import inspect, select

from rke2_manager.config import Settings
from rke2_manager.db import Database
from rke2_manager.models import AuditEntry, Cluster, Job, Node
from tests.factories import FakeProber, lock_cluster, make_cluster

ACTIVE3 = [
    ("m1", "127.0.30.1", "server", "ACTIVE"),
    ("m2", "127.0.30.2", "server", "ACTIVE"),
    ("m3", "127.0.30.3", "server", "ACTIVE"),
]
G3_ORDER = (
    "Servers and agents are added in two jobs: the servers' job first; the agents' job starts "
    "only once it has succeeded."
)


def dump(client: TestClient, db: Database) -> dict[str, list[dict[str, Any]]]:
    """Every row of the tables a call could change (refused calls' audit entries flushed)."""
    client.app.state.refusals.flush()  # type: ignore[attr-defined]
    out: dict[str, list[dict[str, Any]]] = {}
    with db.read_session() as s:
        for model in (Cluster, Node, Job, AuditEntry):
            rows = s.scalars(select(model).order_by(model.id)).all()  # type: ignore[attr-defined]
            columns = [c.key for c in inspect(model).column_attrs]
            out[model.__tablename__] = [{c: getattr(r, c) for c in columns} for r in rows]
    return out


def nodes(jobs: list[dict[str, Any]]) -> list[tuple[str, list[tuple[str, str, str]]]]:
    return [
        (j["operation"], [(n["hostname"], n["ip"], n["role"]) for n in j["nodes"]]) for j in jobs
    ]


def body(*spec: tuple[str, str, str]) -> dict[str, Any]:
    return {"nodes": [{"hostname": h, "ip": ip, "role": r} for h, ip, r in spec]}


def test_scale_add_plan_is_what_the_call_does(client: TestClient, db: Database) -> None:
    cid = make_cluster(db, nodes=ACTIVE3)
    new = body(("w1", "127.0.30.9", "agent"), ("m4", "127.0.30.4", "server"))
    before = dump(client, db)
    r = client.post(f"/api/clusters/{cid}/scale/add?dry_run=true", json=new)
    assert r.status_code == 200, r.text
    plan = r.json()
    assert dump(client, db) == before
    assert plan["dry_run"] is True and plan["would_succeed"] is True
    assert plan["refusal"] is None
    assert [
        (j["step"], j["status"], j["waits_for"], j["preflight_skip"]) for j in plan["jobs"]
    ] == [
        (1, "running", None, []),
        (2, "queued", 1, []),
    ]
    assert nodes(plan["jobs"]) == [
        ("scale_add_masters", [("m4", "127.0.30.4", "server")]),
        ("scale_add_workers", [("w1", "127.0.30.9", "agent")]),
    ]
    assert [n["hostname"] for n in plan["nodes"]] == ["m4", "w1"]
    assert all(n["id"] is None for n in plan["nodes"])
    assert plan["sequenced"] is True
    assert plan["guardrails"] == [
        {"guardrail": "G1", "verdict": "pass", "messages": []},
        {"guardrail": "G3", "verdict": "pass", "messages": [G3_ORDER]},
        {"guardrail": "G4", "verdict": "pass", "messages": []},
    ]
    real = client.post(f"/api/clusters/{cid}/scale/add", json=new)
    assert real.status_code == 202
    done = real.json()
    # the jobs as stored, which the worker runs: same operations, nodes and order
    with db.read_session() as s:
        rows = s.scalars(select(Job).order_by(Job.id)).all()
        stored = [
            (j.operation, [(t["hostname"], t["ip"], t["role"]) for t in j.targets]) for j in rows
        ]
        assert stored == nodes(plan["jobs"])
        assert rows[1].predecessor_id == rows[0].id  # step 2 waits for step 1
        assert [j.status for j in rows] == [j["status"] for j in plan["jobs"]]
    assert nodes(done["jobs"]) == nodes(plan["jobs"])
    assert [j["status"] for j in done["jobs"]] == [j["status"] for j in plan["jobs"]]
    assert (done["status"], done["position"], done["sequenced"], done["warnings"]) == (
        plan["status"],
        plan["position"],
        plan["sequenced"],
        plan["warnings"],
    )


def test_install_plan_and_its_refusal(client: TestClient, db: Database) -> None:
    cid = make_cluster(db, nodes=[("m1", "127.0.30.1", "server", "PENDING")])
    empty = make_cluster(db, name="empty", nodes=[])
    before = dump(client, db)
    ok = client.post(f"/api/jobs/install/{cid}?dry_run=true")
    refused = client.post(f"/api/jobs/install/{empty}?dry_run=true")
    assert dump(client, db) == before
    assert ok.status_code == 200 and refused.status_code == 200
    assert nodes(ok.json()["jobs"]) == [("install", [("m1", "127.0.30.1", "server")])]
    assert ok.json()["guardrails"] == [{"guardrail": "G1", "verdict": "pass", "messages": []}]
    plan = refused.json()
    assert (plan["would_succeed"], plan["status"], plan["jobs"]) == (False, None, [])
    assert plan["guardrails"] == [
        {
            "guardrail": "G1",
            "verdict": "refused",
            "messages": ["Cluster has no initial master. Cannot install."],
        }
    ]
    real_refused = client.post(f"/api/jobs/install/{empty}")
    assert real_refused.status_code == 400
    assert plan["refusal"] == real_refused.json()
    real = client.post(f"/api/jobs/install/{cid}")
    assert real.status_code == 202
    assert nodes(real.json()["jobs"]) == nodes(ok.json()["jobs"])
    assert real.json()["jobs"][0]["nodes"][0]["id"] == ok.json()["nodes"][0]["id"]


def test_g4_refusal_is_planned_not_audited(client: TestClient, db: Database) -> None:
    cid = make_cluster(db, nodes=ACTIVE3)
    dup = body(("w1", "127.0.30.2", "agent"))
    before = dump(client, db)
    r = client.post(f"/api/clusters/{cid}/scale/add?dry_run=true", json=dup)
    assert r.status_code == 200
    assert dump(client, db) == before  # no audit entry for a refused dry run either
    plan = r.json()
    message = "Node with IP '127.0.30.2' already exists in cluster"
    assert plan["refusal"] == {
        "type": "urn:rke2-manager:guardrail",
        "title": "Bad Request",
        "status": 400,
        "detail": message,
        "guardrail": "G4",
    }
    assert plan["guardrails"] == [
        {"guardrail": "G1", "verdict": "pass", "messages": []},
        {"guardrail": "G4", "verdict": "refused", "messages": [message]},
    ]
    real = client.post(f"/api/clusters/{cid}/scale/add", json=dup)
    assert (real.status_code, real.json()) == (400, plan["refusal"])
    audit = dump(client, db)["audit_log"]
    assert len(audit) == len(before["audit_log"]) + 1  # the real refusal is audited
    assert audit[-1]["result"] == f"400 {message}"


def test_g1_refused_and_g4_refused_both_shown(
    settings: Settings, client: TestClient, db: Database, prober: FakeProber
) -> None:
    settings.probe_policy = "enforce"
    cid = make_cluster(db, nodes=ACTIVE3)
    prober.down.add("127.0.30.1")
    r = client.post(
        f"/api/clusters/{cid}/scale/add?dry_run=true", json=body(("m2", "127.0.30.8", "server"))
    )
    g1 = (
        "Initial master 'm1' supervisor at 127.0.30.1:9345 did not answer (Connection refused). "
        "Cannot add nodes."
    )
    g4 = "Node with hostname 'm2' already exists in cluster"
    assert r.json()["guardrails"] == [
        {"guardrail": "G1", "verdict": "refused", "messages": [g1]},
        {"guardrail": "G4", "verdict": "refused", "messages": [g4]},
    ]
    # The real path checks G4 first: that is the refusal the call meets.
    assert r.json()["refusal"]["detail"] == g4


def test_g1_probe_warning_in_plan(client: TestClient, db: Database, prober: FakeProber) -> None:
    cid = make_cluster(db, nodes=ACTIVE3)
    prober.down.add("127.0.30.1")
    new = body(("w1", "127.0.30.9", "agent"))
    plan = client.post(f"/api/clusters/{cid}/scale/add?dry_run=true", json=new).json()
    warning = (
        "Initial master 'm1' supervisor at 127.0.30.1:9345 did not answer (Connection refused); "
        "continuing because the probe policy is 'warn'."
    )
    assert plan["warnings"] == [warning]
    assert plan["guardrails"][0] == {"guardrail": "G1", "verdict": "warn", "messages": [warning]}
    real = client.post(f"/api/clusters/{cid}/scale/add", json=new)
    assert real.json()["warnings"] == plan["warnings"]


def test_remove_servers_g2(client: TestClient, db: Database) -> None:
    cid = make_cluster(db, nodes=[*ACTIVE3, ("m4", "127.0.30.4", "server", "ACTIVE")])
    refs = {"nodes": [{"hostname": "m1"}]}
    before = dump(client, db)
    unconfirmed = client.post(f"/api/clusters/{cid}/scale/remove?dry_run=true", json=refs)
    url = f"/api/clusters/{cid}/scale/remove?dry_run=true&confirm_master_removal=true"
    confirmed = client.post(url, json=refs)
    assert dump(client, db) == before
    even = (
        "After this removal the cluster has 3 etcd members; an even number tolerates no more "
        "failures than one fewer. Prefer an odd number of servers."
    )
    assert even not in unconfirmed.json()["guardrails"][0]["messages"]
    assert unconfirmed.json()["guardrails"] == [
        {
            "guardrail": "G2",
            "verdict": "refused",
            "messages": ["Removing control-plane nodes requires explicit confirmation."],
        }
    ]
    assert unconfirmed.json()["refusal"]["status"] == 400
    plan = confirmed.json()
    assert plan["would_succeed"] is True
    assert plan["guardrails"] == [{"guardrail": "G2", "verdict": "pass", "messages": []}]
    assert nodes(plan["jobs"]) == [("scale_remove_masters", [("m1", "127.0.30.1", "server")])]
    assert plan["jobs"][0]["preflight_skip"] is None  # a removal runs no preflight checks
    real = client.post(url.replace("dry_run=true&", ""), json=refs)
    assert real.status_code == 202
    assert nodes(real.json()["jobs"]) == nodes(plan["jobs"])
    assert real.json()["warnings"] == plan["warnings"] == []


def test_remove_even_count_warns(client: TestClient, db: Database) -> None:
    cid = make_cluster(db, nodes=ACTIVE3)
    url = f"/api/clusters/{cid}/scale/remove?confirm_master_removal=true"
    refs = {"nodes": [{"hostname": "m3"}]}
    plan = client.post(url + "&dry_run=true", json=refs).json()
    even = (
        "After this removal the cluster has 2 etcd members; an even number tolerates no more "
        "failures than one fewer. Prefer an odd number of servers."
    )
    assert plan["guardrails"] == [{"guardrail": "G2", "verdict": "warn", "messages": [even]}]
    assert plan["warnings"] == [even]
    assert client.post(url, json=refs).json()["warnings"] == [even]


def test_remove_unknown_node_is_a_planned_404(client: TestClient, db: Database) -> None:
    cid = make_cluster(db, nodes=ACTIVE3)
    refs = {"nodes": [{"hostname": "nope"}]}
    plan = client.post(f"/api/clusters/{cid}/scale/remove?dry_run=true", json=refs).json()
    real = client.post(f"/api/clusters/{cid}/scale/remove", json=refs)
    assert real.status_code == 404
    assert (plan["would_succeed"], plan["refusal"], plan["guardrails"]) == (
        False,
        real.json(),
        [],
    )


def test_busy_cluster_reject_and_queue(client: TestClient, db: Database) -> None:
    cid = make_cluster(db, nodes=ACTIVE3)
    holder = lock_cluster(db, cid)
    new = body(("w1", "127.0.30.9", "agent"))
    before = dump(client, db)
    rejected = client.post(f"/api/clusters/{cid}/scale/add?dry_run=true", json=new).json()
    url = f"/api/clusters/{cid}/scale/add?on_busy=queue"
    queued = client.post(url + "&dry_run=true", json=new).json()
    assert dump(client, db) == before
    assert rejected["refusal"] == {
        "type": "urn:rke2-manager:cluster-busy",
        "title": "Conflict",
        "status": 409,
        "detail": f"Cluster is busy with operation 'scale_add_masters' (job {holder}). "
        "Please wait.",
        "operation": "scale_add_masters",
        "job_id": holder,
    }
    assert (queued["status"], queued["position"]) == ("queued", 1)
    assert [j["status"] for j in queued["jobs"]] == ["queued"]
    real = client.post(url, json=new).json()
    assert (real["status"], real["position"]) == ("queued", 1)
    second = client.post(url + "&dry_run=true", json=body(("w2", "127.0.30.10", "agent")))
    assert second.json()["position"] == 2


def test_queued_g1_refusal_becomes_a_deferred_warning(client: TestClient, db: Database) -> None:
    """The initial master is PENDING and an install runs: G1 refuses now, the plan says the
    queued job will check again, with the very warning the real call stores."""
    cid = make_cluster(db, nodes=[("m1", "127.0.30.1", "server", "PENDING")])
    holder = lock_cluster(db, cid, "install")
    new = body(("w1", "127.0.30.9", "agent"))
    url = f"/api/clusters/{cid}/scale/add?on_busy=queue"
    plan = client.post(url + "&dry_run=true", json=new).json()
    deferred = (
        "G1 refuses this now (\"Initial master 'm1' is not active (status: PENDING). Cannot add "
        f"nodes.\"), but job {holder} ahead of this one installs 'm1': G1 is checked again when "
        "this job starts."
    )
    assert plan["would_succeed"] is True
    assert plan["guardrails"][0] == {"guardrail": "G1", "verdict": "warn", "messages": [deferred]}
    assert plan["warnings"] == [deferred]
    assert client.post(url, json=new).json()["warnings"] == [deferred]


def test_unknown_cluster_and_bad_body_answer_as_the_real_call(
    client: TestClient, db: Database
) -> None:
    make_cluster(db, nodes=ACTIVE3)
    before = dump(client, db)
    r = client.post("/api/jobs/install/999?dry_run=true")
    assert (r.status_code, r.json()["detail"]) == (404, "Cluster 999 not found")
    bad = client.post("/api/clusters/1/scale/add?dry_run=true", json=body(("w1", "1.2.3", "x")))
    assert bad.status_code == 422
    assert dump(client, db) == before  # a dry run is not audited, even when refused


def test_openapi_documents_the_plan(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    for route in (
        "/api/jobs/install/{cluster_id}",
        "/api/clusters/{cluster_id}/scale/add",
        "/api/clusters/{cluster_id}/scale/remove",
    ):
        operation = spec["paths"][route]["post"]
        assert "dry_run" in [p["name"] for p in operation["parameters"]]
        schema = operation["responses"]["200"]["content"]["application/json"]["schema"]
        assert schema == {"$ref": "#/components/schemas/OperationPlan"}
        assert "202" in operation["responses"]


DAY2 = {
    "snapshot save": ("post", "/api/clusters/{cid}/snapshots", {"name": "before"}),
    "snapshot delete (none such)": ("delete", "/api/clusters/{cid}/snapshots/nope-m1-1", None),
    "restore unconfirmed": ("post", "/api/clusters/{cid}/restore", {"snapshot": "s-m1-1"}),
    "forget a pending node": ("delete", "/api/clusters/{cid}/nodes/w9", None),
    "forget a server unconfirmed": ("delete", "/api/clusters/{cid}/nodes/m2", None),
    "upgrade (artifact dir outside the root)": (
        "post",
        "/api/clusters/{cid}/upgrade",
        {"version": "v1.31.5+rke2r1", "artifact_dir": "/etc"},
    ),
    "preflight": ("post", "/api/clusters/{cid}/preflight", None),
}


@pytest.mark.parametrize("case", DAY2)
def test_day2_operations_plan_what_they_do(client: TestClient, db: Database, case: str) -> None:
    """Every job-starting route takes dry_run; the plan is what the real call then does: the
    same jobs on the same nodes, or the very refusal it answers."""
    cid = make_cluster(db, nodes=[*ACTIVE3, ("w9", "127.0.30.9", "agent", "PENDING")])
    method, path, payload = DAY2[case]
    url = path.format(cid=cid)
    kwargs: dict[str, Any] = {"json": payload} if payload is not None else {}
    before = dump(client, db)
    r = client.request(method, url, params={"dry_run": "true"}, **kwargs)
    after = dump(client, db)
    if r.status_code == 422:  # invalid input answers as the real call: no plan to make
        assert after == before
        real = client.request(method, url, **kwargs)
        assert (real.status_code, real.json()) == (422, r.json())
        return
    assert r.status_code == 200, r.text
    assert after == before
    plan = r.json()
    real = client.request(method, url, **kwargs)
    if plan["would_succeed"]:
        assert real.status_code == 202, real.text
        assert nodes(real.json()["jobs"]) == nodes(plan["jobs"])
        assert real.json()["warnings"] == plan["warnings"]
    else:
        assert plan["refusal"] == real.json()
        assert real.status_code == plan["refusal"]["status"] != 202


def test_every_job_starting_route_takes_dry_run(client: TestClient) -> None:
    """A route that answers 202 with a job also plans (an operation added later included)."""
    spec = client.get("/openapi.json").json()
    starting = [
        (method.upper(), path, op)
        for path, ops in spec["paths"].items()
        for method, op in ops.items()
        if "202" in op.get("responses", {})
    ]
    assert len(starting) >= 9
    for method, path, op in starting:
        assert "dry_run" in [p["name"] for p in op.get("parameters", [])], (method, path)
        plan_schema = op["responses"]["200"]["content"]["application/json"]["schema"]
        assert plan_schema == {"$ref": "#/components/schemas/OperationPlan"}, (method, path)
