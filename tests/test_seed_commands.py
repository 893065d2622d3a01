"""The seed's acceptance commands (SPEC §9), each from its own starting state, sent like curl -d."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import func, select

from rke2_manager.db import Database
from rke2_manager.models import Cluster, Job, Node
from tests.factories import FakeProber, make_cluster

FORM = {"Content-Type": "application/x-www-form-urlencoded"}  # what curl -d sends


def post(client: TestClient, url: str, body: str | None = None):  # type: ignore[no-untyped-def]
    return client.post(url, content=body, headers=FORM if body is not None else {})


def counts(db: Database) -> tuple[int, int]:
    with db.read_session() as s:
        return s.scalar(select(func.count(Job.id))) or 0, s.scalar(select(func.count(Node.id))) or 0


def test_install_then_add_while_running_is_409(client: TestClient, db: Database) -> None:
    make_cluster(
        db, nodes=[("m1", "10.0.0.1", "server", "PENDING"), ("w1", "10.0.0.4", "agent", "PENDING")]
    )
    r = post(client, "/api/jobs/install/1")
    assert r.status_code == 202, r.text
    job_id = r.json()["job_id"]
    assert r.json()["status"] == "running"

    before = counts(db)
    r = post(
        client,
        "/api/clusters/1/scale/add",
        '{"nodes": [{"hostname": "w2", "ip": "10.0.0.5", "role": "agent"}]}',
    )
    assert r.status_code == 409
    assert (
        r.json()["detail"]
        == f"Cluster is busy with operation 'install' (job {job_id}). Please wait."
    )
    assert r.json()["job_id"] == job_id
    assert counts(db) == before
    with db.read_session() as s:
        cluster = s.get(Cluster, 1)
        assert cluster is not None
        assert (cluster.operation_status, cluster.current_job_id) == ("running", job_id)
        assert cluster.operation_locked_by == "install"
        assert cluster.operation_started_at is not None


def test_seed_409_message_names_scale_add_masters(client: TestClient, db: Database) -> None:
    from tests.factories import lock_cluster

    cid = make_cluster(db)
    job_id = lock_cluster(db, cid, "scale_add_masters")
    r = post(
        client,
        f"/api/clusters/{cid}/scale/add",
        '{"nodes": [{"hostname": "w2", "ip": "10.0.0.5", "role": "agent"}]}',
    )
    assert r.status_code == 409
    assert r.json()["detail"] == (
        f"Cluster is busy with operation 'scale_add_masters' (job {job_id}). Please wait."
    )


def test_add_before_initial_master_active_is_400(
    client: TestClient, db: Database, prober: FakeProber
) -> None:
    make_cluster(db, nodes=[("m1", "10.0.0.1", "server", "INSTALLING")])
    r = post(
        client,
        "/api/clusters/1/scale/add",
        '{"nodes": [{"hostname": "w1", "ip": "10.0.0.4", "role": "agent"}]}',
    )
    assert r.status_code == 400
    assert r.json()["detail"] == (
        "Initial master 'm1' is not active (status: INSTALLING). Cannot add nodes."
    )
    assert counts(db) == (0, 1)
    assert prober.calls == []  # nothing to probe while the master is not ACTIVE


def test_remove_last_master_is_400(client: TestClient, db: Database) -> None:
    make_cluster(db, nodes=[("m1", "10.0.0.1", "server", "ACTIVE")])
    r = post(
        client,
        "/api/clusters/1/scale/remove",
        '{"nodes": [{"hostname": "m1", "ip": "10.0.0.1", "role": "server"}]}',
    )
    assert r.status_code == 400
    assert r.json()["detail"] == "Cannot remove all control-plane nodes. At least 1 required."
    assert counts(db) == (0, 1)


def test_remove_master_with_confirmation_is_accepted(client: TestClient, db: Database) -> None:
    make_cluster(db, name="other", nodes=[("x1", "10.0.9.1", "server", "ACTIVE")])
    cid = make_cluster(
        db,
        name="prod",
        nodes=[
            ("m1", "10.0.1.10", "server", "ACTIVE"),
            ("m2", "10.0.1.11", "server", "ACTIVE"),
            ("m3", "10.0.1.12", "server", "ACTIVE"),
        ],
    )
    assert cid == 2
    r = post(
        client,
        "/api/clusters/2/scale/remove?confirm_master_removal=true",
        '{"nodes": [{"hostname": "m2", "ip": "10.0.1.11", "role": "server"}]}',
    )
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["job"]["operation"] == "scale_remove_masters"
    [target] = body["job"]["nodes"]
    assert (target["hostname"], target["ip"], target["role"]) == ("m2", "10.0.1.11", "server")
    assert body["warnings"] and "2 etcd members" in body["warnings"][0]
    with db.read_session() as s:
        cluster = s.get(Cluster, 2)
        assert cluster is not None
        assert cluster.operation_locked_by == "scale_remove_masters"
        assert cluster.current_job_id == body["job_id"]
        m2 = s.scalars(select(Node).where(Node.cluster_id == 2, Node.hostname == "m2")).one()
        assert m2.id == target["id"]


def test_remove_master_without_confirmation_is_400(client: TestClient, db: Database) -> None:
    make_cluster(
        db,
        nodes=[
            ("m1", "10.0.1.10", "server", "ACTIVE"),
            ("m2", "10.0.1.11", "server", "ACTIVE"),
            ("m3", "10.0.1.12", "server", "ACTIVE"),
        ],
    )
    r = post(
        client,
        "/api/clusters/1/scale/remove",
        '{"nodes": [{"hostname": "m2", "ip": "10.0.1.11", "role": "server"}]}',
    )
    assert r.status_code == 400
    assert r.json()["detail"] == "Removing control-plane nodes requires explicit confirmation."
    assert counts(db) == (0, 3)


def test_no_content_type_at_all_is_read_as_json(client: TestClient, db: Database) -> None:
    make_cluster(db)
    r = client.post(
        "/api/clusters/1/scale/add",
        content=b'{"nodes": [{"hostname": "w1", "ip": "127.0.10.4", "role": "agent"}]}',
    )
    assert r.status_code == 202, r.text
