"""The API client commands against a real server (uvicorn on loopback, its embedded worker
running local playbooks through ansible-runner): apply, logs -f, exit codes, JSON, errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from rke2_manager.api.app import create_app
from rke2_manager.cli import app as cli
from rke2_manager.config import Settings
from rke2_manager.db import Database
from rke2_manager.models import ApiRole, Cluster, Job, Node
from rke2_manager.tokens.service import create_token
from tests.conftest import TEST_NETWORKS
from tests.factories import TEST_SECRET_KEY, FakeProber, write_playbooks
from tests.live import free_port, live_server

CLUSTER = """\
name: demo
nodes:
  - {hostname: m1, ip: 127.0.10.1, role: server}
  - {hostname: w1, ip: 127.0.10.2, role: agent}
"""


@pytest.fixture
def url(settings: Settings, db: Database, prober: FakeProber) -> Iterator[str]:
    app = create_app(settings, prober=prober, run_migrations=False, start_worker=True)
    with live_server(app) as base:
        yield base


@pytest.fixture(autouse=True)
def no_client_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No client settings from the machine running the tests."""
    for name in ("RKE2M_URL", "RKE2M_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("RKE2M_CLIENT_CONFIG", str(tmp_path / "no-such-config.yaml"))


def run(*args: str, env: dict[str, str] | None = None) -> Any:
    result = CliRunner().invoke(cli, list(args), env=env)
    assert "Traceback" not in result.output, result.output
    return result


def nodes(db: Database) -> dict[str, str]:
    with db.read_session() as s:
        return {n.hostname: n.status for n in s.scalars(select(Node))}


def jobs(db: Database) -> list[tuple[str, str]]:
    with db.read_session() as s:
        return [(j.operation, j.status) for j in s.scalars(select(Job).order_by(Job.id))]


def test_apply_creates_installs_then_adds_a_node_from_the_edited_file(
    url: str, db: Database, tmp_path: Path
) -> None:
    file = tmp_path / "cluster.yaml"
    file.write_text(CLUSTER)
    first = run("apply", "-f", str(file), "--yes", "--url", url)
    assert first.exit_code == 0, first.output
    lines = first.output.splitlines()
    assert lines[:3] == [
        "Plan for cluster demo:",
        "1. create cluster demo with 2 node(s)",
        "2. install m1 (server, 127.0.10.1), w1 (agent, 127.0.10.2) (the initial master m1 first)",
    ]
    # live per-node progress, from the job's events
    for line in (
        "job 1 (install): running",
        "[m1] node INSTALLING",
        "[w1] work: changed",
        "[m1] [rke2m] node ready: ok",
        "[m1] node ACTIVE",
        "[w1] node ACTIVE",
        "job 1 succeeded",
        f"cluster demo matches {file}",
    ):
        assert line in lines, (line, first.output)
    assert lines.index("[m1] node INSTALLING") < lines.index("[m1] node ACTIVE")
    assert nodes(db) == {"m1": "ACTIVE", "w1": "ACTIVE"}

    # nothing to do: no job
    again = run("apply", "-f", str(file), "--yes", "--url", url)
    assert again.exit_code == 0, again.output
    assert again.output.splitlines()[0] == "cluster demo: nothing to do"
    assert jobs(db) == [("install", "succeeded")]

    file.write_text(CLUSTER + "  - {hostname: w2, ip: 127.0.10.3, role: agent}\n")
    added = run("apply", "-f", str(file), "--yes", "--url", url)
    assert added.exit_code == 0, added.output
    lines = added.output.splitlines()
    assert lines[:6] == [
        "Plan for cluster demo:",
        "1. add w2 (agent, 127.0.10.3)",
        "   dry run: would be accepted (running)",
        "   1. scale_add_workers (running): w2 (agent, 127.0.10.3)",
        "   G1 pass",
        "   G4 pass",
    ]
    assert "[w2] node ACTIVE" in lines and "[m1] node INSTALLING" not in lines
    assert nodes(db) == {"m1": "ACTIVE", "w1": "ACTIVE", "w2": "ACTIVE"}
    assert jobs(db) == [("install", "succeeded"), ("scale_add_workers", "succeeded")]


def test_apply_removes_only_with_allow_remove(url: str, db: Database, tmp_path: Path) -> None:
    file = tmp_path / "cluster.yaml"
    file.write_text(CLUSTER + "  - {hostname: w2, ip: 127.0.10.3, role: agent}\n")
    assert run("apply", "-f", str(file), "-y", "--url", url).exit_code == 0
    file.write_text(CLUSTER)
    kept = run("apply", "-f", str(file), "-y", "--url", url)
    assert kept.exit_code == 1, kept.output
    assert (
        "note: not removing w2 (agent, 127.0.10.3): they are not in the file "
        "(pass --allow-remove to remove them)" in kept.output
    )
    assert kept.output.splitlines()[-1] == (
        f"rke2-manager: cluster demo does not match {file}: node w2 is not in the file"
    )
    assert nodes(db) == {"m1": "ACTIVE", "w1": "ACTIVE", "w2": "ACTIVE"}
    removed = run("apply", "-f", str(file), "-y", "--allow-remove", "--url", url)
    assert removed.exit_code == 0, removed.output
    assert "1. REMOVE w2 (agent, 127.0.10.3)" in removed.output
    assert nodes(db) == {"m1": "ACTIVE", "w1": "ACTIVE"}


def test_apply_dry_run_and_refusals_change_nothing(url: str, db: Database, tmp_path: Path) -> None:
    file = tmp_path / "cluster.yaml"
    file.write_text(CLUSTER)
    planned = run("apply", "-f", str(file), "--dry-run", "--url", url)
    assert planned.exit_code == 0, planned.output
    assert "2. install m1 (server, 127.0.10.1)" in planned.output
    as_json = run("apply", "-f", str(file), "--dry-run", "-o", "json", "--url", url)
    assert json.loads(as_json.output)["steps"][0]["title"] == "create cluster demo with 2 node(s)"
    asked = run("apply", "-f", str(file), "--url", url)  # no terminal to ask on
    assert asked.exit_code == 2
    assert asked.output.splitlines()[-1] == (
        "rke2-manager: Apply this plan? — not asked on a non-interactive input: pass --yes"
    )
    with db.read_session() as s:
        assert s.scalars(select(Cluster)).all() == []

    bad = tmp_path / "bad.yaml"
    for text, message in (
        ("name: demo\nnodes: []\n", "nodes: List should have at least 1 item after validation"),
        (CLUSTER + "  - {hostname: w9, ip: 127.0.10.2, role: agent}\n", "127.0.10.2 appears"),
        (CLUSTER + "colour: blue\n", "colour: Extra inputs are not permitted"),
        ("name: [", "is not valid YAML"),
        (CLUSTER.replace("m1, ip", "M_1, ip"), "nodes.0.hostname"),
    ):
        bad.write_text(text)
        result = run("apply", "-f", str(bad), "-y", "--url", url)
        assert result.exit_code == 2, (text, result.output)
        assert result.output.startswith(f"rke2-manager: {bad}") and message in result.output
    with db.read_session() as s:
        assert s.scalars(select(Cluster)).all() == []


def test_apply_fails_with_the_jobs_reason(
    url: str, db: Database, tmp_path: Path, playbook_dir: Path
) -> None:
    write_playbooks(playbook_dir, mode="fail_one")
    file = tmp_path / "cluster.yaml"
    file.write_text(CLUSTER)
    failed = run("apply", "-f", str(file), "-y", "--url", url)
    assert failed.exit_code == 1
    assert "[w1] break one host: failed (task 'break one host' failed: disk full on w1)" in (
        failed.output
    )
    assert failed.output.splitlines()[-1] == (
        "rke2-manager: step 2 (install m1 (server, 127.0.10.1), w1 (agent, 127.0.10.2) (the "
        "initial master m1 first)): job 1 failed: w1: task 'break one host' failed: disk full "
        "on w1"
    )
    assert nodes(db) == {"m1": "ACTIVE", "w1": "FAILED"}


def test_logs_follow_a_real_job_to_its_end(url: str, db: Database, tmp_path: Path) -> None:
    file = tmp_path / "cluster.yaml"
    file.write_text(CLUSTER)
    assert run("cluster", "create", "-f", str(file), "--url", url).exit_code == 0
    started = run("install", "demo", "--detach", "-o", "json", "--url", url)
    assert started.exit_code == 0, started.output
    job_id = json.loads(started.output[started.output.index("{") :])["job_id"]
    followed = run("logs", "-f", str(job_id), "--url", url)
    assert followed.exit_code == 0, followed.output
    lines = followed.output.splitlines()
    assert "TASK [work] ********************************************************************" in (
        lines
    )
    assert lines[-1] == f"job {job_id} succeeded"
    assert any(line.startswith("PLAY RECAP") for line in lines)
    stored = run("logs", str(job_id), "--url", url).output.splitlines()
    assert stored == lines[:-1]  # the same lines, without the end
    events = run("logs", "-f", str(job_id), "-o", "json", "--url", url)
    names = [json.loads(chunk + "}")["event"] for chunk in _chunks(events.output)]
    assert names[0] == "job" and names[-1] == "end" and "task_end" in names


def _chunks(text: str) -> list[str]:
    """Split concatenated pretty-printed JSON objects (each ends with a line ``}``)."""
    return [c for c in text.split("\n}\n") if c.strip()]


def test_exit_codes_and_problem_details(
    url: str, db: Database, tmp_path: Path, playbook_dir: Path
) -> None:
    missing = run("cluster", "show", "nope", "--url", url)
    assert (missing.exit_code, missing.output) == (5, "rke2-manager: Cluster 'nope' not found\n")
    job = run("job", "show", "99", "--url", url)
    assert (job.exit_code, job.output) == (5, "rke2-manager: Job 99 not found\n")
    usage = run("scale", "add", "demo", "--node", "w3", "--url", url)
    assert usage.exit_code == 2
    unreachable = run("cluster", "list", "--url", f"http://127.0.0.1:{free_port()}")
    assert unreachable.exit_code == 6
    assert unreachable.output.startswith("rke2-manager: cannot reach the API at http://127.0.0")

    file = tmp_path / "cluster.yaml"
    file.write_text(CLUSTER)
    assert run("cluster", "create", "-f", str(file), "--url", url).exit_code == 0
    dup = run("cluster", "create", "-f", str(file), "--url", url)
    assert dup.exit_code == 3
    assert dup.output == "rke2-manager: Cluster named 'demo' already exists\n"
    guard = run("scale", "add", "demo", "-n", "w1=127.0.10.9:agent", "--url", url)
    assert guard.exit_code == 3, guard.output
    assert guard.output == "rke2-manager: Node with hostname 'w1' already exists in cluster\n"
    plan = run("scale", "add", "demo", "-n", "w1=127.0.10.9:agent", "--dry-run", "--url", url)
    assert plan.exit_code == 3
    assert "  refused (400): Node with hostname 'w1' already exists in cluster" in plan.output

    write_playbooks(playbook_dir, mode="slow")
    busy_job = run("install", "demo", "--detach", "--url", url)
    assert busy_job.exit_code == 0, busy_job.output
    busy = run("install", "demo", "--url", url)
    assert busy.exit_code == 3
    assert busy.output == (
        "rke2-manager: Cluster is busy with operation 'install' (job 1). Please wait.\n"
    )
    lock = run("lock", "demo", "-o", "json", "--url", url)
    assert json.loads(lock.output)["current_job_id"] == 1
    canceled = run("job", "cancel", "1", "--url", url)
    assert canceled.exit_code == 0 and canceled.output == "job 1 canceled: canceled by local\n"
    followed = run("logs", "-f", "1", "--url", url)
    assert followed.exit_code == 1
    assert followed.output.splitlines()[-1] == "job 1 canceled: canceled by local"


def test_output_json_is_the_apis_json(url: str, db: Database, tmp_path: Path) -> None:
    import httpx

    file = tmp_path / "cluster.yaml"
    file.write_text(CLUSTER)
    applied = run("apply", "-f", str(file), "-y", "-o", "json", "--url", url)
    assert applied.exit_code == 0, applied.output
    body = json.loads(applied.stdout)
    assert body["matches"] is True and body["differences"] == []
    assert [(j["operation"], j["status"]) for j in body["jobs"]] == [("install", "succeeded")]
    assert body["jobs"][0]["nodes"] == {"m1": "ACTIVE", "w1": "ACTIVE"}
    for args, path in (
        (["cluster", "list"], "/api/clusters"),
        (["node", "list", "demo"], "/api/clusters/1/nodes"),
        (["job", "list"], "/api/jobs?limit=50"),
        (["job", "show", "1"], "/api/jobs/1"),
    ):
        result = run(*args, "-o", "json", "--url", url)
        assert result.exit_code == 0, result.output
        assert json.loads(result.output) == httpx.get(url + path).json()


def test_tokens_flags_environment_and_config_file(
    url: str, db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with db.transaction() as s:
        _, viewer = create_token(s, "watcher", ApiRole.VIEWER, "test")
    # a token exists: protected mode is over, loopback needs one too
    anonymous = run("cluster", "list", "--url", url)
    assert anonymous.exit_code == 4
    assert anonymous.output == (
        "rke2-manager: Authentication required: send `Authorization: Bearer <token>`\n"
    )
    assert run("cluster", "list", "--url", url, "--token", viewer).exit_code == 0
    assert run("cluster", "list", env={"RKE2M_URL": url, "RKE2M_TOKEN": viewer}).exit_code == 0
    low = run("api-token", "list", "--url", url, "--token", viewer)
    assert low.exit_code == 4
    assert (
        low.output
        == "rke2-manager: This needs the 'admin' role; the token 'watcher' has 'viewer'\n"
    )

    config = tmp_path / "client.yaml"
    config.write_text(f"url: {url}\ntoken: {viewer}\n")
    config.chmod(0o600)
    monkeypatch.setenv("RKE2M_CLIENT_CONFIG", str(config))
    assert run("cluster", "list", "-o", "json").output == "[]\n"
    wrong = run("cluster", "list", "--token", "rke2m_wrong")  # a flag wins over the file
    assert (wrong.exit_code, wrong.output) == (
        4,
        "rke2-manager: The API token is unknown or revoked\n",
    )
    config.chmod(0o644)
    exposed = run("cluster", "list")
    assert exposed.exit_code == 2
    assert exposed.output == (
        f"rke2-manager: {config} holds a token but others may read it: chmod 600 {config}\n"
    )


def test_the_installed_command_prints_detail_never_a_traceback(
    tmp_path: Path, playbook_dir: Path
) -> None:
    """The real console script, in a subprocess; the server-side `token` command still works
    next to the client's `api-token` (on a migrated database, as `serve` leaves it)."""
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'served.db'}",
        data_dir=tmp_path / "data",
        secret_key=TEST_SECRET_KEY,
        allowed_networks=list(TEST_NETWORKS),
        playbook_dir=playbook_dir,
        _env_file=None,  # type: ignore[call-arg]
    )
    with live_server(create_app(settings, prober=FakeProber(), start_worker=False)) as url:
        _installed_command(url, settings, tmp_path)


