"""SSH trust on lab hosts: no connection shared across clusters or keys; host keys pinned."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sqlalchemy import select

from rke2_manager.clusters.hostkeys import accept_host_key
from rke2_manager.db import Database
from rke2_manager.models import Cluster, Node
from tests.e2e.support import (
    Api,
    host_fingerprint,
    host_public_key,
    replace_host_key,
)
from tests.lab.hosts import Lab

pytestmark = pytest.mark.lab


def node_keys(db: Database, cluster_id: int) -> dict[str, tuple[str | None, str | None]]:
    """hostname -> (pinned host key, offered fingerprint)."""
    with db.read_session() as s:
        nodes = s.scalars(select(Node).where(Node.cluster_id == cluster_id))
        return {n.hostname: (n.host_key, n.host_key_offered) for n in nodes}


def test_a_cluster_never_rides_on_another_clusters_connection(
    api: Api, make_lab: Callable[[list[str]], Lab], db: Database
) -> None:
    lab = make_lab(["m1"])
    a = api.create_cluster("alpha", lab, [("m1", "server")])
    # beta: the same host, but its own generated key, which the host does not authorise
    r = api.client.post(
        "/api/clusters",
        json={
            "name": "beta",
            "nodes": [{"hostname": "m1", "ip": lab.host("m1").ip, "role": "server"}],
            "rke2": {"artifact_dir": str(api.artifact)},
        },
    )
    assert r.status_code == 201, r.text
    b, b_public = int(r.json()["id"]), r.json()["ssh"]["public_key"]
    with db.transaction() as s:  # beta opts out of host key checking (a lab's choice)
        cluster = s.get(Cluster, b)
        assert cluster is not None
        cluster.ssh_host_key_checking = False

    api.succeed(api.install(a))
    # at once, while alpha's connection to m1 is still open (ControlPersist)
    job = api.wait(api.install(b))
    assert job["status"] == "failed"
    assert job["reason"].startswith("m1: unreachable"), job["reason"]
    assert "Permission denied" in job["reason"], job["reason"]

    # with its key authorised, beta reaches m1 on its own connection
    lab.run("m1", f"echo {b_public!r} >> /root/.ssh/authorized_keys", check=True)
    api.succeed(api.install(b))
    assert api.nodes(b) == {"m1": ("ACTIVE", None)}
    # alpha pinned m1's key on first contact; beta, which opted out, pinned nothing
    assert node_keys(db, a) == {"m1": (host_public_key(lab, "m1"), None)}
    assert node_keys(db, b) == {"m1": (None, None)}


def test_a_changed_host_key_stops_jobs_until_accepted(
    api: Api, make_lab: Callable[[list[str]], Lab], db: Database
) -> None:
    lab = make_lab(["m1"])
    cid = api.create_cluster("pinned", lab, [("m1", "server")])
    api.succeed(api.install(cid))
    old_key = host_public_key(lab, "m1")
    assert node_keys(db, cid) == {"m1": (old_key, None)}

    replace_host_key(lab, "m1")
    offered = host_fingerprint(lab, "m1")
    job = api.wait(api.install(cid))
    assert job["status"] == "failed"
    assert job["reason"].startswith("host key of node m1 changed"), job["reason"]
    assert offered in job["reason"] and "accept-host-key" in job["reason"]
    status, reason = api.nodes(cid)["m1"]
    assert status == "FAILED" and reason is not None and reason.startswith("host key of node m1")
    assert node_keys(db, cid) == {"m1": (old_key, offered)}

    with db.transaction() as s:
        accept_host_key(s, cid, "m1", "test")
    assert node_keys(db, cid) == {"m1": (None, None)}
    api.succeed(api.install(cid))
    assert node_keys(db, cid) == {"m1": (host_public_key(lab, "m1"), None)}
    assert host_public_key(lab, "m1") != old_key
