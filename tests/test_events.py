"""Ansible events become host facts with clear reasons; stale run directories are swept."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from rke2_manager.execution.ansible_service import RUN_DIR_PREFIX, sweep_stale_run_dirs
from rke2_manager.execution.events import HostEvent, interpret, redact


def event(
    kind: str, task: str, res: dict[str, object] | None = None, **data: object
) -> dict[str, object]:
    return {"event": kind, "event_data": {"host": "w1", "task": task, "res": res or {}, **data}}


def test_failed_command_reason_is_its_stderr() -> None:
    fact = interpret(
        event(
            "runner_on_failed",
            "start rke2",
            {
                "rc": 1,
                "msg": "non-zero return code",
                "stderr": "warming up\nJob for rke2-agent failed",
            },
        )
    )
    assert fact == HostEvent("w1", "failed", "task 'start rke2' failed: Job for rke2-agent failed")


def test_fail_task_reason_is_its_msg_and_ignored_errors_are_not_failures() -> None:
    fact = interpret(event("runner_on_failed", "Give up", {"msg": "w1: not ready within 8s"}))
    assert fact is not None and fact.reason == "task 'Give up' failed: w1: not ready within 8s"
    assert interpret(event("runner_on_failed", "probe", {"rc": 1}, ignore_errors=True)) is None


def test_markers_unreachable_and_noise() -> None:
    assert interpret(event("runner_on_ok", "[rke2m] node ready")) == HostEvent("w1", "ready")
    assert interpret(event("runner_on_ok", "[rke2m] node removed")) == HostEvent("w1", "removed")
    assert interpret(event("runner_on_ok", "anything")) == HostEvent("w1", "touched")
    unreachable = interpret(event("runner_on_unreachable", "Gathering", {"msg": "ssh: timed out"}))
    assert unreachable == HostEvent("w1", "unreachable", "unreachable: ssh: timed out")
    assert interpret({"event": "playbook_on_start", "event_data": {}}) is None


def test_redact() -> None:
    assert redact("token=abc123 and abc123", ["abc123", ""]) == "token=******** and ********"


def test_sweep_removes_only_dead_processes_run_dirs() -> None:
    dead = Path(tempfile.mkdtemp(prefix=f"{RUN_DIR_PREFIX}4000001-"))
    alive = Path(tempfile.mkdtemp(prefix=f"{RUN_DIR_PREFIX}4000002-"))
    mine = Path(tempfile.mkdtemp(prefix=f"{RUN_DIR_PREFIX}{os.getpid()}-"))
    try:
        removed = sweep_stale_run_dirs(lambda pid: pid == 4000002)
        assert str(dead) in removed and not dead.exists()
        assert alive.exists() and mine.exists()
    finally:
        for path in (alive, mine):
            path.rmdir()
