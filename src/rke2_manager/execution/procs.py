"""A run's processes on the manager's machine: tagged, found, and ended as a whole.

A process group is not enough: ansible-core's forks call ``setsid()`` (each worker process
detaches into a session of its own) and ssh's ControlPersist master daemonises, so a run's
processes span many groups and outlive ``killpg`` of ansible-playbook's group. What they all
keep is their environment. Every run therefore starts with ``RKE2M_RUN=<tag>`` in it (a tag
with a random part, recorded on the job before the run starts), and :func:`end_run` ends every
process whose environment carries it: SIGTERM, then SIGKILL after a grace period, then waits
until none is left. Processes of other users cannot be read, and a stranger cannot carry the
tag, so nothing else is ever signalled. Linux only (``/proc``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

#: The environment variable that marks every process of a run.
RUN_ENV = "RKE2M_RUN"

_PROC = Path("/proc")


def new_tag(job_id: int) -> str:
    """A run tag for ``job_id``: unique across runs, managers and machines."""
    return f"job{job_id}-{secrets.token_hex(8)}"


@dataclass(frozen=True)
class RunProcess:
    """The process that leads a run (ansible-playbook), as recorded on the job."""

    pid: int
    pgid: int
    start_ticks: int


def start_ticks(pid: int) -> int | None:
    """When ``pid`` started (clock ticks after boot), or None if there is no such process.

    Together with the pid this names one process for the life of the boot: a pid reused by a
    stranger has another start time.
    """
    try:
        stat = (_PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # the command name (field 2) may hold spaces and parentheses: split after the last ')'
    fields = stat[stat.rfind(")") + 2 :].split()
    return int(fields[19])  # field 22 of the whole line


def _parent(pid: int) -> int | None:
    try:
        stat = (_PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    return int(stat[stat.rfind(")") + 2 :].split()[1])


def tagged(tag: str, title: str | None = None) -> list[int]:
    """The live processes whose environment carries ``RKE2M_RUN=<tag>``, or whose command line
    starts with ``title`` (zombies excluded: their environment and command line are gone, and
    they hold nothing but a pid until reaped).

    ``title`` finds the run's ssh ControlPersist masters, which overwrite their environment
    with their process title (see :func:`rke2_manager.execution.ssh.master_title`).
    """
    needle = f"{RUN_ENV}={tag}".encode() + b"\0"
    prefix = title.encode() if title else None
    found = []
    for entry in _pids():
        try:
            environ = (_PROC / str(entry) / "environ").read_bytes()
            cmdline = (_PROC / str(entry) / "cmdline").read_bytes() if prefix else b""
        except OSError:
            continue  # gone, or not ours to read
        if (b"\0" + environ).find(b"\0" + needle) != -1 or (
            prefix is not None and cmdline.startswith(prefix)
        ):
            found.append(entry)
    return found


def _pids() -> Iterator[int]:
    own = os.getpid()
    for name in os.listdir(_PROC):
        if name.isdigit() and int(name) != own:
            yield int(name)


def leader(tag: str, parent: int) -> RunProcess | None:
    """The run's first process (its ansible-playbook): the tagged child of ``parent``."""
    for pid in tagged(tag):
        ticks = start_ticks(pid)
        if _parent(pid) == parent and ticks is not None:
            try:
                return RunProcess(pid, os.getpgid(pid), ticks)
            except ProcessLookupError:
                continue
    return None


def _signal(pids: list[int], sig: signal.Signals) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def end_run(tag: str, grace: float, patience: float = 10.0, title: str | None = None) -> int:
    """End every process of the run tagged ``tag`` and wait until none is left.

    SIGTERM first (ssh closes its sessions, ansible-playbook its forks), SIGKILL to what is
    left after ``grace`` seconds, then up to ``patience`` seconds more for the kernel to take
    them (a process in uninterruptible sleep dies only when it wakes). Returns how many
    processes were found; raises RunNotEnded if some are still there after all that.
    ``title``: see :func:`tagged`.
    """
    pids = tagged(tag, title)
    if not pids:
        return 0
    found = len(pids)
    log.info("run %s: ending %d process(es)", tag, found)
    _signal(pids, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while pids and time.monotonic() < deadline:
        time.sleep(0.1)
        pids = tagged(tag, title)
    deadline = time.monotonic() + patience
    while pids:
        _signal(pids, signal.SIGKILL)
        if time.monotonic() > deadline:
            raise RunNotEnded(tag, pids)
        time.sleep(0.1)
        pids = tagged(tag, title)
    return found


class RunNotEnded(RuntimeError):
    """Processes of a run survived SIGKILL (uninterruptible sleep) for longer than allowed."""

    def __init__(self, tag: str, pids: list[int]) -> None:
        super().__init__(f"run {tag}: processes {pids} did not end after SIGKILL")
        self.tag, self.pids = tag, pids
