"""Day-2 behaviour of the stand-in RKE2: versions and upgrades, etcd API, Node finalizers."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.lab import cluster
from tests.lab.fixtures import LabFactory
from tests.lab.standin.artifact import DEFAULT_VERSION, UPGRADE_VERSION

pytestmark = pytest.mark.lab

NEW_DEST = "/root/rke2-artifacts-new"


def test_versions_follow_the_binaries_a_node_was_started_from(
    lab_factory: LabFactory, rke2_artifact: Path, rke2_upgrade_artifact: Path
) -> None:
    lab = lab_factory(["m1", "w1"])
    cluster.start_cluster(lab, rke2_artifact, ["m1"], ["w1"])
    lines = lab.run("m1", "rke2 --version", check=True).stdout.splitlines()
    assert re.fullmatch(r"rke2 version v1\.31\.4\+rke2r1 \([0-9a-f]{40}\)", lines[0])
    assert lines[1] == "go version go1.22.9 X:boringcrypto"
    assert cluster.kubelet_version(lab, "m1", "m1") == DEFAULT_VERSION
    assert cluster.kubectl(lab, "m1", "get nodes --no-headers").stdout.split()[4] == DEFAULT_VERSION
    assert rke2_upgrade_artifact.parent == rke2_artifact.parent

    # new binaries on m1: the binary reports the new version, the running node the old one
    cluster.push_artifact(lab, "m1", rke2_upgrade_artifact, NEW_DEST)
    assert cluster.install(lab, "m1", dest=NEW_DEST).ok
    assert cluster.rke2_version(lab, "m1") == UPGRADE_VERSION
    assert (
        lab.run("m1", "rke2 --version", check=True)
        .stdout.splitlines()[1]
        .startswith("go version go1.23.")
    )
    assert cluster.kubelet_version(lab, "m1", "m1") == DEFAULT_VERSION
    server = cluster.kubectl(lab, "m1", "version").stdout
    assert f"Server Version: {DEFAULT_VERSION}" in server

    # the restart runs the new version: kubelet, API server and RKE2's kubectl
    assert lab.run("m1", "systemctl restart rke2-server", timeout=60).ok
    assert cluster.kubelet_version(lab, "m1", "m1") == UPGRADE_VERSION
    server = cluster.kubectl(lab, "m1", "version").stdout
    assert f"Client Version: {UPGRADE_VERSION}" in server
    assert f"Server Version: {UPGRADE_VERSION}" in server
    assert cluster.kubelet_version(lab, "m1", "w1") == DEFAULT_VERSION

    # the failure knob names one version: the running one still restarts fine ...
    lab.run(
        "w1",
        f"echo RKE2_STANDIN_FAIL_VERSION={UPGRADE_VERSION} >> /etc/default/rke2-agent",
        check=True,
    )
    assert lab.run("w1", "systemctl restart rke2-agent", timeout=60).ok
    # ... w1's new version dies at start, the unit's start job fails
    cluster.push_artifact(lab, "w1", rke2_upgrade_artifact, NEW_DEST)
    assert cluster.install(lab, "w1", "agent", dest=NEW_DEST).ok
    failed = lab.run("w1", "systemctl restart rke2-agent", timeout=60)
    assert failed.rc == 1
    assert "Job for rke2-agent.service failed" in failed.stderr
    assert lab.run("w1", "systemctl is-active rke2-agent").stdout.strip() != "active"
    journal = lab.run("w1", "journalctl -u rke2-agent", check=True).stdout
    assert f"RKE2_STANDIN_FAIL_VERSION={UPGRADE_VERSION}" in journal
    cluster.wait_for("w1 NotReady", lambda: cluster.node_status(lab, "m1")["w1"] == "NotReady")
    assert cluster.kubelet_version(lab, "m1", "w1") == DEFAULT_VERSION

    # removing the line fixes the host
    lab.run("w1", "sed -i /RKE2_STANDIN_FAIL_VERSION/d /etc/default/rke2-agent", check=True)
    assert lab.run("w1", "systemctl restart rke2-agent", timeout=60).ok
    assert cluster.kubelet_version(lab, "m1", "w1") == UPGRADE_VERSION
    assert cluster.node_status(lab, "m1") == {"m1": "Ready", "w1": "Ready"}


def test_etcd_api_and_node_finalizers(lab_factory: LabFactory, rke2_artifact: Path) -> None:
    lab = lab_factory(["m1", "m2", "m3"])
    cluster.start_cluster(lab, rke2_artifact, ["m1", "m2", "m3"], [])
    ips = {h.name: h.ip for h in lab.hosts}

    # member list through the JSON gateway, from any server, on 127.0.0.1 and the node IP
    status, body = cluster.etcd_call(lab, "m2", "/v3/cluster/member/list", {})
    assert status == 200
    members = {m["name"].rsplit("-", 1)[0]: m for m in body["members"]}
    assert set(members) == {"m1", "m2", "m3"}
    for name, m in members.items():
        assert re.fullmatch(rf"{name}-[0-9a-f]{{8}}", m["name"])
        assert re.fullmatch(r"[1-9][0-9]*", m["ID"]) and int(m["ID"]) < 2**64
        assert m["peerURLs"] == [f"https://{ips[name]}:2380"]
        assert m["clientURLs"] == [f"https://{ips[name]}:2379"]
    _, other = cluster.etcd_call(lab, "m1", "/v3/cluster/member/list", {}, address=ips["m3"])
    assert other["header"]["cluster_id"] == body["header"]["cluster_id"]
    assert sorted(m["ID"] for m in other["members"]) == sorted(m["ID"] for m in body["members"])
    name_file = lab.run("m2", "cat /var/lib/rancher/rke2/server/db/etcd/name", check=True)
    assert name_file.stdout == members["m2"]["name"]
    assert cluster.etcd_call(lab, "m1", "/health") == (200, {"health": "true", "reason": ""})

    # client certificates: none, or one of another CA, are refused
    url = "https://127.0.0.1:2379/health"
    tls = "/var/lib/rancher/rke2/server/tls"
    assert not lab.run("m1", f"curl -sS --cacert {tls}/etcd/server-ca.crt {url}").ok
    wrong = f"--cert {tls}/client-admin.crt --key {tls}/client-admin.key"
    assert not lab.run("m1", f"curl -sS --cacert {tls}/etcd/server-ca.crt {wrong} {url}").ok

    # an etcd server's Node carries RKE2's finalizer and its member's annotations
    meta = cluster.node_json(lab, "m1", "m3")["metadata"]
    assert meta["finalizers"] == ["wrangler.cattle.io/managed-etcd-controller"]
    assert meta["annotations"]["etcd.rke2.cattle.io/node-name"] == members["m3"]["name"]

    # without quorum: no health, no member removal, no Node deletion
    lab.link_down("m2")
    lab.link_down("m3")
    assert cluster.etcd_call(lab, "m1", "/health") == (
        503,
        {"health": "false", "reason": "RAFT NO LEADER"},
    )
    m3_id = members["m3"]["ID"]
    assert cluster.etcd_call(lab, "m1", "/v3/cluster/member/remove", {"ID": m3_id}) == (
        503,
        {
            "error": "etcdserver: request timed out",
            "code": 14,
            "message": "etcdserver: request timed out",
        },
    )
    res = cluster.kubectl(lab, "m1", "delete node m3 --wait=false")
    assert res.rc == 1 and "quorum" in res.stderr
    assert cluster.etcd_member_nodes(lab, "m1") == [
        "m1",
        "m2",
        "m3",
    ]  # served locally, without quorum

    # forget the dead m3 (2 of 3 up): mark its Node, its member goes, then the Node
    lab.link_up("m2")
    res = cluster.kubectl(lab, "m1", "delete node m3 --wait=false")
    assert res.ok and res.stdout == 'node "m3" deleted\n'
    cluster.wait_for("m3's Node gone", lambda: "m3" not in cluster.node_status(lab, "m1"))
    assert (
        cluster.etcd_member_nodes(lab, "m1") == ["m1", "m2"] == cluster.etcd_member_nodes(lab, "m2")
    )
    missing = cluster.etcd_call(lab, "m2", "/v3/cluster/member/remove", {"ID": m3_id})
    assert missing == (
        404,
        {
            "error": "etcdserver: member not found",
            "code": 5,
            "message": "etcdserver: member not found",
        },
    )

    # removing a live member through the API: the Node stays until deleted, then goes at once
    status, body = cluster.etcd_call(
        lab, "m1", "/v3/cluster/member/remove", {"ID": members["m2"]["ID"]}
    )
    assert status == 200 and [m["name"] for m in body["members"]] == [members["m1"]["name"]]
    assert set(cluster.node_status(lab, "m1")) == {"m1", "m2"}
    res = cluster.kubectl(lab, "m1", "delete node m2 --timeout=60s")
    assert res.ok and res.stdout == 'node "m2" deleted\n'
    assert set(cluster.node_status(lab, "m1")) == {"m1"}
    assert cluster.etcd_members(lab, "m1") == {"m1": ips["m1"]}

    # the last member cannot be removed (etcd): its Node stays, deleting, for ever
    status, body = cluster.etcd_call(
        lab, "m1", "/v3/cluster/member/remove", {"ID": members["m1"]["ID"]}
    )
    not_enough = "etcdserver: re-configuration failed due to not enough started members"
    assert (status, body) == (400, {"error": not_enough, "code": 9, "message": not_enough})
    res = cluster.kubectl(lab, "m1", "delete node m1 --timeout=3s")
    assert res.rc == 1 and res.stdout == 'node "m1" deleted\n'
    assert res.stderr == "error: timed out waiting for the condition on nodes/m1\n"
    meta = cluster.node_json(lab, "m1", "m1")["metadata"]
    assert "deletionTimestamp" in meta and meta["finalizers"] == [
        "wrangler.cattle.io/managed-etcd-controller"
    ]
    assert cluster.etcd_member_nodes(lab, "m1") == ["m1"]
