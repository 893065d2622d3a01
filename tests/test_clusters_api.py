"""Cluster and node endpoints: create, read, edit, delete; secrets never shown."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import func, select

from rke2_manager.config import Settings
from rke2_manager.db import Database
from rke2_manager.models import AuditEntry, Cluster, Node
from rke2_manager.vault import SecretBox, new_ssh_keypair
from tests.factories import TEST_BOX, lock_cluster, make_cluster

BODY = {
    "name": "prod",
    "nodes": [
        {"hostname": "w1", "ip": "127.0.20.4", "role": "agent"},
        {"hostname": "m1", "ip": "127.0.20.1", "role": "server"},
        {"hostname": "m2", "ip": "127.0.20.2", "role": "server"},
    ],
}


def test_create_cluster_first_server_is_initial_master(
    client: TestClient, db: Database, settings: Settings
) -> None:
    r = client.post("/api/clusters", json=BODY)
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["name"] == "prod" and body["stage"] == "new"
    assert body["operation_status"] == "idle" and body["current_job_id"] is None
    assert body["ssh"]["user"] == "root" and body["ssh"]["port"] == 22
    assert body["ssh"]["public_key"].startswith("ssh-ed25519 ")
    assert body["rke2"] == {
        "version": None,
        "channel": "stable",
        "artifact_dir": None,
        "config": {},
        "secret_config_keys": [],
    }
    by_name = {n["hostname"]: n for n in body["nodes"]}
    assert by_name["m1"]["is_initial_master"] is True
    assert not by_name["m2"]["is_initial_master"] and not by_name["w1"]["is_initial_master"]
    assert {n["status"] for n in body["nodes"]} == {"PENDING"}
    assert "private_key" not in r.text
    with db.read_session() as s:
        cluster = s.scalars(select(Cluster)).one()
        box = SecretBox.from_settings(settings)
        private = box.decrypt(cluster.ssh_private_key_enc)
        token = box.decrypt(cluster.token_enc)
    assert private.startswith("-----BEGIN OPENSSH PRIVATE") and len(token) == 64
    for shown in (r.text, client.get(f"/api/clusters/{body['id']}").text):
        assert token not in shown and private.splitlines()[1] not in shown
    with db.read_session() as s:
        audit = s.scalars(select(AuditEntry)).one()
        assert (audit.action, audit.cluster_id) == ("cluster.create", cluster.id)


def test_create_with_given_key_and_options(
    client: TestClient, db: Database, settings: Settings
) -> None:
    private, public = new_ssh_keypair("me@laptop")
    artifacts = settings.artifact_root_dir / "v1.31.4"
    artifacts.mkdir(parents=True)
    r = client.post(
        "/api/clusters",
        json={
            **BODY,
            "ssh": {"user": "ubuntu", "port": 2222, "private_key": private},
            "rke2": {
                "version": "v1.31.4+rke2r1",
                "artifact_dir": str(artifacts),
                "config": {"cni": "canal"},
            },
            "registration_address": "rke2.example.internal",
        },
    )
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["ssh"] == {
        "user": "ubuntu",
        "port": 2222,
        "public_key": public.rsplit(" ", 1)[0],
        "host_key_checking": True,
    }
    assert body["rke2"]["version"] == "v1.31.4+rke2r1"
    assert body["rke2"]["config"] == {"cni": "canal"}
    assert body["rke2"]["artifact_dir"] == str(artifacts)
    assert body["registration_address"] == "rke2.example.internal"
    assert private.splitlines()[1] not in r.text
    with db.read_session() as s:
        stored = s.scalars(select(Cluster)).one()
        assert SecretBox.from_settings(settings).decrypt(stored.ssh_private_key_enc) == private


def test_duplicate_cluster_name_is_409(client: TestClient, db: Database) -> None:
    assert client.post("/api/clusters", json=BODY).status_code == 201
    r = client.post("/api/clusters", json=BODY)
    assert r.status_code == 409
    assert r.json()["detail"] == "Cluster named 'prod' already exists"
    with db.read_session() as s:
        assert s.scalar(select(func.count(Cluster.id))) == 1


def test_show_list_nodes_lock(client: TestClient, db: Database) -> None:
    cid = make_cluster(db)
    job_id = lock_cluster(db, cid, "install")
    assert [c["id"] for c in client.get("/api/clusters").json()] == [cid]
    shown = client.get(f"/api/clusters/{cid}").json()
    assert shown["operation_status"] == "running"
    assert shown["current_job_id"] == job_id
    assert shown["operation_locked_by"] == "install"
    assert shown["operation_started_at"] is not None
    lock = client.get(f"/api/clusters/{cid}/lock").json()
    assert lock["current_job_id"] == job_id and lock["fencing_token"] == 1
    nodes = client.get(f"/api/clusters/{cid}/nodes").json()
    assert [(n["hostname"], n["status"]) for n in nodes] == [("m1", "ACTIVE")]


def test_unknown_cluster_is_404_everywhere(client: TestClient, db: Database) -> None:
    for method, url in [
        ("GET", "/api/clusters/99"),
        ("GET", "/api/clusters/99/nodes"),
        ("GET", "/api/clusters/99/lock"),
        ("GET", "/api/clusters/99/kubeconfig"),
        ("DELETE", "/api/clusters/99"),
        ("PATCH", "/api/clusters/99"),
        ("POST", "/api/jobs/install/99"),
        ("GET", "/api/jobs/99"),
        ("GET", "/api/jobs/99/log"),
    ]:
        r = client.request(method, url, json={} if method == "PATCH" else None)
        assert r.status_code == 404, (method, url, r.text)
        assert r.json()["detail"].endswith("99 not found")


def test_delete_and_edit_locked_cluster_is_409(client: TestClient, db: Database) -> None:
    cid = make_cluster(db)
    job_id = lock_cluster(db, cid, "scale_add_masters")
    busy = f"Cluster is busy with operation 'scale_add_masters' (job {job_id}). Please wait."
    r = client.delete(f"/api/clusters/{cid}")
    assert (r.status_code, r.json()["detail"]) == (409, busy)
    r = client.patch(f"/api/clusters/{cid}", json={"registration_address": "127.0.0.9"})
    assert (r.status_code, r.json()["detail"]) == (409, busy)
    with db.read_session() as s:
        cluster = s.get(Cluster, cid)
        assert cluster is not None and cluster.registration_address is None


def test_edit_and_delete_idle_cluster(client: TestClient, db: Database) -> None:
    cid = make_cluster(db)
    r = client.patch(
        f"/api/clusters/{cid}", json={"name": "renamed", "registration_address": "127.0.0.9"}
    )
    assert r.status_code == 200, r.text
    assert (r.json()["name"], r.json()["registration_address"]) == ("renamed", "127.0.0.9")
    assert client.delete(f"/api/clusters/{cid}").status_code == 204
    assert client.get(f"/api/clusters/{cid}").status_code == 404
    with db.read_session() as s:
        assert s.scalar(select(func.count(Node.id))) == 0
        actions = s.scalars(select(AuditEntry.action).order_by(AuditEntry.id)).all()
        assert actions == ["cluster.update", "cluster.delete"]


def test_kubeconfig_404_before_install(client: TestClient, db: Database) -> None:
    cid = make_cluster(db)
    r = client.get(f"/api/clusters/{cid}/kubeconfig")
    assert r.status_code == 404
    assert r.json()["detail"] == f"Cluster {cid} has no kubeconfig yet; run the install first"


def test_health_ready_metrics_docs(client: TestClient, db: Database) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").status_code == 200
    cid = make_cluster(db)
    lock_cluster(db, cid)
    assert client.post(f"/api/jobs/install/{cid}").status_code == 409
    metrics = client.get("/metrics").text
    assert 'rke2m_refusals_total{reason="busy"}' in metrics
    assert client.get("/openapi.json").json()["info"]["title"] == "rke2-manager"


KUBECONFIG = """apiVersion: v1
clusters:
- cluster:
    certificate-authority-data: Zm9v
    server: https://127.0.0.1:6443
  name: default
