"""etcd snapshots through the service on lab hosts: save, list, delete; the snapshot before a
server removal; the etcd member check after a removal that fails loudly when etcd cannot be
asked."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest

from tests.e2e.support import Api
from tests.lab import cluster as standin
from tests.lab.hosts import Lab

pytestmark = pytest.mark.lab

SNAPSHOTS = "/var/lib/rancher/rke2/server/db/snapshots"
TLS = "/var/lib/rancher/rke2/server/tls/etcd"


def files(lab: Lab, host: str) -> list[str]:
    """The snapshot files on host."""
    out = lab.run(host, f"ls {SNAPSHOTS} 2>/dev/null").stdout
    return sorted(out.split())


def listed(api: Api, cid: int) -> dict[str, Any]:
    r = api.client.get(f"/api/clusters/{cid}/snapshots")
    assert r.status_code == 200, r.text
    return dict(r.json())


def save(api: Api, cid: int, name: str) -> dict[str, Any]:
    r = api.client.post(f"/api/clusters/{cid}/snapshots", json={"name": name})
    assert r.status_code == 202, r.text
    return api.succeed(r.json()["job_id"])


def test_save_list_delete_and_the_snapshot_before_a_server_removal(
    api: Api, make_lab: Callable[[list[str]], Lab]
) -> None:
    lab = make_lab(["m1", "m2", "m3"])
    cid = api.create_cluster("snaps", lab, [("m1", "server"), ("m2", "server"), ("m3", "server")])
    api.succeed(api.install(cid))
    assert listed(api, cid)["snapshots"] == []

    job = save(api, cid, "before-change")
    name = job["snapshot"]
    assert re.fullmatch(r"before-change-m1-\d+", name), name
    # on the initial master's disk, as RKE2 names it; nowhere else
    assert files(lab, "m1") == [name]
    assert files(lab, "m2") == files(lab, "m3") == []
    body = listed(api, cid)
    [row] = body["snapshots"]
    assert (row["name"], row["node"]) == (name, "m1")
    assert row["location"] == f"file://{SNAPSHOTS}/{name}"
    size = int(lab.run("m1", f"stat -c %s {SNAPSHOTS}/{name}", check=True).stdout)
    assert row["size"] == size > 0
    assert row["taken_at"] is not None
    # every server was listed by this job
    assert {s["node"]: s["job_id"] for s in body["servers"]} == {
        h: job["id"] for h in ("m1", "m2", "m3")
    }
    assert api.lock(cid) == ("idle", None)

    r = api.client.delete(f"/api/clusters/{cid}/snapshots/{name}")
    assert r.status_code == 202, r.text
    deleted = api.succeed(r.json()["job_id"])
    assert deleted["operation"] == "snapshot_delete"
    assert files(lab, "m1") == []
    assert listed(api, cid)["snapshots"] == []
    assert api.client.delete(f"/api/clusters/{cid}/snapshots/{name}").status_code == 404

    # removing a server saves a snapshot first, on the server that stays and runs kubectl
    body = api.remove(cid, ["m3"], confirm=True)
    job = api.succeed(body["job_id"])
    assert re.fullmatch(rf"pre-remove-{job['id']}-m1-\d+", job["snapshot"]), job["snapshot"]
    assert files(lab, "m1") == [job["snapshot"]]
    assert [s["name"] for s in listed(api, cid)["snapshots"]] == [job["snapshot"]]
    # and the etcd member list was asked after the removal
    assert f"no etcd member has https://{lab.host('m3').ip}:2380" in api.log(job["id"])
    assert set(standin.etcd_members(lab, "m1")) == {"m1", "m2"}


def test_a_removal_whose_etcd_check_cannot_ask_etcd_fails_and_says_why(
    api: Api, make_lab: Callable[[list[str]], Lab]
) -> None:
    lab = make_lab(["m1", "m2", "m3"])
    cid = api.create_cluster("nocheck", lab, [("m1", "server"), ("m2", "server"), ("m3", "server")])
    api.succeed(api.install(cid))
    # the server that runs kubectl for the removal has lost RKE2's etcd client key
    lab.run("m1", f"mv {TLS}/server-client.key /root/server-client.key", check=True)

    body = api.remove(cid, ["m3"], confirm=True)
    job = api.wait(body["job_id"])
    assert job["status"] == "failed"
    why = f"cannot check the etcd members: {TLS}/server-client.key is missing on this server"
    assert job["reason"] == (
        "m3: task 'Give up removing the node from Kubernetes' failed: m3: could not remove the "
        f"node from Kubernetes (kubectl on m1): {why}"
    )
    status, reason = api.nodes(cid)["m3"]
    assert status == "FAILED" and why in (reason or "")
    # nothing was uninstalled after a check that could not be made
    assert lab.run("m3", "test -x /usr/local/bin/rke2").ok

    # with the key back, the removal runs again to its end
    lab.run("m1", f"mv /root/server-client.key {TLS}/server-client.key", check=True)
    body = api.remove(cid, ["m3"], confirm=True)
    api.succeed(body["job_id"])
    assert set(api.nodes(cid)) == {"m1", "m2"}


def test_a_snapshot_that_cannot_be_saved_stops_a_server_removal_before_anything_changes(
    api: Api, make_lab: Callable[[list[str]], Lab]
) -> None:
    lab = make_lab(["m1", "m2", "m3"])
    cid = api.create_cluster("nosnap", lab, [("m1", "server"), ("m2", "server"), ("m3", "server")])
    api.succeed(api.install(cid))
    # RKE2 is down on the server that would save the snapshot (and run kubectl)
    lab.run("m1", "systemctl stop rke2-server", check=True)

    r = api.client.post(f"/api/clusters/{cid}/snapshots", json={"name": "down"})
    job = api.wait(r.json()["job_id"])
    assert job["status"] == "failed"
    assert job["reason"].startswith(
        "m1: task 'Give up on the snapshot' failed: m1: etcd snapshot 'down' not saved: "
        "rke2 etcd-snapshot ls failed (exit 1)"
    ), job["reason"]
    assert job["snapshot"] is None

    body = api.remove(cid, ["m3"], confirm=True)
    job = api.wait(body["job_id"])
    assert job["status"] == "failed"
    assert job["reason"].startswith(
        f"m1: task 'Give up on the snapshot' failed: m1: etcd snapshot 'pre-remove-{job['id']}' "
        "not saved: "
    ), job["reason"]
    # m3 was not touched: still a member, still installed, its status as before
    assert api.nodes(cid)["m3"] == ("ACTIVE", f"not attempted: job {job['id']} failed")
    assert set(standin.etcd_members(lab, "m2")) == {"m1", "m2", "m3"}
    assert lab.run("m3", "systemctl is-active rke2-server").stdout.strip() == "active"
