"""A run's processes are found by their tag and ended as a whole, detached ones included."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rke2_manager.execution.procs import (
    RUN_ENV,
    RunNotEnded,
    end_run,
    leader,
    new_tag,
    start_ticks,
    tagged,
)
from rke2_manager.execution.ssh import master_title

#: Starts a child that detaches into a session of its own (as ansible-core's forks do) and a
#: grandchild that ignores SIGTERM, then waits.
DETACHING = """
import os, signal, subprocess, sys, time
subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"], start_new_session=True)
subprocess.Popen([sys.executable, "-c",
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(300)"])
time.sleep(300)
"""


def _spawn(tag: str | None, code: str = DETACHING) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    if tag is not None:
        env[RUN_ENV] = tag
    return subprocess.Popen([sys.executable, "-c", code], env=env)


def _wait_for(count: int, tag: str) -> list[int]:
    deadline = time.monotonic() + 30
    while len(found := tagged(tag)) < count:
        assert time.monotonic() < deadline, f"only {found} of {count} processes appeared"
        time.sleep(0.05)
    return found


def test_end_run_ends_detached_and_stubborn_processes_and_no_stranger() -> None:
    tag, other = new_tag(1), new_tag(1)
    assert tag != other and tag.startswith("job1-")
    run, stranger = _spawn(tag), _spawn(other)
    try:
        pids = _wait_for(3, tag)
        _wait_for(3, other)
        assert run.pid in pids
        # the detached child is in another session: killing the run's group would miss it
        sessions = {os.getsid(pid) for pid in pids}
        assert len(sessions) == 2
        assert end_run(tag, grace=0.5) == 3
        assert tagged(tag) == []
        run.wait(5)
        for pid in pids:  # gone, or a zombie waiting for its parent
            try:
                state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            assert state == "Z"
        # the other run was not touched
        assert len(tagged(other)) == 3
        assert end_run(tag, grace=0.5) == 0  # nothing left: nothing to do
    finally:
        end_run(other, grace=0)
        stranger.wait(5)


def test_leader_is_the_tagged_child_with_its_start_time() -> None:
    tag = new_tag(2)
    run = _spawn(tag, "import time; time.sleep(300)")
    try:
        _wait_for(1, tag)
        found = leader(tag, os.getpid())
        assert found is not None
        assert found.pid == run.pid and found.pgid == os.getpgid(run.pid)
        assert found.start_ticks == start_ticks(run.pid)
        assert leader(tag, 1) is None  # not a child of init
    finally:
        end_run(tag, grace=0)
        run.wait(5)


def test_end_run_says_when_processes_survive(monkeypatch: pytest.MonkeyPatch) -> None:
    # a process in uninterruptible sleep outlives SIGKILL: modelled by a scan that never empties
    monkeypatch.setattr("rke2_manager.execution.procs.tagged", lambda tag, title=None: [2**22 + 1])
    with pytest.raises(RunNotEnded, match="did not end after SIGKILL"):
        end_run("job9-x", grace=0, patience=0.2)


def test_end_run_finds_the_runs_ssh_master_by_its_title() -> None:
    """ssh's ControlPersist master overwrites its environment with its process title, so it
    is found by the title its ControlPath gives it (``ssh: <ControlPath> [mux]``)."""
    tag = new_tag(3)
    title = master_title(5, tag)
    stranger_title = master_title(5, new_tag(3))
    masters = [
        subprocess.Popen(["bash", "-c", f'exec -a "{t}a1b2 [mux]" sleep 300'], env={})
        for t in (title, stranger_title)
    ]
    try:
        deadline = time.monotonic() + 30
        while masters[0].pid not in tagged(tag, title):
            assert time.monotonic() < deadline, "the master did not appear"
            time.sleep(0.05)
        assert tagged(tag) == []  # no tag in its environment
        assert end_run(tag, grace=1, title=title) == 1
        assert masters[0].wait(5) is not None
        assert masters[1].poll() is None  # another run's master stays
    finally:
        for master in masters:
            master.kill()
            master.wait(5)
