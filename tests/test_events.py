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


def test_sweep_removes_only_dead_processes_run_dirs(tmp_path: Path) -> None:
    dead = Path(tempfile.mkdtemp(prefix=f"{RUN_DIR_PREFIX}4000001-", dir=tmp_path))
    (dead / "env").mkdir()
    (dead / "env" / "extravars").write_text("rke2m_token: secret\n")
    alive = Path(tempfile.mkdtemp(prefix=f"{RUN_DIR_PREFIX}4000002-", dir=tmp_path))
    mine = Path(tempfile.mkdtemp(prefix=f"{RUN_DIR_PREFIX}{os.getpid()}-", dir=tmp_path))
    removed = sweep_stale_run_dirs(tmp_path, lambda pid: pid == 4000002)
    assert removed == [str(dead)] and not dead.exists()
    assert alive.exists() and mine.exists()
    assert sweep_stale_run_dirs(tmp_path / "never-made", lambda pid: False) == []


def test_changed_host_key_names_the_node_and_the_offered_fingerprint() -> None:
    fp = "SHA256:" + "A1b2" * 10 + "xyz"
    msg = (
        "Failed to connect to the host via ssh: @@@@@@@@@@@@\n"
        "@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @\n"
        "The fingerprint for the ED25519 key sent by the remote host is\n"
        f"{fp}.\nPlease contact your system administrator.\nHost key verification failed."
    )
    fact = interpret(event("runner_on_unreachable", "Stage", {"msg": msg, "unreachable": True}))
    assert fact == HostEvent(
        "w1", "host_key_changed", f"host key of node w1 changed (it offered {fp})", fp
    )
    # strict checking with no key of the offered type known: no fingerprint to show
    fact = interpret(event("runner_on_unreachable", "x", {"msg": "Host key verification failed."}))
    assert fact == HostEvent("w1", "host_key_changed", "host key of node w1 changed", None)
    # any other SSH failure stays "unreachable"
    fact = interpret(event("runner_on_unreachable", "x", {"msg": "Permission denied (publickey)."}))
    assert fact is not None and fact.kind == "unreachable"
