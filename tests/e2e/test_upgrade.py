"""Rolling upgrades through the service on lab hosts, proven by what the hosts recorded.

The hosts' own records: each unit's runtime state (``active_since``: when its rke2 last became
ready) and its running rke2's process start time (``/proc``), the snapshot file's mtime, the
installed binary's version, and the Node's kubelet version.
"""

from __future__ import annotations

import itertools
import shlex
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update

from rke2_manager.db import Database
from rke2_manager.models import Node
from tests.e2e.support import Api, ready_since, recap
from tests.lab import cluster as standin
from tests.lab.hosts import Lab

pytestmark = pytest.mark.lab

V131 = "v1.31.4+rke2r1"
V132 = "v1.32.1+rke2r1"
SNAPSHOTS = "/var/lib/rancher/rke2/server/db/snapshots"
UNIT_PID = "/run/systemd/standin/rke2-{role}.service.json"


def upgrade(api: Api, cluster_id: int, artifact: Path, **extra: Any) -> dict[str, Any]:
    r = api.client.post(
        f"/api/clusters/{cluster_id}/upgrade",
        json={"version": V132, "artifact_dir": str(artifact), **extra},
    )
    assert r.status_code == 202, r.text
    return dict(r.json())


def started_at(lab: Lab, host: str, role: str) -> float:
    """When the unit's running rke2 process started (epoch seconds, from /proc on the host)."""
    script = (
        f"pid=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[\"main_pid\"])' "
        f"{shlex.quote(UNIT_PID.format(role=role))}) && "
        'echo "$(date +%s.%N) $(cut -d" " -f1 /proc/uptime) $(getconf CLK_TCK) '
        "$(sed 's/^.*) //' /proc/$pid/stat | cut -d' ' -f20)\""
    )
    now, uptime, ticks, start = lab.run(host, script, check=True).stdout.split()
    return float(now) - float(uptime) + int(start) / int(ticks)


def snapshot_files(lab: Lab, host: str) -> dict[str, float]:
    """The etcd snapshot files on a server: name -> mtime."""
    out = lab.run(host, f"cd {SNAPSHOTS} 2>/dev/null && stat -c '%n %.Y' * 2>/dev/null").stdout
    return {line.split()[0]: float(line.split()[1]) for line in out.splitlines() if line.strip()}


def versions(lab: Lab, hosts: list[str]) -> dict[str, tuple[str, str]]:
    """host -> (installed binary's version, its Node's kubelet version)."""
    return {h: (standin.rke2_version(lab, h), standin.kubelet_version(lab, "m1", h)) for h in hosts}


def test_upgrade_servers_one_at_a_time_then_agents_and_again_changes_nothing(
    api: Api, make_lab: Callable[[list[str]], Lab], rke2_upgrade_artifact: Path
) -> None:
    servers, agents = ["m1", "m2", "m3"], ["w1", "w2"]
    lab = make_lab([*servers, *agents])
    roles = {**dict.fromkeys(servers, "server"), **dict.fromkeys(agents, "agent")}
    cid = api.create_cluster("upg", lab, list(roles.items()))
    api.succeed(api.install(cid), timeout=300)
    assert versions(lab, list(roles)) == {h: (V131, V131) for h in roles}
    before = {h: ready_since(lab, h, r) for h, r in roles.items()}

    # the install recorded what each node runs, so G5 has every version at hand
    assert {n["hostname"]: n["rke2_version"] for n in api.cluster(cid)["nodes"]} == dict.fromkeys(
        roles, V131
    )
    body = upgrade(api, cid, rke2_upgrade_artifact)
    assert body["warnings"] == []
    job = api.succeed(body["job_id"], timeout=600)
    log = api.log(job["id"])

    # a snapshot was saved on the initial master before any node restarted
    snaps = snapshot_files(lab, "m1")
    [name] = [n for n in snaps if n.startswith(f"pre-upgrade-{job['id']}-m1-")]
    assert job["snapshot"] == name
    starts = {h: started_at(lab, h, r) for h, r in roles.items()}
    ready = {h: ready_since(lab, h, r) for h, r in roles.items()}
    assert all(ready[h] > before[h] for h in roles), (before, ready)  # every node restarted
    assert snaps[name] < min(starts.values())

    # servers strictly one at a time: each was up again on the new release before the next
    # one's restart began; the agents only after every server
    order = sorted(servers, key=starts.__getitem__)
    assert order == ["m1", "m2", "m3"]  # the initial master first, then inventory order
    for first, then in itertools.pairwise(order):
        assert ready[first] < starts[then], (first, then, ready, starts)
    assert max(ready[s] for s in servers) < min(starts[a] for a in agents)
    # agent_concurrency 1: one agent at a time as well
    a1, a2 = sorted(agents, key=starts.__getitem__)
    assert ready[a1] < starts[a2]

    # every node runs and reports the new release, uncordoned; the service recorded it
    assert versions(lab, list(roles)) == {h: (V132, V132) for h in roles}
    assert standin.node_status(lab, "m1") == dict.fromkeys(roles, "Ready")
    assert set(standin.etcd_members(lab, "m1")) == set(servers)
    nodes = api.cluster(cid)["nodes"]
    assert {n["hostname"]: (n["status"], n["rke2_version"]) for n in nodes} == {
        h: ("ACTIVE", V132) for h in roles
    }
    cluster = api.cluster(cid)
    assert cluster["rke2"]["version"] == V132
    assert cluster["rke2"]["artifact_dir"] == str(rke2_upgrade_artifact)
    for host in servers:  # the gates ran and said so
        assert f"{host}" in log
    assert "Gate: every etcd member is started and healthy" in log
    assert api.lock(cid) == ("idle", None)

    # a second call: nothing to do, nothing restarted, no new snapshot, no change reported
    body = upgrade(api, cid, rke2_upgrade_artifact)
    assert body["warnings"] == [
        "Every node to upgrade already runs v1.32.1+rke2r1: the job checks that on the nodes "
        "and changes nothing."
    ]
    again = api.succeed(body["job_id"], timeout=300)
    assert again["snapshot"] is None
    assert snapshot_files(lab, "m1") == snaps
    assert {h: ready_since(lab, h, r) for h, r in roles.items()} == ready
    counts = recap(api.log(again["id"]))
    assert {h: counts[h]["changed"] for h in roles} == dict.fromkeys(roles, 0), counts
    assert {h: counts[h]["failed"] for h in roles} == dict.fromkeys(roles, 0)


