"""Install through the service on lab hosts: order, files, kubeconfig, idempotency."""

from __future__ import annotations

import base64
import http.client
import itertools
import json
import ssl
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from sqlalchemy import select

from rke2_manager.config import Settings
from rke2_manager.db import Database
from rke2_manager.models import Cluster
from rke2_manager.vault import SecretBox
from tests.e2e.support import Api, cluster_state, host_config, ready_since, recap
from tests.lab import cluster as standin
from tests.lab.hosts import Lab

pytestmark = pytest.mark.lab

SERVERS, AGENTS = ["m1", "m2", "m3"], ["w1", "w2"]


def cluster_token(db: Database, settings: Settings, cluster_id: int) -> str:
    with db.read_session() as s:
        enc = s.scalars(select(Cluster.token_enc).where(Cluster.id == cluster_id)).one()
    return str(SecretBox.from_settings(settings).decrypt(enc))


def get_nodes_with(kubeconfig: str) -> list[str]:
    """Node names from the cluster's API, reached from the manager with the kubeconfig."""
    cfg = yaml.safe_load(kubeconfig)
    server = cfg["clusters"][0]["cluster"]["server"]
    user = cfg["users"][0]["user"]
    with tempfile.TemporaryDirectory() as tmp:
        files = {}
        for key in ("client-certificate-data", "client-key-data"):
            files[key] = Path(tmp) / key
            files[key].write_bytes(base64.b64decode(user[key]))
        ctx = ssl.create_default_context(
            cadata=base64.b64decode(
                cfg["clusters"][0]["cluster"]["certificate-authority-data"]
            ).decode()
        )
        ctx.check_hostname = False  # the API certificate names the node IP; checked by the CA
        ctx.load_cert_chain(files["client-certificate-data"], files["client-key-data"])
        host, port = server.removeprefix("https://").rsplit(":", 1)
        conn = http.client.HTTPSConnection(host, int(port), context=ctx, timeout=10)
        conn.request("GET", "/api/v1/nodes")
        body = json.loads(conn.getresponse().read())
        conn.close()
    return sorted(item["metadata"]["name"] for item in body["items"])


def test_install_three_servers_and_two_agents(
    api: Api, make_lab: Callable[[list[str]], Lab], db: Database, settings: Settings
) -> None:
    lab = make_lab(SERVERS + AGENTS)
    cid = api.create_cluster(
        "prod", lab, [(h, "server") for h in SERVERS] + [(h, "agent") for h in AGENTS]
    )
    job = api.succeed(api.install(cid))
    assert job["reason"] is None

    # the service: every node ACTIVE, the lock free, the cluster ready, its kubeconfig there
    assert api.nodes(cid) == {h: ("ACTIVE", None) for h in SERVERS + AGENTS}
    assert api.lock(cid) == ("idle", None)
    assert api.cluster(cid)["stage"] == "ready"
    r = api.client.get(f"/api/clusters/{cid}/kubeconfig")
    assert r.status_code == 200, r.text
    m1 = lab.host("m1").ip
    assert f"server: https://{m1}:6443" in r.text and "127.0.0.1" not in r.text
    assert get_nodes_with(r.text) == sorted(SERVERS + AGENTS)

    # the hosts: one cluster, every server an etcd member
    assert standin.node_status(lab, "m3") == {h: "Ready" for h in SERVERS + AGENTS}
    assert set(standin.etcd_members(lab, "m2")) == set(SERVERS)

    # every config.yaml: the cluster's token, the initial master's address, 0600, root's
    token = cluster_token(db, settings, cid)
    for host in SERVERS + AGENTS:
        config, mode = host_config(lab, host)
        assert mode == "600 root", host
        assert config["token"] == token and config["node-name"] == host
        assert config["node-ip"] == lab.host(host).ip and config["cni"] == "canal"
        assert "tls-san" not in config  # no fixed registration address to add
        if host == "m1":
            assert "server" not in config
        else:
            assert config["server"] == f"https://{m1}:9345", host
    assert token not in api.log(job["id"])

    # the order: each server joined once the one before it was ready; agents after all servers
    joined = {n: v["created"] for n, v in cluster_state(lab, "m1")["nodes"].items()}
    ready = {h: ready_since(lab, h, "server") for h in SERVERS}
    ready |= {h: ready_since(lab, h, "agent") for h in AGENTS}
    for before, after in itertools.pairwise(SERVERS):
        assert ready[before] <= joined[after], (before, after, ready, joined)
    assert max(ready[h] for h in SERVERS) <= min(joined[h] for h in AGENTS)


def test_second_install_changes_nothing(api: Api, make_lab: Callable[[list[str]], Lab]) -> None:
    lab = make_lab(["m1", "m2", "w1"])
    cid = api.create_cluster("again", lab, [("m1", "server"), ("m2", "server"), ("w1", "agent")])
    first = api.succeed(api.install(cid))
    before = {h: ready_since(lab, h, r) for h, r in (("m1", "server"), ("w1", "agent"))}
    counts = recap(api.log(first["id"]))
    assert all(c["changed"] > 0 and c["failed"] == 0 for c in counts.values()), counts

    second = api.succeed(api.install(cid))
    counts = recap(api.log(second["id"]))
    assert set(counts) == {"m1", "m2", "w1"}
    assert {h: (c["changed"], c["failed"], c["unreachable"]) for h, c in counts.items()} == {
        h: (0, 0, 0) for h in counts
    }, counts
    # nothing was restarted either
    assert {h: ready_since(lab, h, r) for h, r in (("m1", "server"), ("w1", "agent"))} == before
    assert api.nodes(cid) == {h: ("ACTIVE", None) for h in ("m1", "m2", "w1")}
