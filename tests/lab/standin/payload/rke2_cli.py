"""Entry point of the stand-in ``rke2`` binary (rke2-manager test lab; not the real RKE2)."""

from __future__ import annotations

import hashlib
import os
import sys

import rke2_config
from rke2_node import VERSION, Agent, log


def git_commit(version: str) -> str:
    """A 40-hex stand-in for the commit a release was built from (stable per version)."""
    return hashlib.sha1(f"rke2-standin {version}".encode()).hexdigest()


def go_version(version: str) -> str:
    """The Go toolchain line: RKE2 v1.31 releases were built with go1.22, v1.32 with go1.23
    (rancher/rke2 go.mod at tags v1.31.4+rke2r1 and v1.32.1+rke2r1), i.e. minor - 9."""
    try:
        minor = int(version.lstrip("v").split(".")[1])
    except (IndexError, ValueError):
        minor = 31
    return f"go1.{minor - 9}.9 X:boringcrypto"


def print_version() -> None:
    """Like rancher/rke2 pkg/cli/cmds/root.go NewApp's VersionPrinter:
    ``<app> version <version> (<GitCommit>)`` then ``go version <runtime.Version()>``."""
    print(f"rke2 version {VERSION} ({git_commit(VERSION)})\ngo version {go_version(VERSION)}")


def main(argv: list[str]) -> int:
    """``rke2 server|agent [--flag value ...]``, ``rke2 --version``."""
    if not argv or argv[0] in ("--version", "-v", "version"):
        print_version()
        return 0
    cmd, rest = argv[0], argv[1:]
    if cmd == "etcd-snapshot":
        import rke2_snapshot

        return rke2_snapshot.main(rest)
    if cmd not in ("server", "agent"):
        print(
            f'Incorrect Usage: unknown command "{cmd}" (stand-in rke2: server, agent, '
            "etcd-snapshot)",
            file=sys.stderr,
        )
        return 1
    # Stand-in failure knob (set through /etc/default/rke2-<role>, the unit's EnvironmentFile):
    # this exact version dies at start, before READY=1, so the Type=notify start job fails.
    if os.environ.get("RKE2_STANDIN_FAIL_VERSION", "").strip() == VERSION:
        log("fatal", f"stand-in: RKE2_STANDIN_FAIL_VERSION={VERSION}: refusing to start")
        return 1
    try:
        cfg = rke2_config.load(rest)
    except (OSError, ValueError) as exc:
        print(
            f'level=fatal msg="invalid config /etc/rancher/rke2/config.yaml: {exc}"',
            file=sys.stderr,
        )
        return 1
    if cmd == "server" and cfg.get("cluster-reset") is True:
        import rke2_reset

        return rke2_reset.run(cfg)
    if cmd == "server":
        from rke2_server import Server

        Server(cfg).run()
    else:
        Agent(cfg).run()
    return 0
