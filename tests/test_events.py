"""Ansible events become host facts with clear reasons; stale run directories are swept."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import ansible_runner
import pytest
from fastapi.testclient import TestClient

from rke2_manager.db import Database
from rke2_manager.execution.ansible_service import RUN_DIR_PREFIX, sweep_stale_run_dirs
from rke2_manager.execution.events import HostEvent, interpret, redact
from tests.factories import PLAY_HEADER
from tests.test_worker import nodes, real_cluster, wait_job


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
    ignored = interpret(event("runner_on_failed", "probe", {"rc": 1}, ignore_errors=True))
    assert ignored == HostEvent("w1", "touched")


def test_markers_unreachable_and_noise() -> None:
    assert interpret(event("runner_on_ok", "[rke2m] node ready")) == HostEvent("w1", "ready")
    assert interpret(event("runner_on_ok", "[rke2m] node removed")) == HostEvent("w1", "removed")
    assert interpret(event("runner_on_ok", "anything")) == HostEvent("w1", "touched")
    unreachable = interpret(event("runner_on_unreachable", "Gathering", {"msg": "ssh: timed out"}))
    assert unreachable == HostEvent(
        "w1", "unreachable", "unreachable: ssh: timed out (during task 'Gathering')"
    )
    untitled = interpret(event("runner_on_unreachable", "", {"msg": "ssh: timed out"}))
    assert untitled == HostEvent("w1", "unreachable", "unreachable: ssh: timed out")
    assert interpret({"event": "playbook_on_start", "event_data": {}}) is None


def test_a_task_start_names_the_task_and_every_result_ends_it() -> None:
    assert interpret(event("runner_on_start", "Start the server")) == HostEvent(
        "w1", "started", task="Start the server"
    )
    assert interpret(event("runner_on_skipped", "Start the server")) == HostEvent("w1", "touched")


#: ansible-core 2.19's result for a task cut off by ``task_timeout`` (or ``timeout:``).
TIMED_OUT = {
    "timedout": {"frame": "Configure `DISPLAY_TRACEBACK` to see a traceback.", "period": 1800},
    "exception": "(traceback unavailable)",
    "msg": "Task failed: Timed out after 1800 second(s).",
    "changed": False,
}
CENSORED = {"censored": "the output has been hidden due to the fact that 'no_log: true' was set"}


def test_a_task_cut_off_by_the_task_timeout_says_so_and_names_the_setting() -> None:
    fact = interpret(event("runner_on_failed", "Start the server", TIMED_OUT), 1800)
    assert fact == HostEvent(
        "w1", "failed", "task 'Start the server' did not finish within 1800s (RKE2M_TASK_TIMEOUT)"
    )
    # a task's own ``timeout:`` keyword is not the setting
    fact = interpret(event("runner_on_failed", "Start the server", TIMED_OUT), 600)
    assert fact == HostEvent("w1", "failed", "task 'Start the server' did not finish within 1800s")
    # delegated: both hosts named, as for any delegated failure
    delegated = event("runner_on_failed", "drain", TIMED_OUT, delegated_host="m1")
    assert interpret(delegated, 1800) == HostEvent(
        "w1", "failed", "drain via m1 did not finish within 1800s (RKE2M_TASK_TIMEOUT)"
    )


def test_a_no_log_task_counts_as_cut_off_when_it_failed_after_the_task_timeout() -> None:
    late = event("runner_on_failed", "Write config.yaml", CENSORED, duration=1800.2)
    assert interpret(late, 1800) == HostEvent(
        "w1", "failed", "task 'Write config.yaml' did not finish within 1800s (RKE2M_TASK_TIMEOUT)"
    )
    early = event("runner_on_failed", "Write config.yaml", CENSORED, duration=1799.0)
    assert interpret(early, 1800) == HostEvent(
        "w1", "failed", "task 'Write config.yaml' failed: failed"
    )
    # a result that is not censored says itself whether it timed out
    slow = event("runner_on_failed", "t", {"msg": "boom"}, duration=5000.0)
    assert interpret(slow, 1800) == HostEvent("w1", "failed", "task 't' failed: boom")
    assert interpret(late) == HostEvent("w1", "failed", "task 'Write config.yaml' failed: failed")


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


# Real ansible-runner 2.4 / ansible-core 2.19 events of a task delegated to m1 (trimmed): the
# result keeps only the delegate's address; the unreachable one has no delegation data at all;
# the display line in ``stdout`` names the delegate in both.
DELEGATED_FAILED = {
    "event": "runner_on_failed",
    "stdout": "\x1b[0;31mfatal: [w1 -> m1(127.0.1.10)]: FAILED! => "
    '{"changed": true, "cmd": ["false"], "msg": "non-zero return code", "rc": 1}\x1b[0m',
    "event_data": {
        "task": "drain",
        "host": "w1",
        "remote_addr": "w1",
        "res": {
            "changed": True,
            "stdout": "",
            "stderr": "node w1 has pods that cannot be evicted",
            "rc": 1,
            "msg": "non-zero return code",
            "_ansible_no_log": False,
            "_ansible_delegated_vars": {
                "ansible_host": "127.0.1.10",
                "ansible_port": None,
                "ansible_user": None,
                "ansible_connection": "ssh",
            },
        },
        "ignore_errors": None,
    },
}
DELEGATED_UNREACHABLE = {
    "event": "runner_on_unreachable",
    "stdout": '\x1b[1;31mfatal: [m2 -> m1]: UNREACHABLE! => {"changed": false, "msg": '
    '"Task failed: Failed to connect to the host via ssh: ssh: connect to host 127.0.1.10 '
    'port 22: Connection refused", "unreachable": true}\x1b[0m',
    "event_data": {
        "task": "drain",
        "host": "m2",
        "remote_addr": "m2",
        "res": {
            "unreachable": True,
            "msg": "Task failed: Failed to connect to the host via ssh: ssh: connect to host "
            "127.0.1.10 port 22: Connection refused",
            "changed": False,
        },
    },
}


def test_a_delegated_failure_names_the_target_and_the_delegate() -> None:
    assert interpret(DELEGATED_FAILED) == HostEvent(
        "w1", "failed", "drain via m1 failed: node w1 has pods that cannot be evicted"
    )
    assert interpret(DELEGATED_UNREACHABLE) == HostEvent(
        "m2",
        "unreachable",
        "unreachable via m1: Task failed: Failed to connect to the host via ssh: ssh: connect "
        "to host 127.0.1.10 port 22: Connection refused",
    )


def test_the_delegate_is_read_from_the_data_when_there_is_no_display_line() -> None:
    older = event(
        "runner_on_failed",
        "drain",
        {"msg": "boom", "_ansible_delegated_vars": {"ansible_delegated_host": "m1"}},
    )
    assert interpret(older) == HostEvent("w1", "failed", "drain via m1 failed: boom")
    data_only = event("runner_on_unreachable", "drain", {"msg": "timed out"}, delegated_host="m3")
    assert interpret(data_only) == HostEvent("w1", "unreachable", "unreachable via m3: timed out")
    # ansible-core 2.19 delegating to the task's own host (``delegate_to: "{{ x |
    # default(inventory_hostname) }}"``): its own address in the result, no arrow in the line
    own = event(
        "runner_on_failed",
        "wait",
        {"msg": "x", "_ansible_delegated_vars": {"ansible_host": "127.0.1.2"}},
    )
    own["stdout"] = 'fatal: [w1]: FAILED! => {"msg": "x"}'
    assert interpret(own) == HostEvent("w1", "failed", "task 'wait' failed: x")
    # delegated to itself is no delegation
    itself = event("runner_on_failed", "t", {"msg": "x"}, delegated_host="w1")
    assert interpret(itself) == HostEvent("w1", "failed", "task 't' failed: x")


def test_a_delegates_changed_host_key_is_not_offered_to_the_target() -> None:
    fp = "SHA256:" + "A1b2" * 10 + "xyz"
    fact = interpret(
        {
            "event": "runner_on_unreachable",
            "stdout": "fatal: [w1 -> m1]: UNREACHABLE! => {}",
            "event_data": {
                "host": "w1",
                "task": "drain",
                "res": {"msg": f"{fp}.\nHost key verification failed.", "unreachable": True},
            },
        }
    )
    assert fact == HostEvent(
        "w1", "unreachable", f"unreachable via m1: host key of node m1 changed (it offered {fp})"
    )


DELEGATING_PLAY = """\
- hosts: all
  gather_facts: false
  tasks:
    - name: drain
      ansible.builtin.command: "sh -c 'echo cannot evict >&2; exit 1'"
      delegate_to: m1
      when: inventory_hostname == 'w1'
    - name: cordon
      ansible.builtin.command: "true"
      delegate_to: m9
      when: inventory_hostname == 'w2'
    - name: wait
      ansible.builtin.command: "sh -c 'echo not yet >&2; exit 1'"
      delegate_to: "{{ inventory_hostname }}"
      when: inventory_hostname == 'w3'
