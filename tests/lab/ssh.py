"""SSH access to lab hosts: a small client for tests and the settings Ansible needs."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tests.lab.hosts import Lab

# Lab hosts get fresh host keys on every run, so known_hosts must stay out of the way.
SSH_COMMON_ARGS = "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR"
SSH_OPTIONS = (
    *SSH_COMMON_ARGS.split(),
    "-o",
    "BatchMode=yes",
    "-o",
    "IdentitiesOnly=yes",
    "-o",
    "ConnectTimeout=5",
)


@dataclass(frozen=True)
class RunResult:
    """Outcome of a command on a host."""

    rc: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.rc == 0


class CommandFailed(RuntimeError):
    """A command run with check=True exited non-zero."""


class SshClient:
    """Runs commands as root on lab hosts with one private key."""

    def __init__(self, key: Path) -> None:
        self.key = key

    def args(self, ip: str) -> list[str]:
        """ssh argv prefix that logs in as root@ip."""
        return ["ssh", "-i", str(self.key), *SSH_OPTIONS, f"root@{ip}"]

    def run(
        self,
        ip: str,
        cmd: str,
        *,
        timeout: float = 60,
        check: bool = False,
        input: str | None = None,
    ) -> RunResult:
        """Run cmd through root's shell on ip.

        rc 255 means SSH itself failed; a timeout gives rc -9 instead of raising. With check,
        raises CommandFailed on a non-zero rc.
        """
        try:
            proc = subprocess.run(
                [*self.args(ip), cmd],
                capture_output=True,
                text=True,
                timeout=timeout,
                input=input,
                stdin=None if input is not None else subprocess.DEVNULL,
            )
            res = RunResult(proc.returncode, proc.stdout, proc.stderr)
        except subprocess.TimeoutExpired as exc:
            res = RunResult(-9, _text(exc.stdout), _text(exc.stderr) + "\n[timed out]")
        if check and not res.ok:
            raise CommandFailed(f"{cmd!r} on {ip} -> rc {res.rc}\n{res.stdout}\n{res.stderr}")
        return res

    def put(self, ip: str, src: Path, dest: str) -> None:
        """Copy src (file or directory) to dest on ip."""
        cmd = ["scp", "-q", "-r", "-i", str(self.key), *SSH_OPTIONS, str(src), f"root@{ip}:{dest}"]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
        if proc.returncode != 0:
            raise CommandFailed(f"scp {src} -> {ip}:{dest} failed: {proc.stderr}")


def wait_port(
    ip: str, port: int, timeout: float, *, open: bool = True, banner: bytes = b""
) -> bool:
    """Wait until ip:port accepts connections (sending banner first, if given) or, with
    open=False, refuses them; False if that did not happen within timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((ip, port), 1) as s:
                s.settimeout(1)
                ok = not banner or s.recv(len(banner)).startswith(banner)
        except OSError:
            ok = False
        if ok == open:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)


def _text(data: bytes | str | None) -> str:
    if data is None:
        return ""
    return data if isinstance(data, str) else data.decode(errors="replace")


def host_vars(lab: Lab, name: str, *, python: str | None = "/usr/bin/python3") -> dict[str, Any]:
    """Ansible variables that reach lab host name as root with the lab's key."""
    out: dict[str, Any] = {
        "ansible_host": lab.host(name).ip,
        "ansible_user": "root",
        "ansible_port": 22,
        "ansible_ssh_private_key_file": str(lab.key_path),
        "ansible_ssh_common_args": SSH_COMMON_ARGS,
    }
    if python:
        # Skips interpreter discovery, one SSH round trip per host and play.
        out["ansible_python_interpreter"] = python
    return out


def inventory(
    lab: Lab, groups: Mapping[str, Sequence[str]] | None = None, **kwargs: Any
) -> dict[str, Any]:
    """An Ansible inventory (as for ansible-runner's ``inventory=``) of every lab host.

    groups maps group names to host names, e.g. ``{"servers": ["m1"], "agents": ["w1"]}``.
    """
    hosts = {h.name: host_vars(lab, h.name, **kwargs) for h in lab.hosts}
    children: dict[str, Any] = {
        g: {"hosts": {n: {} for n in members}} for g, members in (groups or {}).items()
    }
    return {"all": {"hosts": hosts, "children": children}}


def ansible_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment for running ansible-playbook/ansible-runner from this virtualenv."""
    env = dict(os.environ if base is None else base)
    venv_bin = str(Path(sys.executable).parent)
    env["PATH"] = venv_bin + os.pathsep + env.get("PATH", "/usr/bin:/bin")
    env.setdefault("ANSIBLE_HOST_KEY_CHECKING", "False")
    env.setdefault("ANSIBLE_PIPELINING", "True")
    return env
