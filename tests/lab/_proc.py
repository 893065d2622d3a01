"""Process helpers for lab teardown (root-namespace PIDs)."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable, Iterable
from pathlib import Path


def children(pid: int) -> list[int]:
    """Direct children of pid (empty if pid is gone)."""
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def alive(pid: int) -> bool:
    """True while pid exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def wait_gone(pids: Iterable[int], timeout: float,
              reap: Callable[[], None] = lambda: None) -> bool:
    """Wait until none of pids is alive; False if some still are after timeout seconds.

    reap is called on every round, to collect the caller's own exited children.
    """
    pending = list(pids)
    deadline = time.monotonic() + timeout
    while pending:
        reap()
        pending = [p for p in pending if alive(p)]
        if pending and time.monotonic() > deadline:
            return False
        if pending:
            time.sleep(0.01)
    return True


def kill_ssh_clients(ips: Iterable[str]) -> None:
    """End ssh clients (e.g. Ansible's ControlPersist masters) still talking to ips.

    A lab's addresses are reused by later labs; a lingering control master for a dead host
    would make the next lab's first connection hang.
    """
    targets = set(ips)
    if not targets:
        return
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "comm").read_text().strip() != "ssh":
                continue
            argv = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        words = {a.rsplit("@", 1)[-1] for a in argv}
        if words & targets:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(entry.name), signal.SIGTERM)