"""


def test_kubeconfig_points_at_the_current_initial_master(client: TestClient, db: Database) -> None:
    cid = make_cluster(
        db,
        nodes=[
            ("m1", "127.0.20.1", "server", "ACTIVE"),
            ("m2", "127.0.20.2", "server", "ACTIVE"),
            ("m3", "127.0.20.3", "server", "ACTIVE"),
        ],
    )
    with db.transaction() as s:
        cluster = s.get(Cluster, cid)
        assert cluster is not None
        cluster.kubeconfig_enc = TEST_BOX.encrypt(KUBECONFIG)
    r = client.get(f"/api/clusters/{cid}/kubeconfig")
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/yaml")
    assert "server: https://127.0.20.1:6443" in r.text and "Zm9v" in r.text
    # removing the initial master moves the API address to the server that took over its role
    r = client.post(
        f"/api/clusters/{cid}/scale/remove?confirm_master_removal=true",
        json={"nodes": [{"hostname": "m1"}]},
    )
    assert r.status_code == 202
    assert "server: https://127.0.20.2:6443" in client.get(f"/api/clusters/{cid}/kubeconfig").text
    with db.transaction() as s:
        cluster = s.get(Cluster, cid)
        assert cluster is not None
        cluster.operation_status, cluster.current_job_id = "idle", None
    client.patch(f"/api/clusters/{cid}", json={"registration_address": "rke2.example.internal"})
    assert (
        "server: https://rke2.example.internal:6443"
        in client.get(f"/api/clusters/{cid}/kubeconfig").text
    )
