"""Snapshots, ConfigMaps and cluster reset/restore of the stand-in RKE2."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.lab import cluster
from tests.lab.fixtures import LabFactory

pytestmark = pytest.mark.lab

SNAPSHOTS = "/var/lib/rancher/rke2/server/db/snapshots"


def test_etcd_snapshot_save_ls_delete(lab_factory: LabFactory, rke2_artifact: Path) -> None:
    lab = lab_factory(["m1", "m2"])
    cluster.start_cluster(lab, rke2_artifact, ["m1", "m2"], [])

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
    yaml = lab.run("m2", "rke2 etcd-snapshot ls --output yaml", check=True).stdout.splitlines()
    assert yaml[:3] == ["apiVersion: v1", "items:", "- apiVersion: k3s.cattle.io/v1"]
    assert f"    snapshotName: {name}" in yaml and f'    size: "{size}"' in yaml
    assert yaml[-2:] == ["kind: List", "metadata: {}"]
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
    cluster.start_cluster(lab, rke2_artifact, ["m1", "m2"], [])
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
    cluster.start_cluster(lab, rke2_artifact, ["m1", "m2", "m3"], ["w1"])
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
    assert cluster.etcd_member_nodes(lab, "m1") == ["m1"]
    assert lab.run("m2", "systemctl stop rke2-server").ok

    # wiped servers join as new members and see the restored data
    for m in ("m2", "m3"):
        assert lab.run(m, f"rm -rf {DB}").ok
        assert cluster.start(lab, m).ok, m
    assert cluster.etcd_member_nodes(lab, "m3") == ["m1", "m2", "m3"]
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