"""


def test_real_delegated_events_blame_the_target_and_name_the_delegate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    (tmp_path / "project").mkdir()
    (tmp_path / "project" / "play.yml").write_text(DELEGATING_PLAY)
    (tmp_path / "inventory").mkdir()
    (tmp_path / "inventory" / "hosts").write_text(
        f"[all:vars]\nansible_python_interpreter={sys.executable}\n[all]\n"
        "w1 ansible_connection=local\nw2 ansible_connection=local\n"
        "w3 ansible_host=127.0.1.3 ansible_connection=local\n"
        "m1 ansible_host=127.0.1.10 ansible_connection=local\n"
        # nothing listens on port 1: the delegate is unreachable
        "m9 ansible_host=127.0.0.1 ansible_port=1 ansible_user=nobody ansible_connection=ssh "
        "ansible_ssh_common_args='-o BatchMode=yes -o StrictHostKeyChecking=no'\n"
    )
    run = ansible_runner.run(
        private_data_dir=str(tmp_path), playbook="play.yml", quiet=True, limit="w1,w2,w3"
    )
    facts = [f for f in map(interpret, run.events) if f and f.kind in ("failed", "unreachable")]
    assert len(facts) == 3, facts
    failed, unreachable, own = sorted(facts, key=lambda f: f.host)
    assert own == HostEvent("w3", "failed", "task 'wait' failed: not yet")
    assert failed == HostEvent("w1", "failed", "drain via m1 failed: cannot evict")
    assert unreachable.host == "w2" and unreachable.kind == "unreachable"
    assert unreachable.reason is not None
    assert unreachable.reason.startswith("unreachable via m9: ")
    assert "127.0.0.1 port 1" in unreachable.reason


def test_a_job_failing_in_a_delegated_step_blames_the_target_not_the_delegate(
    worker_client: TestClient, db: Database, playbook_dir: Path
) -> None:
    (playbook_dir / "scale_remove_workers.yml").write_text(
        PLAY_HEADER
        + """
    - name: drain
      ansible.builtin.command: "sh -c 'echo cannot evict >&2; exit 1'"
      delegate_to: "{{ groups['rke2_servers'][0] }}"
"""
    )
    cid = real_cluster(
        db,
        worker_client,
        [("m1", "127.0.10.1", "server", "ACTIVE"), ("w1", "127.0.10.2", "agent", "ACTIVE")],
    )
    r = worker_client.post(
        f"/api/clusters/{cid}/scale/remove", json={"nodes": [{"hostname": "w1"}]}
    )
    assert r.status_code == 202, r.text
    job = wait_job(worker_client, r.json()["job_id"])
    assert (job["status"], job["reason"]) == ("failed", "w1: drain via m1 failed: cannot evict")
    assert nodes(db, cid) == {
        "m1": ("ACTIVE", None),
        "w1": ("FAILED", "drain via m1 failed: cannot evict"),
    }
