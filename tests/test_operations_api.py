"""Job-starting endpoints: G1 probe policy, G3 response, G4 duplicates, removal rules."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from rke2_manager.config import Settings
from rke2_manager.db import Database
from rke2_manager.models import Cluster, Job, Node
from tests.factories import FakeProber, make_cluster

ACTIVE3 = [
    ("m1", "127.0.30.1", "server", "ACTIVE"),
    ("m2", "127.0.30.2", "server", "ACTIVE"),
    ("m3", "127.0.30.3", "server", "ACTIVE"),
]


def state(db: Database) -> tuple[int, int, str]:
    with db.read_session() as s:
        cluster = s.scalars(select(Cluster)).first()
        return (
            s.scalar(select(func.count(Job.id))) or 0,
            s.scalar(select(func.count(Node.id))) or 0,
            cluster.operation_status if cluster else "",
        )


def add(client: TestClient, cid: int, *nodes: tuple[str, str, str]):  # type: ignore[no-untyped-def]
    return client.post(
        f"/api/clusters/{cid}/scale/add",
        json={"nodes": [{"hostname": h, "ip": ip, "role": r} for h, ip, r in nodes]},
    )


def test_g1_probe_warns_by_default(client: TestClient, db: Database, prober: FakeProber) -> None:
    cid = make_cluster(db, nodes=ACTIVE3)
    prober.down.add("127.0.30.1")
    r = add(client, cid, ("w1", "127.0.30.9", "agent"))
    assert r.status_code == 202
    assert r.json()["warnings"] == [
        "Initial master 'm1' supervisor at 127.0.30.1:9345 did not answer (Connection refused); "
        "continuing because the probe policy is 'warn'."
    ]
    assert prober.calls == ["127.0.30.1"]


@pytest.fixture
def enforce(settings: Settings) -> None:
    settings.probe_policy = "enforce"


def test_g1_probe_enforced(
    enforce: None, client: TestClient, db: Database, prober: FakeProber
) -> None:
    cid = make_cluster(db, nodes=ACTIVE3)
    prober.down.add("127.0.30.1")
    before = state(db)
    r = add(client, cid, ("w1", "127.0.30.9", "agent"))
    assert r.status_code == 400
    assert r.json()["detail"] == (
        "Initial master 'm1' supervisor at 127.0.30.1:9345 did not answer (Connection refused). "
        "Cannot add nodes."
    )
    assert state(db) == before


def test_g1_probes_fixed_registration_address(
    client: TestClient, db: Database, prober: FakeProber
) -> None:
    cid = make_cluster(db, nodes=ACTIVE3, registration_address="127.0.30.100")
    assert add(client, cid, ("w1", "127.0.30.9", "agent")).status_code == 202
    assert prober.calls == ["127.0.30.100"]


def test_g1_real_probe_against_closed_port(settings: Settings, db: Database) -> None:
    """The default probe really connects (loopback, nothing listening) and reports it."""
    from rke2_manager.probe import make_prober

    settings.supervisor_port = 1  # closed on loopback
    result = make_prober(settings)("127.0.0.1")
    assert not result.ok and result.error == "Connection refused"
    blocked = make_prober(settings)("10.0.0.1")
    assert not blocked.ok and blocked.error is not None
    assert blocked.error.startswith("not probed: 10.0.0.1 is outside RKE2M_ALLOWED_NETWORKS")


def test_g3_response_and_rows(client: TestClient, db: Database) -> None:
    cid = make_cluster(db, nodes=ACTIVE3)
    r = add(
        client,
        cid,
        ("w1", "127.0.30.11", "agent"),
        ("m4", "127.0.30.4", "server"),
        ("w2", "127.0.30.12", "agent"),
        ("w3", "127.0.30.13", "agent"),
    )
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["sequenced"] is True and body["workers_pending"] == 3
    assert body["job"]["operation"] == "scale_add_masters" and body["status"] == "running"
    agents = body["jobs"][1]
    assert body["workers_job_id"] == agents["id"]
    assert agents["operation"] == "scale_add_workers" and agents["status"] == "queued"
    assert agents["predecessor_id"] == body["job_id"]
    assert [n["hostname"] for n in agents["nodes"]] == ["w1", "w2", "w3"]
    with db.read_session() as s:
        cluster = s.get(Cluster, cid)
        assert cluster is not None and cluster.current_job_id == body["job_id"]
        new = s.scalars(select(Node).where(Node.hostname.in_(["m4", "w1", "w2", "w3"]))).all()
        # the agents become nodes when their job starts (their guardrails are checked again then)
        assert [(n.hostname, n.status) for n in new] == [("m4", "PENDING")]
    assert [n["id"] for n in agents["nodes"]] == [None, None, None]


def test_servers_only_is_not_sequenced(client: TestClient, db: Database) -> None:
    cid = make_cluster(db, nodes=ACTIVE3)
    body = add(client, cid, ("m4", "127.0.30.4", "server")).json()
    assert body["sequenced"] is False and body["workers_pending"] == 0
    assert body["workers_job_id"] is None and len(body["jobs"]) == 1


@pytest.mark.parametrize(
    ("node", "detail"),
    [
        (("m2", "127.0.30.50", "agent"), "Node with hostname 'm2' already exists in cluster"),
        (
            ("worker-01", "127.0.30.2", "agent"),
            "Node with IP '127.0.30.2' already exists in cluster",
        ),
        (("M2", "127.0.30.51", "agent"), "Node with hostname 'm2' already exists in cluster"),
    ],
)
def test_g4_duplicates(
    client: TestClient, db: Database, node: tuple[str, str, str], detail: str
) -> None:
    cid = make_cluster(db, nodes=ACTIVE3)
    before = state(db)
    r = add(client, cid, node)
    assert (r.status_code, r.json()["detail"]) == (400, detail)
    assert state(db) == before


def test_g4_same_node_twice_in_request(client: TestClient, db: Database) -> None:
    cid = make_cluster(db, nodes=ACTIVE3)
    before = state(db)
    r = add(client, cid, ("w1", "127.0.30.11", "agent"), ("w1", "127.0.30.12", "agent"))
    assert r.status_code == 400
    assert r.json()["detail"] == "Node with hostname 'w1' appears more than once in the request"
    r = add(client, cid, ("w1", "127.0.30.11", "agent"), ("w2", "127.0.30.11", "agent"))
    assert r.json()["detail"] == "Node with IP '127.0.30.11' appears more than once in the request"
    assert state(db) == before


def test_quorum_refusal_via_api(client: TestClient, db: Database) -> None:
    cid = make_cluster(db, nodes=ACTIVE3)
    r = client.post(
        f"/api/clusters/{cid}/scale/remove?confirm_master_removal=true",
        json={"nodes": [{"hostname": "m2"}, {"hostname": "m3"}]},
    )
    assert (r.status_code, r.json()["detail"]) == (
        400,
        "Removing 2 server(s) would break etcd quorum.",
    )
    assert state(db) == (0, 3, "idle")


def test_removing_initial_master_hands_over_the_role(client: TestClient, db: Database) -> None:
    cid = make_cluster(db, nodes=ACTIVE3)
    r = client.post(
        f"/api/clusters/{cid}/scale/remove?confirm_master_removal=true",
        json={"nodes": [{"hostname": "m1", "ip": "127.0.30.1", "role": "server"}]},
    )
    assert r.status_code == 202, r.text
    with db.read_session() as s:
        masters = s.scalars(select(Node.hostname).where(Node.is_initial_master)).all()
        assert masters == ["m2"]


@pytest.mark.parametrize(
    ("ref", "status", "detail"),
    [
        ({"hostname": "nope"}, 404, "Node 'nope' not found in cluster 'prod'"),
        (
            {"hostname": "m2", "ip": "127.0.30.9"},
            400,
            "Node 'm2' has IP '127.0.30.2', not '127.0.30.9'",
        ),
        ({"hostname": "m2", "role": "agent"}, 400, "Node 'm2' is a server, not a agent"),
    ],
)
def test_remove_unknown_or_mismatched_node(
    client: TestClient, db: Database, ref: dict[str, str], status: int, detail: str
) -> None:
    cid = make_cluster(db, nodes=ACTIVE3)
    r = client.post(
        f"/api/clusters/{cid}/scale/remove?confirm_master_removal=true", json={"nodes": [ref]}
    )
    assert (r.status_code, r.json()["detail"]) == (status, detail)
    assert state(db) == (0, 3, "idle")


def test_remove_mixed_roles_is_refused(client: TestClient, db: Database) -> None:
    cid = make_cluster(db, nodes=[*ACTIVE3, ("w1", "127.0.30.11", "agent", "ACTIVE")])
    r = client.post(
        f"/api/clusters/{cid}/scale/remove?confirm_master_removal=true",
        json={"nodes": [{"hostname": "m3"}, {"hostname": "w1"}]},
    )
    assert (r.status_code, r.json()["detail"]) == (
        400,
        "Remove servers and agents in separate requests.",
    )
    assert state(db) == (0, 4, "idle")


def test_remove_agent_needs_no_confirmation(client: TestClient, db: Database) -> None:
    cid = make_cluster(db, nodes=[*ACTIVE3, ("w1", "127.0.30.11", "agent", "ACTIVE")])
    r = client.post(f"/api/clusters/{cid}/scale/remove", json={"nodes": [{"hostname": "w1"}]})
    assert r.status_code == 202
    assert r.json()["job"]["operation"] == "scale_remove_workers"
