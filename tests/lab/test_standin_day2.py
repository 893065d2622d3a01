"""Day-2 behaviour of the stand-in RKE2: versions and upgrades (more in later sections)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.lab import cluster
from tests.lab.fixtures import LabFactory
from tests.lab.hosts import Lab
from tests.lab.standin.artifact import DEFAULT_VERSION, UPGRADE_VERSION

pytestmark = pytest.mark.lab

NEW_DEST = "/root/rke2-artifacts-new"


def start_cluster(lab: Lab, artifact: Path, servers: list[str], agents: list[str]) -> str:
    """Install artifact everywhere, start servers (first bootstraps) then agents; the token."""
    first = lab.host(servers[0]).ip
    token = ""
    for name in servers + agents:
        role = "server" if name in servers else "agent"
        cluster.push_artifact(lab, name, artifact)
        assert cluster.install(lab, name, role).ok
        cfg: dict[str, object] = {"token": token or "s3cret"}
        if name != servers[0]:
            cfg["server"] = f"https://{first}:9345"
        cluster.write_config(lab, name, cfg)
        assert cluster.start(lab, name, role).ok, name
        token = token or cluster.token(lab, servers[0])
    return token


def test_versions_follow_the_binaries_a_node_was_started_from(
    lab_factory: LabFactory, rke2_artifact: Path, rke2_upgrade_artifact: Path
) -> None:
    lab = lab_factory(["m1", "w1"])
    start_cluster(lab, rke2_artifact, ["m1"], ["w1"])
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
    cluster.wait_for(
        "m1's kubelet version",
        lambda: cluster.kubelet_version(lab, "m1", "m1") == UPGRADE_VERSION,
    )
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


def member_names(lab: Lab, host: str) -> list[str]:
    status, body = cluster.etcd_call(lab, host, "/v3/cluster/member/list", {})
    assert status == 200, body
    return sorted(m["name"].rsplit("-", 1)[0] for m in body["members"])


def test_etcd_api_and_node_finalizers(lab_factory: LabFactory, rke2_artifact: Path) -> None:
    lab = lab_factory(["m1", "m2", "m3"])
    start_cluster(lab, rke2_artifact, ["m1", "m2", "m3"], [])
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
    assert member_names(lab, "m1") == ["m1", "m2", "m3"]  # served locally, without quorum

    # forget the dead m3 (2 of 3 up): mark its Node, its member goes, then the Node
    lab.link_up("m2")
    res = cluster.kubectl(lab, "m1", "delete node m3 --wait=false")
    assert res.ok and res.stdout == 'node "m3" deleted\n'
    cluster.wait_for("m3's Node gone", lambda: "m3" not in cluster.node_status(lab, "m1"))
    assert member_names(lab, "m1") == ["m1", "m2"] == member_names(lab, "m2")
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


SNAPSHOTS = "/var/lib/rancher/rke2/server/db/snapshots"


def test_etcd_snapshot_save_ls_delete(lab_factory: LabFactory, rke2_artifact: Path) -> None:
    lab = lab_factory(["m1", "m2"])
    start_cluster(lab, rke2_artifact, ["m1", "m2"], [])

    save = lab.run("m2", "rke2 etcd-snapshot save --name pre-upgrade", timeout=60)
    assert save.ok, save.stderr
    found = re.search(r'level=info msg="Snapshot (pre-upgrade-m2-(\d+)) saved\."', save.stderr)
    assert found, save.stderr
    name = found.group(1)
    listed = lab.run("m2", f"stat -c '%a %s' {SNAPSHOTS} {SNAPSHOTS}/{name}", check=True)
    assert listed.stdout.split()[0] == "700" and listed.stdout.split()[2] == "600"
    size = int(listed.stdout.split()[3])
    content = json.loads(lab.run("m2", f"cat {SNAPSHOTS}/{name}", check=True).stdout)
    assert set(content["state"]["nodes"]) == {"m1", "m2"}
    assert set(content["state"]["members"]) == {"m1", "m2"}
    # a snapshot lives on the server that took it
    assert lab.run("m1", f"ls {SNAPSHOTS} 2>/dev/null | wc -l").stdout.strip() == "0"

    default = lab.run("m2", "rke2 etcd-snapshot save", timeout=60)
    assert re.search(r"Snapshot on-demand-m2-\d+ saved\.", default.stderr), default.stderr
    table = lab.run("m2", "rke2 etcd-snapshot ls", check=True).stdout.splitlines()
    assert table[0].split() == ["Name", "Location", "Size", "Created"]
    row = next(line.split() for line in table if line.startswith(name))
    assert row[1:3] == [f"file://{SNAPSHOTS}/{name}", str(size)]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", row[3])
    assert table[0].index("Location") == table[1].index("file://")  # tabwriter columns
    items = json.loads(lab.run("m2", "rke2 etcd-snapshot list -o json", check=True).stdout)
    assert items["kind"] == "List" and len(items["items"]) == 2
    spec = next(i["spec"] for i in items["items"] if i["spec"]["snapshotName"] == name)
    assert spec == {
        "snapshotName": name,
        "nodeName": "m2",
        "location": f"file://{SNAPSHOTS}/{name}",
    }
    bad = lab.run("m2", "rke2 etcd-snapshot ls -o xml")
    assert bad.rc == 1 and 'msg="Error: invalid output format: xml"' in bad.stderr

    deleted = lab.run("m2", f"rke2 etcd-snapshot delete {name} nosuch-m2-1", timeout=60)
    assert deleted.ok
    assert f'msg="Snapshot {name} deleted."' in deleted.stderr
    assert 'level=warning msg="Snapshot nosuch-m2-1 not found."' in deleted.stderr
    assert not lab.run("m2", f"test -e {SNAPSHOTS}/{name}").ok
    traversal = lab.run("m2", "rke2 etcd-snapshot delete ../token")
    assert traversal.rc == 1 and "path traversal not allowed" in traversal.stderr
    assert lab.run("m2", "test -s /var/lib/rancher/rke2/server/token").ok

    # the command needs the running server
    assert lab.run("m2", "systemctl stop rke2-server").ok
    down = lab.run("m2", "rke2 etcd-snapshot save")
    assert down.rc == 1 and 'level=fatal msg="Error: see server log for details' in down.stderr


def test_configmaps_live_in_the_replicated_state(
    lab_factory: LabFactory, rke2_artifact: Path
) -> None:
    lab = lab_factory(["m1", "m2"])
    start_cluster(lab, rke2_artifact, ["m1", "m2"], [])
    create = "create configmap marker -n kube-system --from-literal=k=v --from-literal a=b=c"
    res = cluster.kubectl(lab, "m1", create)
    assert res.ok and res.stdout == "configmap/marker created\n", res.stderr
    again = cluster.kubectl(lab, "m1", create)
    assert again.rc == 1
    assert again.stderr == 'error: failed to create configmap: configmaps "marker" already exists\n'

    # on the other server too, in every shape
    got = cluster.kubectl(lab, "m2", "get configmap marker -n kube-system -o name")
    assert got.stdout == "configmap/marker\n"
    obj = json.loads(
        cluster.kubectl(lab, "m2", "get configmap marker -n kube-system -o json").stdout
    )
    assert obj["metadata"]["name"] == "marker" and obj["metadata"]["namespace"] == "kube-system"
    assert obj["data"] == {"k": "v", "a": "b=c"}
    jp = cluster.kubectl(lab, "m2", "get cm marker -n kube-system -o jsonpath={.data.k}")
    assert jp.stdout == "v"
    table = cluster.kubectl(lab, "m2", "get configmaps -n kube-system").stdout.splitlines()
    assert table[0].split() == ["NAME", "DATA", "AGE"] and table[1].split()[:2] == ["marker", "2"]
    state = json.loads(lab.run("m2", f"cat {cluster.STATE_FILE}", check=True).stdout)
    assert state["configmaps"]["kube-system/marker"]["data"] == {"k": "v", "a": "b=c"}

    # namespaces and names that do not exist
    missing = cluster.kubectl(lab, "m1", "get configmap marker -o name")
    assert missing.rc == 1
    assert missing.stderr == 'Error from server (NotFound): configmaps "marker" not found\n'
    nons = cluster.kubectl(lab, "m1", "create configmap x -n nowhere --from-literal=k=v")
    assert nons.stderr == 'error: failed to create configmap: namespaces "nowhere" not found\n'
    bad = cluster.kubectl(lab, "m1", "create configmap x --from-literal=novalue")
    assert bad.stderr == "error: invalid literal source novalue, expected key=value\n"
    empty = cluster.kubectl(lab, "m1", "get configmaps")
    assert empty.ok and empty.stderr == "No resources found in default namespace.\n"

    # a write needs quorum; delete
    lab.link_down("m2")
    res = cluster.kubectl(lab, "m1", "delete configmap marker -n kube-system")
    assert res.rc == 1 and "quorum" in res.stderr
    lab.link_up("m2")
    res = cluster.kubectl(lab, "m1", "delete configmap marker -n kube-system")
    assert res.ok and res.stdout == 'configmap "marker" deleted\n'
    gone = cluster.kubectl(lab, "m2", "get configmap marker -n kube-system")
    assert gone.rc == 1 and "NotFound" in gone.stderr


RESET_DONE = (
    "Managed etcd cluster membership has been reset, restart without --cluster-reset flag now. "
    "Backup and delete ${datadir}/server/db on each peer etcd server and rejoin the nodes"
)
DB = "/var/lib/rancher/rke2/server/db"


def test_restore_a_snapshot_with_cluster_reset(
    lab_factory: LabFactory, rke2_artifact: Path
) -> None:
    lab = lab_factory(["m1", "m2", "m3", "w1"])
    start_cluster(lab, rke2_artifact, ["m1", "m2", "m3"], ["w1"])
    _, before = cluster.etcd_call(lab, "m1", "/v3/cluster/member/list", {})
    old_names = {m["name"] for m in before["members"]}
    assert cluster.kubectl(lab, "m1", "create configmap kept --from-literal=k=v").ok
    save = lab.run("m1", "rke2 etcd-snapshot save --name pre", timeout=60)
    snap = f"{SNAPSHOTS}/" + re.search(r"Snapshot (\S+) saved", save.stderr).group(1)  # type: ignore[union-attr]
    assert cluster.kubectl(lab, "m1", "create configmap later --from-literal=k=v").ok
    assert cluster.kubectl(lab, "m1", "delete configmap kept").ok
    for m in ("m1", "m2", "m3"):
        assert lab.run(m, "systemctl stop rke2-server").ok

    # wrong paths fail loudly and change nothing
    reset = "rke2 server --cluster-reset --cluster-reset-restore-path="
    res = lab.run("m1", reset + "/root/nosuch", timeout=60)
    assert res.rc == 1
    assert (
        'level=fatal msg="starting kubernetes: preparing server: start managed database: '
        'etcd: snapshot path does not exist: /root/nosuch"' in res.stderr
    )
    assert lab.run("m1", reset + SNAPSHOTS, timeout=60).stderr.count("must be a file") == 1
    assert not lab.run("m1", f"test -e {DB}/reset-flag").ok

    # the restore: data from the snapshot, membership this server alone, reset-flag, exit 0
    res = lab.run("m1", reset + snap, timeout=60)
    assert res.ok and RESET_DONE in res.stderr, res.stderr
    files = lab.run("m1", f"stat -c %a {DB}/reset-flag; ls -d {DB}/etcd-old-*", check=True)
    assert files.stdout.splitlines()[0] == "600"
    again = lab.run("m1", "rke2 server --cluster-reset", timeout=60)
    assert again.rc == 1 and "Managed etcd cluster membership was previously reset" in again.stderr
    assert f"manually delete the file at {DB}/reset-flag" in again.stderr
    assert cluster.start(lab, "m1").ok
    assert not lab.run("m1", f"test -e {DB}/reset-flag").ok
    assert cluster.kubectl(lab, "m1", "get configmap kept -o name").stdout == "configmap/kept\n"
    assert cluster.kubectl(lab, "m1", "get configmap later").rc == 1
    _, after = cluster.etcd_call(lab, "m1", "/v3/cluster/member/list", {})
    assert [m["name"].rsplit("-", 1)[0] for m in after["members"]] == ["m1"]
    assert after["members"][0]["name"] not in old_names
    assert after["header"]["cluster_id"] != before["header"]["cluster_id"]
    assert set(cluster.node_status(lab, "m1")) == {"m1", "m2", "m3", "w1"}

    # a server started on its old data does not rejoin: its start never completes
    assert lab.run("m2", "systemctl start --no-block rke2-server").ok
    cluster.wait_for(
        "m2 to be refused",
        lambda: "request cluster ID mismatch" in lab.run("m2", "journalctl -u rke2-server").stdout,
    )
    assert lab.run("m2", "systemctl is-active rke2-server").stdout.strip() == "activating"
    assert member_names(lab, "m1") == ["m1"]
    assert lab.run("m2", "systemctl stop rke2-server").ok

    # wiped servers join as new members and see the restored data
    for m in ("m2", "m3"):
        assert lab.run(m, f"rm -rf {DB}").ok
        assert cluster.start(lab, m).ok, m
    assert member_names(lab, "m3") == ["m1", "m2", "m3"]
    _, rejoined = cluster.etcd_call(lab, "m1", "/v3/cluster/member/list", {})
    assert not {m["name"] for m in rejoined["members"]} & old_names
    assert cluster.kubectl(lab, "m3", "get configmap kept -o name").stdout == "configmap/kept\n"
    assert cluster.node_status(lab, "m2") == {
        "m1": "Ready",
        "m2": "Ready",
        "m3": "Ready",
        "w1": "Ready",
    }
    assert cluster.etcd_call(lab, "m2", "/health") == (200, {"health": "true", "reason": ""})
