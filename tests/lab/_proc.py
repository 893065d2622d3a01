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


def _nspids(pid: int) -> list[str]:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return []
    for line in status.splitlines():
        if line.startswith("NSpid:"):
            return line.split()[1:]
    return []


def is_ns_init(pid: int) -> bool:
    """True if pid is PID 1 of a nested PID namespace (a lab host's init)."""
    ids = _nspids(pid)
    return len(ids) > 1 and ids[-1] == "1"


def in_nested_pidns(pid: int) -> bool:
    """True if pid lives in a PID namespace below the one we run in."""
    return len(_nspids(pid)) > 1


def alive(pid: int) -> bool:
    """True while pid exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def wait_gone(pids: Iterable[int], timeout: float, reap: Callable[[], None] = lambda: None) -> bool:
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


def sockets_to(ips: set[str]) -> set[str]:
    """Inodes of this namespace's TCP sockets whose peer is one of ips."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp",):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            peer_hex = fields[2].split(":")[0]
            peer = ".".join(str(b) for b in reversed(bytes.fromhex(peer_hex)))
            if peer in ips:
                inodes.add(fields[9])
    return inodes


def kill_ssh_clients(ips: Iterable[str]) -> None:
    """End ssh clients (e.g. Ansible's ControlPersist masters) still connected to ips.

    A lab's addresses are reused by later labs; a control master left talking to a dead host
    would make the next lab's connections hang. Masters rename themselves
    (``ssh: /root/.ansible/cp/… [mux]``), so they are found by their sockets too.
    """
    targets = set(ips)
    if not targets:
        return
    inodes = {f"socket:[{i}]" for i in sockets_to(targets)}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "comm").read_text().strip() != "ssh":
                continue
            argv = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
            fds = {os.readlink(fd) for fd in (entry / "fd").iterdir()} if inodes else set()
        except OSError:
            continue
        if {a.rsplit("@", 1)[-1] for a in argv} & targets or fds & inodes:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(entry.name), signal.SIGTERM)
