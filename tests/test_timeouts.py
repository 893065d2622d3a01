"""Nothing hangs: a task past RKE2M_TASK_TIMEOUT and a run past RKE2M_JOB_TIMEOUT fail the job,
and the reasons name the host and the step (real ansible-runner runs, local connections)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from rke2_manager.config import Settings
from rke2_manager.db import Database
from rke2_manager.execution.events import HostEvent
from rke2_manager.jobs.runner.nodestatus import Progress
from rke2_manager.jobs.runner.run import _outcome_reason
from rke2_manager.models import Operation
from tests.factories import PLAY_HEADER
from tests.test_worker import lock_state, nodes, real_cluster, wait_job

SERVERS = [("m1", "127.0.10.1", "server", "PENDING"), ("m2", "127.0.10.2", "server", "PENDING")]

#: m2 stalls in "Start the server"; m1 skips it. ``no_log`` as in the config.yaml tasks.
STALLING = """
    - name: Stage RKE2
      ansible.builtin.command: "true"
    - name: Start the server
      ansible.builtin.command: sleep 60
      when: inventory_hostname == 'm2'
      no_log: {no_log}
    - name: "[rke2m] node ready"
      ansible.builtin.debug: {{msg: done}}
"""


def stalling(playbook_dir: Path, no_log: bool = False) -> None:
    text = PLAY_HEADER + STALLING.format(no_log=str(no_log).lower())
    (playbook_dir / "install.yml").write_text(text)


def log_text(client: TestClient, job_id: int) -> str:
    lines = client.get(f"/api/jobs/{job_id}/log", params={"limit": 10000}).json()["lines"]
    return "\n".join(line["text"] for line in lines)


@pytest.mark.parametrize("no_log", [False, True])
def test_a_task_past_the_task_timeout_fails_its_node_and_the_job_naming_both(
    worker_client: TestClient, db: Database, settings: Settings, playbook_dir: Path, no_log: bool
) -> None:
    stalling(playbook_dir, no_log)
    settings.task_timeout = (
        8  # "Stage RKE2" (`true`) finishes well within it, even on a busy machine
    )
    cid = real_cluster(db, worker_client, SERVERS)
    started = time.monotonic()
    job = wait_job(worker_client, worker_client.post(f"/api/jobs/install/{cid}").json()["job_id"])
    assert time.monotonic() - started < 45  # not the task's 60 s
    why = "task 'Start the server' did not finish within 8s (RKE2M_TASK_TIMEOUT)"
    assert job["status"] == "failed"
    assert job["reason"] == f"m2: {why}"
    assert nodes(db, cid) == {"m1": ("ACTIVE", None), "m2": ("FAILED", why)}
    assert lock_state(db, cid) == ("idle", None, None)
    assert "fatal: [m2]: FAILED!" in log_text(worker_client, job["id"])


def test_a_run_past_the_job_timeout_names_the_hosts_still_running_and_their_step(
    worker_client: TestClient, db: Database, settings: Settings, playbook_dir: Path
) -> None:
    stalling(playbook_dir)
    # ansible-playbook starts in ~2 s and runs "Stage RKE2" in ~1 s; 20 s leaves room for a
    # busy machine, and m2's 60 s step is still cut off
    settings.job_timeout = 20
    cid = real_cluster(db, worker_client, SERVERS)
    started = time.monotonic()
    job = wait_job(worker_client, worker_client.post(f"/api/jobs/install/{cid}").json()["job_id"])
    assert time.monotonic() - started < 45
    reason = (
        "playbook did not finish within 20s (RKE2M_JOB_TIMEOUT); "
        "still running: m2: task 'Start the server'"
    )
    assert job["status"] == "failed"
    assert job["reason"] == reason
    assert nodes(db, cid) == {
        "m1": ("FAILED", f"install did not complete: job {job['id']} failed"),
        "m2": (
            "FAILED",
            f"install did not complete: job {job['id']} failed during task 'Start the server'",
        ),
    }
    assert lock_state(db, cid) == ("idle", None, None)
    assert log_text(worker_client, job["id"]).splitlines()[-1] == f"rke2-manager: {reason}"


def progress(*facts: HostEvent) -> Progress:
    tracked = Progress(Operation.INSTALL, {"m1": "PENDING", "w1": "PENDING"})
    for fact in facts:
        tracked.follow(fact)
    return tracked


def test_progress_keeps_the_task_each_host_has_started_and_not_ended() -> None:
    tracked = progress(
        HostEvent("m1", "started", task="Stage RKE2"),
        HostEvent("w1", "started", task="Stage RKE2"),
        HostEvent("m1", "touched"),
        HostEvent("m1", "started", task="Start the server"),
        HostEvent("w1", "failed", "task 'Stage RKE2' failed: x"),
        HostEvent("m9", "started", task="drain"),  # not a target: still worth naming
    )
    assert tracked.current == {"m1": "Start the server", "m9": "drain"}
    tracked.follow(HostEvent("m1", "ready"))
    assert tracked.current == {"m9": "drain"}


def test_a_timed_out_run_names_every_busy_host_then_earlier_failures() -> None:
    tracked = progress(
        HostEvent("m1", "started", task="Start the server"),
        HostEvent("w1", "started", task="Join"),
    )
    assert _outcome_reason("timeout", 254, tracked, 7200) == (
        "playbook did not finish within 7200s (RKE2M_JOB_TIMEOUT); "
        "still running: m1: task 'Start the server', w1: task 'Join'"
    )
    tracked.failed["w2"] = "task 'Stage RKE2' failed: disk full"
    tracked.current.clear()
    assert _outcome_reason("timeout", 254, tracked, 60) == (
        "playbook did not finish within 60s (RKE2M_JOB_TIMEOUT); "
        "failed before: w2: task 'Stage RKE2' failed: disk full"
    )
    assert _outcome_reason("failed", 2, tracked, 60) == "w2: task 'Stage RKE2' failed: disk full"


def test_the_bounds_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RKE2M_TASK_TIMEOUT", raising=False)
    monkeypatch.delenv("RKE2M_JOB_TIMEOUT", raising=False)
    defaults = Settings(_env_file=None)  # type: ignore[call-arg]
    assert (defaults.task_timeout, defaults.job_timeout) == (1800, 7200)
    monkeypatch.setenv("RKE2M_TASK_TIMEOUT", "300")
    monkeypatch.setenv("RKE2M_JOB_TIMEOUT", "3600")
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert (settings.task_timeout, settings.job_timeout) == (300, 3600)
