"""Forgetting dead nodes through the service on lab hosts: through a live server, without
contacting the dead host; quorum kept; a new server joins afterwards."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.e2e.support import Api
from tests.lab import cluster as standin
from tests.lab.hosts import Lab

pytestmark = pytest.mark.lab

FENCE_LOG = "/var/lib/rke2-manager/fence.log"


def forget(api: Api, cid: int, host: str, confirm: bool = True) -> tuple[int, dict[str, object]]:
    r = api.client.delete(
        f"/api/clusters/{cid}/nodes/{host}",
        params={"confirm_master_removal": str(confirm).lower()},
    )
    return r.status_code, dict(r.json())


def touched_by(lab: Lab, host: str, job_id: int) -> list[str]:
    """The fence journal lines of ``job_id`` on host, read without SSH (the host is off
    the network)."""
    out = lab.nsexec(host, ["cat", FENCE_LOG]).stdout
    return [line for line in out.splitlines() if f" job={job_id} " in line]


def members(api: Api, lab: Lab, host: str) -> set[str]:
    """The etcd members by node name, as etcd's API on host lists them."""
    status, body = standin.etcd_call(lab, host, "/v3/cluster/member/list", {})
    assert status == 200, body
    return {m["name"].rsplit("-", 1)[0] for m in body["members"]}


def test_forget_a_server_whose_host_died_then_a_new_server_joins(
    api: Api, make_lab: Callable[[list[str]], Lab]
) -> None:
    lab = make_lab(["m1", "m2", "m3", "m4"])
    servers = [("m1", "server"), ("m2", "server"), ("m3", "server")]
    cid = api.create_cluster("dead", lab, servers)
    api.succeed(api.install(cid))
    lab.link_down("m3")  # the machine is gone: nothing reaches it

    # a snapshot still saves; the dead server's list is not read, and says so (never listed)
    r = api.client.post(f"/api/clusters/{cid}/snapshots", json={"name": "one-down"})
    saved = api.succeed(r.json()["job_id"])
    listed = {
        s["node"]: s["job_id"]
        for s in api.client.get(f"/api/clusters/{cid}/snapshots").json()["servers"]
    }
    assert listed == {"m1": saved["id"], "m2": saved["id"], "m3": None}
    assert "fatal: [m3]: UNREACHABLE!" in api.log(saved["id"])

    # the manager last saw m3 working: it is not forgotten on a guess
    status, body = forget(api, cid, "m3")
    assert status == 409 and body["detail"].startswith("Node 'm3' is ACTIVE: only a node"), body
    # a removal cannot reach it, and marks it FAILED; then it can be forgotten
    failed = api.wait(api.remove(cid, ["m3"], confirm=True)["job_id"])
    assert failed["status"] == "failed"
    assert api.nodes(cid)["m3"][0] == "FAILED"

    status, body = forget(api, cid, "m3", confirm=False)
    assert (status, body["detail"]) == (
        400,
        "Removing control-plane nodes requires explicit confirmation.",
    )
    status, body = forget(api, cid, "m3")
    assert status == 202, body
    job = api.succeed(int(str(body["job_id"])))
    assert job["operation"] == "forget_node"
    log = api.log(job["id"])
    assert "removed etcd member" in log or "already gone" in log, log[-3000:]
    assert "node m3 is gone from Kubernetes" in log
    # gone from Kubernetes and from etcd, as the live servers see it
    for host in ("m1", "m2"):
        assert standin.node_status(lab, host) == {"m1": "Ready", "m2": "Ready"}
        assert members(api, lab, host) == {"m1", "m2"}
    assert set(api.nodes(cid)) == {"m1", "m2"}
    # nothing of the job ran on the dead host
    assert touched_by(lab, "m3", job["id"]) == []
    assert touched_by(lab, "m1", job["id"]) != []

    # quorum: with two members left, neither can be removed
    body = api.client.post(
        f"/api/clusters/{cid}/scale/remove",
        params={"confirm_master_removal": "true"},
        json={"nodes": [{"hostname": "m2"}]},
    ).json()
    assert body["detail"] == "Removing 1 server(s) would break etcd quorum.", body

    # and a new server joins the cluster the dead one left
    api.succeed(api.add(cid, lab, [("m4", "server")])["job_id"])
    for host in ("m1", "m2", "m4"):
        assert standin.node_status(lab, host) == {"m1": "Ready", "m2": "Ready", "m4": "Ready"}
    assert members(api, lab, "m1") == {"m1", "m2", "m4"}
    assert api.nodes(cid) == {h: ("ACTIVE", None) for h in ("m1", "m2", "m4")}


def test_a_removal_that_failed_on_an_unreachable_server_then_forgotten(
    api: Api, make_lab: Callable[[list[str]], Lab]
) -> None:
    lab = make_lab(["m1", "m2", "m3", "w1"])
    nodes = [("m1", "server"), ("m2", "server"), ("m3", "server"), ("w1", "agent")]
    cid = api.create_cluster("unreach", lab, nodes)
    api.succeed(api.install(cid))
    lab.link_down("m3")

    body = api.remove(cid, ["m3"], confirm=True)
    job = api.wait(body["job_id"])
    assert job["status"] == "failed"
    status, reason = api.nodes(cid)["m3"]
    assert status == "FAILED" and "unreachable" in (reason or ""), reason
    assert "unreachable" in job["reason"], job["reason"]

    status_code, body = forget(api, cid, "m3")
    assert status_code == 202, body
    api.succeed(int(str(body["job_id"])))
    assert set(api.nodes(cid)) == {"m1", "m2", "w1"}
    for host in ("m1", "m2"):
        assert standin.node_status(lab, host) == {"m1": "Ready", "m2": "Ready", "w1": "Ready"}
        assert members(api, lab, host) == {"m1", "m2"}

    # an agent whose host died goes the same way, without an etcd step
    lab.link_down("w1")
    assert api.wait(api.remove(cid, ["w1"])["job_id"])["status"] == "failed"
    assert api.nodes(cid)["w1"][0] == "FAILED"
    status_code, body = forget(api, cid, "w1", confirm=False)
    assert status_code == 202, body
    job = api.succeed(int(str(body["job_id"])))
    assert "etcd member" not in api.log(job["id"])
    assert standin.node_status(lab, "m1") == {"m1": "Ready", "m2": "Ready"}
    assert set(api.nodes(cid)) == {"m1", "m2"}