def _installed_command(url: str, settings: Settings, tmp_path: Path) -> None:
    exe = Path(sys.executable).parent / "rke2-manager"
    env = {**os.environ, "RKE2M_CLIENT_CONFIG": str(tmp_path / "none.yaml"), "RKE2M_URL": url}
    env.pop("RKE2M_TOKEN", None)
    shown = subprocess.run(
        [exe, "job", "show", "7"], capture_output=True, text=True, env=env, timeout=60
    )
    assert (shown.returncode, shown.stdout, shown.stderr) == (
        5,
        "",
        "rke2-manager: Job 7 not found\n",
    )
    server_env = {
        **env,
        "RKE2M_DATABASE_URL": settings.database_url,
        "RKE2M_DATA_DIR": str(settings.data_dir),
        "RKE2M_SECRET_KEY": TEST_SECRET_KEY,
    }
    made = subprocess.run(
        [exe, "token", "create", "--name", "ops", "--role", "admin"],
        capture_output=True,
        text=True,
        env=server_env,
        timeout=60,
    )
    assert made.returncode == 0, made.stderr
    token = made.stdout.split()[-1]
    listed = subprocess.run(
        [exe, "api-token", "list", "-o", "json", "--token", token],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert listed.returncode == 0, listed.stderr
    assert [t["name"] for t in json.loads(listed.stdout)] == ["ops"]
