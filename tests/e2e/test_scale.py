"""Scaling through the service on lab hosts: G3 order on the hosts, removals, new masters."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.e2e.support import Api, at, cluster_state, host_config, ready_since, uninstalled
from tests.lab import cluster as standin
from tests.lab.hosts import Lab

pytestmark = pytest.mark.lab


def test_add_server_and_agent_in_one_request_joins_the_server_first(
    api: Api, make_lab: Callable[[list[str]], Lab]
) -> None:
    lab = make_lab(["m1", "m2", "w1"])
    # a fixed registration address: the name "m1", which the lab hosts resolve
    cid = api.create_cluster("g3", lab, [("m1", "server")], registration_address="m1")
    api.succeed(api.install(cid))

    body = api.add(cid, lab, [("w1", "agent"), ("m2", "server")])
    assert body["sequenced"] is True and body["workers_pending"] == 1
    servers_job = api.succeed(body["job_id"])
    agents_job = api.succeed(body["workers_job_id"])
    assert servers_job["operation"] == "scale_add_masters"
    assert agents_job["operation"] == "scale_add_workers"
    assert at(servers_job["finished_at"]) <= at(agents_job["started_at"])

    # on the hosts: m2 was a ready etcd member before w1 even registered
    joined = {n: v["created"] for n, v in cluster_state(lab, "m1")["nodes"].items()}
    assert ready_since(lab, "m2", "server") <= joined["w1"]
    assert set(standin.etcd_members(lab, "m1")) == {"m1", "m2"}
    assert standin.node_status(lab, "m2") == {"m1": "Ready", "m2": "Ready", "w1": "Ready"}
    for host in ("m2", "w1"):
        assert host_config(lab, host)[0]["server"] == "https://m1:9345"
    for host in ("m1", "m2"):  # the servers' API certificates name the fixed address
        assert host_config(lab, host)[0]["tls-san"] == ["m1"]
    assert "tls-san" not in host_config(lab, "w1")[0]
    kubeconfig = api.client.get(f"/api/clusters/{cid}/kubeconfig").text
    assert "server: https://m1:6443" in kubeconfig
    assert api.nodes(cid) == {h: ("ACTIVE", None) for h in ("m1", "m2", "w1")}
    assert api.lock(cid) == ("idle", None)


def test_remove_a_server_then_the_initial_master_then_join_through_the_new_one(
    api: Api, make_lab: Callable[[list[str]], Lab]
) -> None:
    servers = ["m1", "m2", "m3", "m4"]
    lab = make_lab([*servers, "w1"])
    cid = api.create_cluster("shrink", lab, [(h, "server") for h in servers])
    api.succeed(api.install(cid))

    # one server, with confirmation: drained, deleted, its etcd member gone, uninstalled
    body = api.remove(cid, ["m2"], confirm=True)
    job = api.succeed(body["job_id"])
    log = api.log(job["id"])
    assert "node/m2 cordoned" in log and "node/m2 drained" in log and "deleted node m2" in log
    assert uninstalled(lab, "m2") == []
    assert set(api.nodes(cid)) == {"m1", "m3", "m4"}
    for host in ("m1", "m3", "m4"):  # the cluster still answers, everywhere
        assert standin.node_status(lab, host) == {"m1": "Ready", "m3": "Ready", "m4": "Ready"}
        assert standin.kubectl(lab, host, "get --raw /readyz").stdout.strip() == "ok"
        assert set(standin.etcd_members(lab, host)) == {"m1", "m3", "m4"}

    # the initial master itself: another server takes its role
    body = api.remove(cid, ["m1"], confirm=True)
    assert any("even" in w for w in body["warnings"]), body["warnings"]
    job = api.succeed(body["job_id"])
    assert "deleted node m1" in api.log(job["id"])
    assert uninstalled(lab, "m1") == []
    nodes = api.cluster(cid)["nodes"]
    assert sorted(n["hostname"] for n in nodes) == ["m3", "m4"]
    [master] = [n for n in nodes if n["is_initial_master"]]
    new = master["hostname"]
    assert master["status"] == "ACTIVE"
    for host in ("m3", "m4"):
        assert standin.node_status(lab, host) == {"m3": "Ready", "m4": "Ready"}
        assert set(standin.etcd_members(lab, host)) == {"m3", "m4"}

    # a later join registers through the new initial master, and works
    api.succeed(api.add(cid, lab, [("w1", "agent")])["job_id"])
    config, _ = host_config(lab, "w1")
    assert config["server"] == f"https://{lab.host(new).ip}:9345"
    assert standin.node_status(lab, "m4") == {"m3": "Ready", "m4": "Ready", "w1": "Ready"}

    # and an agent leaves the same way
    job = api.succeed(api.remove(cid, ["w1"])["job_id"])
    assert "node/w1 drained" in api.log(job["id"])
    assert uninstalled(lab, "w1") == []
    assert standin.node_status(lab, new) == {"m3": "Ready", "m4": "Ready"}
    assert set(api.nodes(cid)) == {"m3", "m4"}
    assert api.lock(cid) == ("idle", None)
