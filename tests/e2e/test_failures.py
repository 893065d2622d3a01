"""Failures on lab hosts end jobs cleanly: the node FAILED with the reason, the lock released."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

import pytest

from rke2_manager.config import Settings
from rke2_manager.db import Database
from rke2_manager.models import Cluster
from rke2_manager.vault import SecretBox
from tests.e2e.support import Api, recap
from tests.lab import cluster as standin
from tests.lab.hosts import Lab
from tests.lab.standin import build_artifact

pytestmark = pytest.mark.lab


def test_a_host_that_is_down_fails_its_node_only(
    api: Api, make_lab: Callable[[list[str]], Lab]
) -> None:
    lab = make_lab(["m1", "w1", "w2"])
    cid = api.create_cluster("down", lab, [("m1", "server"), ("w1", "agent"), ("w2", "agent")])
    lab.link_down("w2")  # a dead machine: its packets go nowhere

    job = api.wait(api.install(cid))
    assert job["status"] == "failed"
    assert job["reason"].startswith("w2: unreachable: "), job["reason"]
    nodes = api.nodes(cid)
    status, reason = nodes["w2"]
    assert status == "FAILED" and str(reason).startswith("unreachable: "), nodes
    assert nodes["m1"] == nodes["w1"] == ("ACTIVE", None)
    assert api.lock(cid) == ("idle", None)
    assert standin.node_status(lab, "m1") == {"m1": "Ready", "w1": "Ready"}

    # the machine comes back: the same install completes the cluster, the others untouched
    lab.link_up("w2")
    job = api.succeed(api.install(cid))
    counts = recap(api.log(job["id"]))
    assert counts["m1"]["changed"] == counts["w1"]["changed"] == 0, counts
    assert counts["w2"]["changed"] > 0, counts
    assert api.nodes(cid) == {h: ("ACTIVE", None) for h in ("m1", "w1", "w2")}
    assert standin.node_status(lab, "m1") == {"m1": "Ready", "w1": "Ready", "w2": "Ready"}


def test_a_wrong_token_fails_the_join_within_its_bound(
    api: Api,
    make_lab: Callable[[list[str]], Lab],
    db: Database,
    settings: Settings,
) -> None:
    lab = make_lab(["m1", "w1"])
    cid = api.create_cluster("badtoken", lab, [("m1", "server")])
    api.succeed(api.install(cid))

    # The service's copy of the token no longer matches the cluster's (say, a restored backup).
    box = SecretBox.from_settings(settings)
    with db.transaction() as s:
        cluster = s.get(Cluster, cid)
        assert cluster is not None
        good, cluster.token_enc = cluster.token_enc, box.encrypt("not-the-cluster-token")
    bound = 8
    settings.ansible_extra_vars["rke2_start_timeout"] = bound

    started = time.monotonic()
    body = api.add(cid, lab, [("w1", "agent")])
    job = api.wait(body["job_id"], timeout=120)
    took = time.monotonic() - started
    assert job["status"] == "failed"
    status, reason = api.nodes(cid)["w1"]
    assert status == "FAILED"
    assert reason is not None
    assert reason.startswith(
        f"task 'Give up on rke2-agent' failed: w1: rke2-agent did not become ready within "
        f"{bound}s (state: activating); last error: "
    ), reason
    assert "Failed to validate connection to cluster" in reason, reason
    assert job["reason"] == f"w1: {reason}"
    assert api.lock(cid) == ("idle", None)
    assert api.nodes(cid)["m1"] == ("ACTIVE", None)
    assert "w1" not in standin.node_status(lab, "m1")
    assert took < bound + 45, took  # the bound, plus the rest of the play on a busy machine
    assert "not-the-cluster-token" not in api.log(job["id"])

    # With the right token back, installing again rewrites w1's config and restarts the unit
    # its timed-out start left activating: w1 joins.
    with db.transaction() as s:
        cluster = s.get(Cluster, cid)
        assert cluster is not None
        cluster.token_enc = good
    settings.ansible_extra_vars["rke2_start_timeout"] = 60
    api.succeed(api.install(cid))
    assert api.nodes(cid) == {"m1": ("ACTIVE", None), "w1": ("ACTIVE", None)}
    assert standin.node_status(lab, "m1") == {"m1": "Ready", "w1": "Ready"}


def test_a_corrupt_artifact_fails_the_install_with_the_checksum_error(
    api: Api, make_lab: Callable[[list[str]], Lab], settings: Settings
) -> None:
    lab = make_lab(["m1"])
    # under the artifact root, which the session's other tests share: a name of its own
    corrupt = settings.artifact_root_dir / f"corrupt-{uuid.uuid4().hex[:8]}"
    api.artifact = build_artifact(corrupt, corrupt=True)
    cid = api.create_cluster("corrupt", lab, [("m1", "server")])
    job = api.wait(api.install(cid))
    assert job["status"] == "failed"
    status, reason = api.nodes(cid)["m1"]
    assert status == "FAILED"
    assert str(reason).startswith(
        "task 'Give up on installing RKE2' failed: m1: install.sh failed: "
        "[ERROR] download sha256 does not match"
    ), reason
    assert api.lock(cid) == ("idle", None) and api.cluster(cid)["stage"] == "failed"
    assert not lab.run("m1", "test -e /usr/local/bin/rke2").ok
