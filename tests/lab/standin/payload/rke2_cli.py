"""Entry point of the stand-in ``rke2`` binary (rke2-manager test lab; not the real RKE2)."""

from __future__ import annotations

import sys

import rke2_config
from rke2_node import VERSION, Agent


def main(argv: list[str]) -> int:
    """``rke2 server|agent [--flag value ...]``, ``rke2 --version``."""
    if not argv or argv[0] in ("--version", "-v", "version"):
        print(f"rke2 version {VERSION} (stand-in)\ngo version go1.22.9 X:boringcrypto")
        return 0
    cmd, rest = argv[0], argv[1:]
    if cmd not in ("server", "agent"):
        print(
            f'Incorrect Usage: unknown command "{cmd}" (stand-in rke2: server, agent)',
            file=sys.stderr,
        )
        return 1
    try:
        cfg = rke2_config.load(rest)
    except (OSError, ValueError) as exc:
        print(
            f'level=fatal msg="invalid config /etc/rancher/rke2/config.yaml: {exc}"',
            file=sys.stderr,
        )
        return 1
    if cmd == "server":
        from rke2_server import Server

        Server(cfg).run()
    else:
        Agent(cfg).run()
    return 0
