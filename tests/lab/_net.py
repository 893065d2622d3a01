"""Network plumbing for lab hosts: a bridge, one namespace and veth pair per host.

All commands are plain ``ip`` calls in the root namespace; nothing here keeps state, so the
same helpers serve both a live lab and the reaping of a crashed one.
"""

from __future__ import annotations

import fcntl
import ipaddress
import json
import random
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

LOCK_FILE = Path("/run/rke2-lab.lock")


class LabError(RuntimeError):
    """A lab host or its plumbing could not be created, reached or removed."""


def ip(*args: str, check: bool = True) -> str:
    """Run ``ip ARGS`` and return its stdout; raise LabError when it fails and check is set."""
    proc = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise LabError(f"ip {' '.join(args)} failed: {proc.stderr.strip()}")
    return proc.stdout


@contextmanager
def allocation_lock() -> Iterator[None]:
    """Serialise subnet choice and bridge creation between labs started concurrently."""
    LOCK_FILE.parent.mkdir(parents=True, exist_ok=True)
    with LOCK_FILE.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def used_networks() -> list[ipaddress.IPv4Network]:
    """IPv4 networks already present on addresses or routes of the root namespace."""
    nets: list[ipaddress.IPv4Network] = []
    for entry in json.loads(ip("-j", "-4", "addr", "show") or "[]"):
        for addr in entry.get("addr_info", []):
            nets.append(ipaddress.IPv4Interface(f"{addr['local']}/{addr['prefixlen']}").network)
    for route in json.loads(ip("-j", "-4", "route", "show", "table", "all") or "[]"):
        dst = route.get("dst", "")
        if dst and dst != "default":
            try:
                nets.append(ipaddress.IPv4Network(dst, strict=False))
            except ValueError:
                continue
    return nets


def pick_subnet(rng: random.Random) -> ipaddress.IPv4Network:
    """Choose a free ``10.200.N.0/24``; call under allocation_lock()."""
    used = used_networks()
    candidates = [ipaddress.IPv4Network(f"10.200.{n}.0/24") for n in range(256)]
    free = [c for c in candidates if not any(c.overlaps(u) for u in used)]
    if not free:
        raise LabError("no free 10.200.N.0/24 subnet for the lab")
    return rng.choice(free)


def create_bridge(name: str, gateway: ipaddress.IPv4Interface) -> None:
    """Create an up bridge carrying the manager-side address of the lab subnet."""
    ip("link", "add", name, "type", "bridge")
    ip("addr", "add", str(gateway), "dev", name)
    ip("link", "set", name, "up")
    # quickack: no 40 ms delayed ACKs in SSH handshakes (halves the cost of a connection).
    ip(
        "route",
        "replace",
        str(gateway.network),
        "dev",
        name,
        "proto",
        "kernel",
        "scope",
        "link",
        "src",
        str(gateway.ip),
        "quickack",
        "1",
    )


def create_host_link(bridge: str, netns: str, veth: str, addr: ipaddress.IPv4Interface) -> None:
    """Create netns with ``eth0`` (addr, on-link default route) plugged into the bridge."""
    ip("netns", "add", netns)
    ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", netns)
    ip("link", "set", veth, "master", bridge, "up")
    ip("-n", netns, "addr", "add", str(addr), "dev", "eth0")
    ip("-n", netns, "link", "set", "lo", "up")
    ip("-n", netns, "link", "set", "eth0", "up")
    ip(
        "-n",
        netns,
        "route",
        "replace",
        str(addr.network),
        "dev",
        "eth0",
        "proto",
        "kernel",
        "scope",
        "link",
        "src",
        str(addr.ip),
        "quickack",
        "1",
    )
    default_route(netns)


def default_route(netns: str) -> None:
    """On-link default route, so Ansible facts find a default IPv4 interface."""
    ip("-n", netns, "route", "replace", "default", "dev", "eth0", "quickack", "1")


def netns_pids(netns: str) -> list[int]:
    """PIDs (root-namespace numbering) of every process inside netns; empty if it is gone."""
    out = ip("netns", "pids", netns, check=False)
    return [int(p) for p in out.split()]


def link_exists(name: str) -> bool:
    return subprocess.run(["ip", "link", "show", name], capture_output=True).returncode == 0


def netns_exists(name: str) -> bool:
    return name in ip("netns", "list", check=False).split()


def delete_link(name: str) -> None:
    """Delete a link if present (a veth takes its peer along)."""
    if link_exists(name):
        ip("link", "del", name)


def delete_netns(name: str) -> None:
    """Delete a namespace if present."""
    if netns_exists(name):
        ip("netns", "del", name)