FAIL_KNOB = "/etc/default/rke2-server"


def test_a_server_failing_its_gate_stops_the_rollout_and_a_rerun_completes_it(
    api: Api, make_lab: Callable[[list[str]], Lab], rke2_upgrade_artifact: Path
) -> None:
    servers = ["m1", "m2", "m3"]
    lab = make_lab([*servers, "w1"])
    roles = {**dict.fromkeys(servers, "server"), "w1": "agent"}
    cid = api.create_cluster("upgfail", lab, list(roles.items()))
    api.succeed(api.install(cid), timeout=300)
    # the new release does not start on m2
    lab.run("m2", f"echo RKE2_STANDIN_FAIL_VERSION={V132} >> {FAIL_KNOB}", check=True)
    before = {h: ready_since(lab, h, r) for h, r in roles.items()}

    job = api.wait(upgrade(api, cid, rke2_upgrade_artifact)["job_id"], timeout=600)
    assert job["status"] == "failed"
    gate = f"m2: task 'Gate: RKE2 starts on {V132}' failed: "
    assert job["reason"].startswith(gate), job["reason"]
    assert "rke2-server failed to start after the restart" in job["reason"]
    assert f"RKE2_STANDIN_FAIL_VERSION={V132}: refusing to start" in job["reason"]
    assert job["snapshot"] is not None  # taken before anything changed

    # m1 was upgraded; the rollout stopped at m2; m3 and the agent were not touched at all
    assert standin.rke2_version(lab, "m1") == V132
    assert standin.kubelet_version(lab, "m1", "m1") == V132
    assert standin.rke2_version(lab, "m2") == V132  # installed, but it does not start
    for host in ("m3", "w1"):
        assert standin.rke2_version(lab, host) == V131
        assert standin.kubelet_version(lab, "m1", host) == V131
        assert ready_since(lab, host, roles[host]) == before[host]
    status = standin.node_status(lab, "m1")
    assert status["m3"] == "Ready" and status["w1"] == "Ready"  # not cordoned
    nodes = {n["hostname"]: n for n in api.cluster(cid)["nodes"]}
    assert nodes["m1"]["status"] == "ACTIVE" and nodes["m1"]["rke2_version"] == V132
    assert nodes["m2"]["status"] == "FAILED"
    assert nodes["m2"]["status_reason"] == job["reason"].removeprefix("m2: ")
    assert (nodes["m3"]["status"], nodes["m3"]["rke2_version"]) == ("ACTIVE", V131)
    assert api.cluster(cid)["rke2"]["version"] is None

    # G5 refuses other versions while m2 is FAILED; the same upgrade again retries it
    r = api.client.post(f"/api/clusters/{cid}/upgrade", json={"version": "v1.32.2+rke2r1"})
    assert r.status_code == 400
    assert r.json()["detail"] == (
        "Node 'm2' is not active (status: FAILED). Cannot upgrade unless it is named in skip."
    )
    lab.run("m2", f"sed -i '/^RKE2_STANDIN_FAIL_VERSION=/d' {FAIL_KNOB}", check=True)
    body = upgrade(api, cid, rke2_upgrade_artifact)
    assert body["warnings"] == [
        f"Node 'm2' is FAILED where the last upgrade to {V132} stopped: it is upgraded again."
    ]
    api.succeed(body["job_id"], timeout=600)
    assert versions(lab, list(roles)) == {h: (V132, V132) for h in roles}
    assert standin.node_status(lab, "m1") == dict.fromkeys(roles, "Ready")
    assert {n["hostname"]: (n["status"], n["rke2_version"]) for n in api.cluster(cid)["nodes"]} == {
        h: ("ACTIVE", V132) for h in roles
    }
    assert api.cluster(cid)["rke2"]["version"] == V132


