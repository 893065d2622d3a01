"""PATCH /api/clusters/{id}/nodes/{hostname}: fix a PENDING node's hostname or IP."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select

from rke2_manager.db import Database
from rke2_manager.models import AuditEntry, Job, Node
from tests.factories import lock_cluster, make_cluster

NODES = [
    ("m1", "127.0.40.1", "server", "PENDING"),
    ("m2", "127.0.40.2", "server", "PENDING"),
    ("w1", "127.0.40.9", "agent", "PENDING"),
]
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"


def rows(client: TestClient, db: Database) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """Every node and audit entry (refused calls' entries flushed first)."""
    client.app.state.refusals.flush()  # type: ignore[attr-defined]
    with db.read_session() as s:
        nodes = [
            (n.id, n.hostname, n.ip, n.role, n.status, n.host_key, n.is_initial_master)
            for n in s.scalars(select(Node).order_by(Node.id))
        ]
        audit = [(a.id, a.action, a.result) for a in s.scalars(select(AuditEntry))]
    return nodes, audit


def patch(client: TestClient, cid: int, hostname: str, body: Any):  # type: ignore[no-untyped-def]
    return client.patch(f"/api/clusters/{cid}/nodes/{hostname}", json=body)


def test_rename_and_readdress_a_pending_node(client: TestClient, db: Database) -> None:
    cid = make_cluster(db, nodes=NODES)
    with db.transaction() as s:
        node = s.scalars(select(Node).where(Node.hostname == "w1")).one()
        node.host_key = KEY
        w1 = node.id
    r = patch(client, cid, "w1", {"hostname": "Worker-01", "ip": "127.0.40.19"})
    assert r.status_code == 200, r.text
    assert (r.json()["id"], r.json()["hostname"], r.json()["ip"]) == (
        w1,
        "worker-01",
        "127.0.40.19",
    )
    with db.read_session() as s:
        node = s.get(Node, w1)
        assert node is not None
        assert (node.hostname, node.ip, node.host_key, node.status) == (
            "worker-01",
            "127.0.40.19",
            None,  # a new address is a new machine: its key is pinned afresh
            "PENDING",
        )
        entry = s.scalars(select(AuditEntry).where(AuditEntry.action == "node.update")).one()
        assert entry.cluster_id == cid and entry.result == "ok"
        assert entry.detail["before"] == {"hostname": "w1", "ip": "127.0.40.9"}
        assert entry.detail["after"] == {"hostname": "worker-01", "ip": "127.0.40.19"}
        assert entry.detail["forgot_host_key"].startswith("SHA256:")


def test_rename_only_keeps_the_key_and_the_initial_master(client: TestClient, db: Database) -> None:
    cid = make_cluster(db, nodes=NODES)
    with db.transaction() as s:
        s.scalars(select(Node).where(Node.hostname == "m1")).one().host_key = KEY
    r = patch(client, cid, "m1", {"hostname": "cp-1"})
    assert r.status_code == 200
    with db.read_session() as s:
        node = s.scalars(select(Node).where(Node.hostname == "cp-1")).one()
        assert (node.ip, node.host_key, node.is_initial_master) == ("127.0.40.1", KEY, True)
    # giving a node its own values back is no conflict with itself
    assert patch(client, cid, "cp-1", {"hostname": "cp-1", "ip": "127.0.40.1"}).status_code == 200


def test_g4_duplicates_refused_with_nothing_changed(client: TestClient, db: Database) -> None:
    cid = make_cluster(db, nodes=NODES)
    make_cluster(db, name="other", nodes=[("x1", "127.0.40.50", "server", "PENDING")])
    before = rows(client, db)
    dup_name = patch(client, cid, "w1", {"hostname": "m2"})
    dup_ip = patch(client, cid, "w1", {"ip": "127.0.40.1"})
    assert (dup_name.status_code, dup_name.json()["detail"], dup_name.json()["guardrail"]) == (
        400,
        "Node with hostname 'm2' already exists in cluster",
        "G4",
    )
    assert dup_ip.status_code == 400
    assert dup_ip.json()["detail"] == "Node with IP '127.0.40.1' already exists in cluster"
    nodes, audit = rows(client, db)
    assert nodes == before[0]
    assert [a[2] for a in audit[len(before[1]) :]] == [
        "400 Node with hostname 'm2' already exists in cluster",
        "400 Node with IP '127.0.40.1' already exists in cluster",
    ]
    # another cluster's names and addresses are no concern of G4
    assert patch(client, cid, "w1", {"hostname": "x1", "ip": "127.0.40.50"}).status_code == 200


def test_only_pending_nodes(client: TestClient, db: Database) -> None:
    cid = make_cluster(db, nodes=[("m1", "127.0.40.1", "server", "ACTIVE")])
    before = rows(client, db)[0]
    r = patch(client, cid, "m1", {"ip": "127.0.40.3"})
    assert r.status_code == 409
    assert r.json()["detail"] == (
        "Node 'm1' is ACTIVE: only a PENDING node can be edited (remove it and add it again "
        "instead)."
    )
    assert rows(client, db)[0] == before


def test_refused_while_a_job_works_on_the_node(client: TestClient, db: Database) -> None:
    cid = make_cluster(db, nodes=NODES)
    holder = lock_cluster(db, cid, "install")
    with db.transaction() as s:
        job = s.get(Job, holder)
        assert job is not None
        job.targets = [{"id": None, "hostname": "w1", "ip": "127.0.40.9", "role": "agent"}]
    before = rows(client, db)[0]
    r = patch(client, cid, "w1", {"ip": "127.0.40.29"})
    assert r.status_code == 409
    assert r.json()["detail"] == (
        f"Node 'w1' is a target of job {holder} (install), which holds the cluster's lock. "
        "Please wait."
    )
    assert r.json()["job_id"] == holder
    assert rows(client, db)[0] == before
    # a node the running job does not work on can be fixed meanwhile
    assert patch(client, cid, "m2", {"ip": "127.0.40.22"}).status_code == 200


def test_refused_while_a_queued_job_names_the_node(client: TestClient, db: Database) -> None:
    cid = make_cluster(db, nodes=NODES)
    lock_cluster(db, cid, "install")
    queued = client.post(
        f"/api/clusters/{cid}/scale/remove?on_busy=queue", json={"nodes": [{"hostname": "w1"}]}
    )
    assert queued.status_code == 202
    job_id = queued.json()["job_id"]
    r = patch(client, cid, "w1", {"hostname": "w9"})
    assert r.status_code == 409
    assert r.json()["detail"] == (
        f"Node 'w1' is a target of job {job_id} (scale_remove_workers), queued for the "
        "cluster's lock. Cancel that job or wait."
    )


def test_not_found_and_invalid_input(client: TestClient, db: Database) -> None:
    cid = make_cluster(db, nodes=NODES)
    before = rows(client, db)[0]
    missing = patch(client, cid, "nope", {"ip": "127.0.40.30"})
    assert (missing.status_code, missing.json()["detail"]) == (
        404,
        f"Node 'nope' not found in cluster {cid}",
    )
    assert patch(client, 999, "w1", {"ip": "127.0.40.30"}).json()["detail"] == (
        "Cluster 999 not found"
    )
    cases = {
        "empty": ({}, "body: give hostname, ip or both"),
        "bad ip": ({"ip": "127.0.40.300"}, "ip: '127.0.40.300' is not a valid IP address"),
        "multicast": ({"ip": "224.0.0.1"}, "ip: '224.0.0.1' is not a unicast address"),
        "bad name": ({"hostname": "-x"}, "hostname: '-x' is not a valid RFC 1123 hostname"),
        "role": ({"role": "agent"}, "role: Extra inputs are not permitted"),
    }
    for body, detail in cases.values():
        r = patch(client, cid, "w1", body)
        assert (r.status_code, r.json()["detail"]) == (422, detail), body
    assert rows(client, db)[0] == before


def test_openapi_documents_the_patch(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    route = spec["paths"]["/api/clusters/{cluster_id}/nodes/{hostname}"]["patch"]
    assert {"200", "400", "404", "409", "422"} <= set(route["responses"])
    schema = spec["components"]["schemas"]["NodeUpdate"]
    assert all(field.get("description") for field in schema["properties"].values())
