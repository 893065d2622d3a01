"""``rke2-manager apply`` on lab hosts over SSH: a cluster created and installed from its file,
then a node added by editing the file, with the live per-node progress the command printed."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from rke2_manager.api.app import create_app
from rke2_manager.cli import app as cli
from rke2_manager.config import Settings
from rke2_manager.db import Database
from tests.factories import FakeProber
from tests.lab import cluster as standin
from tests.lab.hosts import Lab
from tests.live import live_server

pytestmark = pytest.mark.lab


@pytest.fixture
def url(settings: Settings, db: Database, prober: FakeProber) -> Iterator[str]:
    app = create_app(settings, prober=prober, run_migrations=False, start_worker=True)
    with live_server(app) as base:
        yield base


def write_file(
    path: Path, lab: Lab, key: Path, artifact: Path, nodes: list[tuple[str, str]]
) -> None:
    path.write_text(
        yaml.safe_dump(
            {
                "name": "lab",
                "ssh": {"user": "root", "private_key_file": key.name},
                "rke2": {"artifact_dir": str(artifact), "config": {"cni": "canal"}},
                "nodes": [{"hostname": h, "ip": lab.host(h).ip, "role": r} for h, r in nodes],
            },
            sort_keys=False,
        )
    )


def apply(url: str, file: Path) -> tuple[int, list[str]]:
    result = CliRunner().invoke(
        cli, ["apply", "-f", str(file), "--yes", "--url", url], env={"RKE2M_TOKEN": ""}
    )
    assert "Traceback" not in result.output, result.output
    return result.exit_code, result.output.splitlines()


def test_apply_installs_a_cluster_on_lab_hosts_then_adds_a_node_from_the_edited_file(
    url: str,
    make_lab: Callable[[list[str]], Lab],
    rke2_artifact: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RKE2M_CLIENT_CONFIG", str(tmp_path / "none.yaml"))
    lab = make_lab(["m1", "w1", "w2"])
    key = tmp_path / "id_lab"
    key.write_text(lab.private_key)
    key.chmod(0o600)
    file = tmp_path / "cluster.yaml"
    write_file(file, lab, key, rke2_artifact, [("m1", "server"), ("w1", "agent")])

    code, lines = apply(url, file)
    assert code == 0, "\n".join(lines)
    assert lines[:3] == [
        "Plan for cluster lab:",
        "1. create cluster lab with 2 node(s)",
        f"2. install m1 (server, {lab.host('m1').ip}), w1 (agent, {lab.host('w1').ip}) "
        "(the initial master m1 first)",
    ]
    # per-node progress as it happened: the real playbook's tasks on each host
    for host in ("m1", "w1"):
        mine = [line for line in lines if line.startswith(f"[{host}] ")]
        assert mine[0] == f"[{host}] node INSTALLING", mine
        assert mine[-1] == f"[{host}] node ACTIVE", mine
        assert f"[{host}] [rke2m] node ready: ok" in mine
        assert any(line.endswith(": changed") for line in mine)
    assert lines[-1] == f"cluster lab matches {file}"
    assert standin.node_status(lab, "m1") == {"m1": "Ready", "w1": "Ready"}

    write_file(file, lab, key, rke2_artifact, [("m1", "server"), ("w1", "agent"), ("w2", "agent")])
    code, lines = apply(url, file)
    assert code == 0, "\n".join(lines)
    assert lines[:4] == [
        "Plan for cluster lab:",
        f"1. add w2 (agent, {lab.host('w2').ip})",
        "   dry run: would be accepted (running)",
        f"   1. scale_add_workers (running): w2 (agent, {lab.host('w2').ip})",
    ]
    assert "[w2] node INSTALLING" in lines and "[w2] node ACTIVE" in lines
    assert not any(line.startswith(("[m1] node", "[w1] node")) for line in lines)
    assert lines[-1] == f"cluster lab matches {file}"
    assert standin.node_status(lab, "m1") == {"m1": "Ready", "w1": "Ready", "w2": "Ready"}

    # applied again: nothing to do, and it says so
    code, lines = apply(url, file)
    assert (code, lines) == (0, ["cluster lab: nothing to do", f"cluster lab matches {file}"])


def test_preflight_from_the_command_line_on_lab_hosts(
    url: str,
    make_lab: Callable[[list[str]], Lab],
    rke2_artifact: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RKE2M_CLIENT_CONFIG", str(tmp_path / "none.yaml"))
    lab = make_lab(["m1"])
    key = tmp_path / "id_lab"
    key.write_text(lab.private_key)
    key.chmod(0o600)
    file = tmp_path / "cluster.yaml"
    write_file(file, lab, key, rke2_artifact, [("m1", "server")])
    runner = CliRunner()
    assert runner.invoke(cli, ["cluster", "create", "-f", str(file), "--url", url]).exit_code == 0
    checked = runner.invoke(cli, ["preflight", "lab", "--url", url])
    assert checked.exit_code == 0, checked.output
    lines = checked.output.splitlines()
    assert "job 1 succeeded" in lines
    results = runner.invoke(cli, ["job", "preflight", "1", "-o", "json", "--url", url])
    found = json.loads(results.output)
    assert (found["operation"], found["status"], found["failed"]) == ("preflight", "succeeded", {})
    checks = {c["check"]: c["result"] for c in found["hosts"]["m1"]}
    assert checks["ports"] == "pass" and "fail" not in checks.values()
    # the table: one row per check, its result next to it
    assert any(line.startswith("│ m1   │ ports ") and "│ pass " in line for line in lines)
