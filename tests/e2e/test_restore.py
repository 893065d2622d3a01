"""Restoring an etcd snapshot through the service on lab hosts (RKE2's cluster reset)."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from sqlalchemy import select

from rke2_manager.db import Database
from rke2_manager.models import Cluster, Node
from tests.e2e.support import Api, host_config
from tests.factories import TEST_BOX
from tests.lab import cluster as standin
from tests.lab.hosts import Lab

pytestmark = pytest.mark.lab

SNAPSHOTS = "/var/lib/rancher/rke2/server/db/snapshots"


def configmap(lab: Lab, host: str, name: str) -> bool:
    """Whether the ConfigMap exists, as the API server on host answers."""
    out = standin.kubectl(lab, host, f"get configmap {name} -o name")
    if out.ok:
        return True
    assert "NotFound" in out.stderr or "not found" in out.stderr, out.stderr
    return False


def test_restore_brings_the_cluster_back_to_the_snapshot(
    api: Api, db: Database, make_lab: Callable[[list[str]], Lab]
) -> None:
    lab = make_lab(["m1", "m2", "m3", "w1"])
    nodes = [("m1", "server"), ("m2", "server"), ("m3", "server"), ("w1", "agent")]
    cid = api.create_cluster("restore", lab, nodes)
    api.succeed(api.install(cid))

    assert standin.kubectl(lab, "m1", "create configmap before --from-literal=k=v").ok
    r = api.client.post(f"/api/clusters/{cid}/snapshots", json={"name": "base"})
    assert r.status_code == 202, r.text
    snapshot = api.succeed(r.json()["job_id"])["snapshot"]
    assert re.fullmatch(r"base-m1-\d+", snapshot), snapshot
    # state changed after the snapshot: the marker must be gone after the restore
    assert standin.kubectl(lab, "m2", "create configmap after --from-literal=k=v").ok
    assert configmap(lab, "m3", "after")
    # a server's own snapshots survive the wipe of its etcd data
    lab.run("m2", f"mkdir -p {SNAPSHOTS} && echo keep > {SNAPSHOTS}/mine-m2-1", check=True)
    # the stored kubeconfig is replaced by the one the restored server writes
    with db.transaction() as s:
        cluster = s.scalars(select(Cluster).where(Cluster.id == cid)).one()
        cluster.kubeconfig_enc = TEST_BOX.encrypt("stale: true\n")

    url = f"/api/clusters/{cid}/restore"
    r = api.client.post(url, json={"snapshot": snapshot})
    assert r.status_code == 400
    assert r.json()["detail"] == "Restoring a snapshot requires explicit confirmation."
    r = api.client.post(url, params={"confirm_restore": "true"}, json={"snapshot": snapshot})
    assert r.status_code == 202, r.text
    job = api.succeed(r.json()["job_id"], timeout=240)
    assert (job["operation"], job["snapshot"]) == ("restore", snapshot)

    for host in ("m1", "m2", "m3"):
        assert configmap(lab, host, "before")
        assert not configmap(lab, host, "after")
        assert standin.node_status(lab, host) == {
            "m1": "Ready",
            "m2": "Ready",
            "m3": "Ready",
            "w1": "Ready",
        }
        assert set(standin.etcd_members(lab, host)) == {"m1", "m2", "m3"}
    assert api.nodes(cid) == {h: ("ACTIVE", None) for h in ("m1", "m2", "m3", "w1")}
    assert api.lock(cid) == ("idle", None)
    # the reset ran on m1 (which holds the snapshot) and its flag is cleared by the start
    assert not lab.run("m1", "test -e /var/lib/rancher/rke2/server/db/reset-flag").ok
    assert lab.run("m2", f"cat {SNAPSHOTS}/mine-m2-1").stdout.strip() == "keep"
    kubeconfig = api.client.get(f"/api/clusters/{cid}/kubeconfig").text
    on_host = lab.run("m1", "cat /etc/rancher/rke2/rke2.yaml", check=True).stdout
    assert "stale" not in kubeconfig
    assert kubeconfig.split("client-key-data:")[1] == on_host.split("client-key-data:")[1]
    # the lists were read again after the restore
    listed = api.client.get(f"/api/clusters/{cid}/snapshots").json()
    assert {s["job_id"] for s in listed["servers"]} == {job["id"]}
    assert {(s["name"], s["node"]) for s in listed["snapshots"]} >= {(snapshot, "m1")}


def test_restore_from_a_server_that_is_not_the_initial_master(
    api: Api, db: Database, make_lab: Callable[[list[str]], Lab]
) -> None:
    """The server holding the snapshot bootstraps the restored cluster: it becomes the initial
    master and the old one rejoins through it (its config.yaml names it), never alone."""
    lab = make_lab(["m1", "m2", "m3"])
    cid = api.create_cluster("holder", lab, [("m1", "server"), ("m2", "server"), ("m3", "server")])
    api.succeed(api.install(cid))
    # while m1 was not ACTIVE, a snapshot was saved on the first ACTIVE server: m2
    set_status(db, cid, "m1", "FAILED")
    r = api.client.post(f"/api/clusters/{cid}/snapshots", json={"name": "on-m2"})
    snapshot = api.succeed(r.json()["job_id"])["snapshot"]
    assert re.fullmatch(r"on-m2-m2-\d+", snapshot), snapshot
    set_status(db, cid, "m1", "ACTIVE")
    assert standin.kubectl(lab, "m1", "create configmap after --from-literal=k=v").ok

    r = api.client.post(
        f"/api/clusters/{cid}/restore",
        params={"confirm_restore": "true"},
        json={"snapshot": snapshot},
    )
    assert r.status_code == 202, r.text
    api.succeed(r.json()["job_id"], timeout=240)

    masters = [n["hostname"] for n in api.cluster(cid)["nodes"] if n["is_initial_master"]]
    assert masters == ["m2"]
    assert "server" not in host_config(lab, "m2")[0]
    for host in ("m1", "m3"):
        assert host_config(lab, host)[0]["server"] == f"https://{lab.host('m2').ip}:9345"
    for host in ("m1", "m2", "m3"):
        assert not configmap(lab, host, "after")
        assert set(standin.etcd_members(lab, host)) == {"m1", "m2", "m3"}
        assert standin.node_status(lab, host) == {"m1": "Ready", "m2": "Ready", "m3": "Ready"}
    assert api.nodes(cid) == {h: ("ACTIVE", None) for h in ("m1", "m2", "m3")}


def set_status(db: Database, cid: int, hostname: str, status: str) -> None:
    with db.transaction() as s:
        node = s.scalars(
            select(Node).where(Node.cluster_id == cid, Node.hostname == hostname)
        ).one()
        node.status = status


def test_a_restore_with_a_server_out_of_reach_changes_nothing(
    api: Api, make_lab: Callable[[list[str]], Lab]
) -> None:
    """A server that cannot be stopped could still run its old member: the restore ends before
    anything is stopped or reset."""
    lab = make_lab(["m1", "m2", "m3"])
    cid = api.create_cluster("reach", lab, [("m1", "server"), ("m2", "server"), ("m3", "server")])
    api.succeed(api.install(cid))
    r = api.client.post(f"/api/clusters/{cid}/snapshots", json={"name": "base"})
    snapshot = api.succeed(r.json()["job_id"])["snapshot"]
    assert standin.kubectl(lab, "m1", "create configmap after --from-literal=k=v").ok
    lab.link_down("m3")

    r = api.client.post(
        f"/api/clusters/{cid}/restore",
        params={"confirm_restore": "true"},
        json={"snapshot": snapshot},
    )
    job = api.wait(r.json()["job_id"])
    assert job["status"] == "failed"
    assert job["reason"].startswith("m3: unreachable: "), job["reason"]
    for host in ("m1", "m2"):
        assert lab.run(host, "systemctl is-active rke2-server").stdout.strip() == "active"
        assert configmap(lab, host, "after")
    assert not lab.run("m1", "test -e /var/lib/rancher/rke2/server/db/reset-flag").ok
    assert "Reset etcd from the snapshot" not in api.log(job["id"])
    # only the fence was raised on m1 and m2: not attempted, as they were; so m3 can be
    # forgotten (G2 counts them ACTIVE) and the restore sent again
    nodes = api.nodes(cid)
    assert nodes["m1"] == nodes["m2"] == ("ACTIVE", f"not attempted: job {job['id']} failed")
    assert nodes["m3"][0] == "FAILED"