def test_g5_refuses_through_the_api_on_a_lab_cluster(
    api: Api, make_lab: Callable[[list[str]], Lab], rke2_upgrade_artifact: Path
) -> None:
    """After an upgrade the recorded versions drive G5: a downgrade and a minor skip are 400."""
    lab = make_lab(["m1"])
    cid = api.create_cluster("upg5", lab, [("m1", "server")])
    api.succeed(api.install(cid), timeout=300)
    api.succeed(upgrade(api, cid, rke2_upgrade_artifact)["job_id"], timeout=300)
    for version, message in (
        (
            V131,
            "Cannot downgrade RKE2 from v1.32.1+rke2r1 to v1.31.4+rke2r1 (node 'm1'). "
            "Roll back by restoring a snapshot taken before the upgrade.",
        ),
        (
            "v1.34.0+rke2r1",
            "Cannot upgrade RKE2 from v1.32.1+rke2r1 to v1.34.0+rke2r1 (node 'm1'): at most "
            "one minor version at a time. Upgrade to a v1.33 release first.",
        ),
    ):
        r = api.client.post(f"/api/clusters/{cid}/upgrade", json={"version": version})
        assert r.status_code == 400
        assert r.json()["type"] == "urn:rke2-manager:guardrail"
        assert r.json()["detail"] == message
    assert standin.rke2_version(lab, "m1") == V132


def test_g5_on_the_nodes_when_their_versions_are_not_recorded(
    api: Api, db: Database, make_lab: Callable[[list[str]], Lab], rke2_upgrade_artifact: Path
) -> None:
    """Versions not recorded (a cluster installed before they were): the API can only warn, the
    job reads what the nodes run and refuses before any snapshot or change, with G5's message."""
    lab = make_lab(["m1"])
    cid = api.create_cluster("upg5n", lab, [("m1", "server")])
    api.succeed(api.install(cid), timeout=300)
    with db.transaction() as session:
        session.execute(update(Node).values(rke2_version=None))
    before = ready_since(lab, "m1", "server")
    body = upgrade(api, cid, rke2_upgrade_artifact, version="v1.33.0+rke2r1")
    assert "is not recorded" in body["warnings"][0]
    job = api.wait(body["job_id"], timeout=300)
    assert job["status"] == "failed"
    assert job["reason"] == (
        "m1: task 'Check the version skew (G5) against what the node runs' failed: Cannot "
        "upgrade RKE2 from v1.31.4+rke2r1 to v1.33.0+rke2r1 (node 'm1'): at most one minor "
        "version at a time. Upgrade to a v1.32 release first."
    )
    assert job["snapshot"] is None and snapshot_files(lab, "m1") == {}
    assert ready_since(lab, "m1", "server") == before
    assert versions(lab, ["m1"]) == {"m1": (V131, V131)}
    # the node was not changed, so it stays ACTIVE; what it runs is recorded now
    [node] = api.cluster(cid)["nodes"]
    assert (node["status"], node["status_reason"], node["rke2_version"]) == ("ACTIVE", None, V131)
    # and now the API refuses it itself
    r = api.client.post(f"/api/clusters/{cid}/upgrade", json={"version": "v1.33.0+rke2r1"})
    assert r.status_code == 400 and r.json()["detail"].startswith(
        "Cannot upgrade RKE2 from v1.31.4+rke2r1 to v1.33.0+rke2r1 (node 'm1')"
    )
