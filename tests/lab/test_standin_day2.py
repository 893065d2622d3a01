"""Day-2 behaviour of the stand-in RKE2: versions and upgrades (more in later sections)."""

from __future__ import annotations

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
