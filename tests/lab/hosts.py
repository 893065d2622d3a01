"""SSH test hosts made of network namespaces (see CONVENTIONS.md, "Test hosts").

Usage::

    with Lab(["m1", "m2", "w1"]) as lab:
        res = lab.run("m1", "hostname")
        assert res.stdout.strip() == "m1"

Each host is a network namespace on a private bridge (``10.200.N.0/24``, the manager side has
``.1``) with its own mount, UTS and PID namespaces and an sshd that accepts root by key only.
Needs root, ``iproute2``, ``util-linux`` and ``openssh-server``/``openssh-client``.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import random
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from tests.lab import _hostfs, _net
from tests.lab._net import LabError
from tests.lab._proc import children
from tests.lab._teardown import BASE_DIR, reap_stale, teardown
from tests.lab.ssh import RunResult, SshClient, wait_port

__all__ = ["Lab", "LabError", "LabHost", "RunResult"]

HOST_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True)
class LabHost:
    """One test host: its name (= hostname), address and the names of its plumbing."""

    name: str
    ip: str
    netns: str
    veth: str
    dir: Path


class Lab:
    """A set of SSH test hosts; start() builds them, close() removes every trace.

    ``Lab(3)`` names the hosts node1..node3; ``Lab(["m1", "w1"])`` uses the given names.
    """

    def __init__(
        self,
        hosts: int | Sequence[str] = 3,
        *,
        on_subnet: Callable[[str], None] | None = None,
    ) -> None:
        names = [f"node{i + 1}" for i in range(hosts)] if isinstance(hosts, int) else list(hosts)
        if not names or len(set(names)) != len(names):
            raise ValueError(f"need distinct host names, got {names!r}")
        self.names = names
        self.on_subnet = on_subnet  # told the lab's subnet before anything connects to it
        self.id = f"{random.getrandbits(24):06x}"
        self.bridge = f"rlab{self.id}br"
        self.dir = BASE_DIR / self.id
        self.hosts: list[LabHost] = []
        self.gateway = ""
        self.subnet = ""
        self._init: dict[str, subprocess.Popen[bytes]] = {}
        self._owned = False  # set once self.dir is ours: close() never touches another lab
        self.ssh: SshClient | None = None

    # -- lifecycle -------------------------------------------------------------------------
    def __enter__(self) -> Lab:
        return self.start()

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def start(self) -> Lab:
        """Create the bridge, the hosts and their sshd; return once every sshd answers.

        Raises LabError (after cleaning up) when anything fails.
        """
        if os.geteuid() != 0:
            raise LabError("the lab needs root (network namespaces, mounts)")
        reap_stale()
        try:
            self._start()
        except BaseException:
            self.close()
            raise
        return self

    def _start(self) -> None:
        self.dir.mkdir(parents=True)
        self._owned = True
        self._save_record()
        _hostfs.keygen(self.dir / "id_ed25519", f"rke2-lab-{self.id}")
        with _net.allocation_lock():
            net = _net.pick_subnet(random.Random())
            gw = ipaddress.IPv4Interface(f"{net[1]}/{net.prefixlen}")
            self.gateway, self.subnet = str(gw.ip), str(net)
            _net.create_bridge(self.bridge, gw)
        if self.on_subnet is not None:
            self.on_subnet(self.subnet)
        for i, name in enumerate(self.names):
            host = LabHost(
                name=name,
                ip=str(net[10 + i]),
                netns=f"rlab-{self.id}-{i}",
                veth=f"rlab{self.id}h{i}",
                dir=self.dir / f"h{i}",
            )
            self.hosts.append(host)
            self._save_record()
            addr = ipaddress.IPv4Interface(f"{host.ip}/{net.prefixlen}")
            _net.create_host_link(self.bridge, host.netns, host.veth, addr)
        self.ssh = SshClient(self.dir / "id_ed25519")
        pub = (self.dir / "id_ed25519.pub").read_text()
        for host in self.hosts:
            _hostfs.prepare(host.dir, host.name, [(h.name, h.ip) for h in self.hosts], pub)
            self._boot(host)
        deadline = time.monotonic() + 10
        for host in self.hosts:
            while not (host.dir / "ready").exists():
                if self._init[host.name].poll() is not None or time.monotonic() > deadline:
                    log = (host.dir / "boot.log").read_text(errors="replace")
                    raise LabError(f"host {host.name} failed to boot: {log}")
                time.sleep(0.01)
        for host in self.hosts:
            self.wait_ssh(host.name)

    def _boot(self, host: LabHost) -> None:
        script = _hostfs.boot_script(host.dir, host.name)
        cmd = ["ip", "netns", "exec", host.netns, "unshare", "--mount", "--uts", "--pid"]
        cmd += ["--fork", "--mount-proc", "--propagation", "private", "sh", "-ec", script]
        env = {
            "PATH": HOST_PATH,
            "LAB_READY": str(host.dir / "ready"),
            "LANG": "C.UTF-8",
            "LAB_SSHD": json.dumps(_hostfs.sshd_argv(host.dir)),
            "LAB_SSHD_LOG": str(host.dir / "sshd.log"),
        }
        with (host.dir / "boot.log").open("wb") as log:
            self._init[host.name] = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                env=env,
                cwd="/",
                start_new_session=True,
            )

    def close(self) -> None:
        """Kill every process of every host, delete links, namespaces, bridge and files.

        Safe to call twice and on a half-built lab; raises LabError if something stays behind.
        """
        if not self._owned:
            return
        ours = list(self._init.values())

        def reap() -> None:
            # Our unshare processes: until reaped, their hosts' PID namespaces cannot end.
            for proc in ours:
                proc.poll()

        problems = teardown(
            self.bridge,
            [(h.netns, h.veth) for h in self.hosts],
            self.dir,
            [h.ip for h in self.hosts],
            reap,
        )
        for proc in ours:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
        self._init.clear()
        if problems:
            raise LabError("lab teardown left things behind: " + "; ".join(problems))

    def _save_record(self) -> None:
        record = {
            "owner": os.getpid(),
            "bridge": self.bridge,
            "hosts": [[h.netns, h.veth, h.ip] for h in self.hosts],
        }
        (self.dir / "lab.json").write_text(json.dumps(record))

    # -- access ----------------------------------------------------------------------------
    def host(self, name: str) -> LabHost:
        """The host called name; KeyError if there is none."""
        for h in self.hosts:
            if h.name == name:
                return h
        raise KeyError(name)

    @property
    def key_path(self) -> Path:
        """Private key (OpenSSH format) that logs in as root on every host."""
        return self.dir / "id_ed25519"

    @property
    def private_key(self) -> str:
        return self.key_path.read_text()

    @property
    def public_key(self) -> str:
        return (self.dir / "id_ed25519.pub").read_text().strip()

    def _client(self) -> SshClient:
        if self.ssh is None:
            raise LabError("lab is not started")
        return self.ssh

    def run(
        self,
        host: str,
        cmd: str,
        *,
        timeout: float = 60,
        check: bool = False,
        input: str | None = None,
    ) -> RunResult:
        """Run a shell command on host over real SSH as root (see SshClient.run)."""
        return self._client().run(
            self.host(host).ip, cmd, timeout=timeout, check=check, input=input
        )

    def ssh_args(self, host: str) -> list[str]:
        """ssh argv prefix logging in as root on host; append a command."""
        return self._client().args(self.host(host).ip)

    def put(self, host: str, src: Path, dest: str) -> None:
        """Copy a local file or directory to dest on host (scp -r)."""
        self._client().put(self.host(host).ip, src, dest)

    def nsexec(self, host: str, argv: Sequence[str], *, timeout: float = 60) -> RunResult:
        """Run argv inside host's namespaces without SSH (works while sshd or the link is down)."""
        pid = self._init_pid(host)
        cmd = ["nsenter", "-t", str(pid), "-m", "-u", "-n", "-p", "--wd=/", "--", *argv]
        proc = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            timeout=timeout,
            env={"PATH": HOST_PATH, "LANG": "C.UTF-8"},
            check=False,
        )
        return RunResult(proc.returncode, proc.stdout, proc.stderr)

    def _init_pid(self, host: str) -> int:
        kids = children(self._init[host].pid)
        if not kids:
            raise LabError(f"host {host} is not running")
        return kids[0]

    # -- failure injection -----------------------------------------------------------------
    def start_sshd(self, host: str, *, wait: bool = True) -> None:
        """Start host's sshd again after stop_sshd(); wait until it answers if wait."""
        os.kill(self._init_pid(host), signal.SIGUSR2)
        if wait:
            self.wait_ssh(host)

    def stop_sshd(self, host: str, timeout: float = 10) -> None:
        """Stop host's sshd listener (open sessions and other processes keep running)."""
        os.kill(self._init_pid(host), signal.SIGUSR1)
        if not wait_port(self.host(host).ip, 22, timeout, open=False):
            raise LabError(f"sshd on {host} still answers after {timeout}s")

    def link_down(self, host: str) -> None:
        """Take host off the network: packets to it are dropped, as for a dead machine."""
        _net.ip("-n", self.host(host).netns, "link", "set", "eth0", "down")

    def link_up(self, host: str) -> None:
        """Bring host back on the network (restores its default route)."""
        ns = self.host(host).netns
        _net.ip("-n", ns, "link", "set", "eth0", "up")
        _net.default_route(ns)

    def wait_ssh(self, host: str, timeout: float = 10) -> None:
        """Block until host's sshd sends its banner; LabError after timeout seconds."""
        addr = self.host(host).ip
        if not wait_port(addr, 22, timeout, banner=b"SSH-"):
            raise LabError(f"sshd on {host} ({addr}) did not answer in {timeout}s")
