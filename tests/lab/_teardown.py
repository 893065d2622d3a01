"""Removing labs: one that is closing, or one left behind by a crashed test run."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from tests.lab import _net
from tests.lab._net import LabError
from tests.lab._proc import alive, in_nested_pidns, is_ns_init, kill_ssh_clients, wait_gone

BASE_DIR = Path("/var/tmp/rke2-lab")


def teardown(
    bridge: str,
    hosts: Sequence[tuple[str, str]],
    labdir: Path,
    ips: Sequence[str],
    reap: Callable[[], None] = lambda: None,
) -> list[str]:
    """Remove one lab's processes, links, namespaces, bridge and files; return what failed."""
    problems: list[str] = []
    pids = [pid for netns, _ in hosts for pid in _net.netns_pids(netns)]
    # Order matters for speed: a zombie parented outside its PID namespace waits ~1 s for the
    # machine's init. So: host processes first (their hosts' init reaps them), then each
    # host's init (its parent, our unshare, reaps it and exits), then whatever is left.
    inits = [p for p in pids if is_ns_init(p)]
    inner = [p for p in pids if p not in inits and in_nested_pidns(p)]
    for group in (inner, inits, pids):
        for pid in group:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if not wait_gone(group, timeout=10, reap=reap):
            problems.append(f"processes survived SIGKILL: {group}")
    kill_ssh_clients(ips)
    for netns, veth in hosts:
        for step, arg in ((_net.delete_link, veth), (_net.delete_netns, netns)):
            try:
                step(arg)
            except LabError as exc:
                problems.append(str(exc))
    try:
        _net.delete_link(bridge)
    except LabError as exc:
        problems.append(str(exc))
    if labdir.exists():
        shutil.rmtree(labdir, ignore_errors=True)
        if labdir.exists():
            problems.append(f"could not remove {labdir}")
    return problems


def reap_stale() -> None:
    """Tear down labs whose owning process is gone (a crashed or killed test run)."""
    if not BASE_DIR.is_dir():
        return
    for record_file in BASE_DIR.glob("*/lab.json"):
        try:
            record = json.loads(record_file.read_text())
            if alive(int(record["owner"])):
                continue
            hosts = [(ns, veth) for ns, veth, _ in record["hosts"]]
            teardown(
                record["bridge"], hosts, record_file.parent, [ip for _, _, ip in record["hosts"]]
            )
        except (OSError, ValueError, KeyError):
            continue
    with contextlib.suppress(OSError):
        for d in BASE_DIR.iterdir():
            if not (d / "lab.json").exists() and time.time() - d.stat().st_mtime > 3600:
                shutil.rmtree(d, ignore_errors=True)
