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
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from tests.lab import _hostfs, _net
from tests.lab._net import LabError
from tests.lab._proc import children, kill_ssh_clients, wait_gone
from tests.lab.ssh import RunResult, SshClient

__all__ = ["Lab", "LabError", "LabHost", "RunResult"]

BASE_DIR = Path("/var/tmp/rke2-lab")
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

    def __init__(self, hosts: int | Sequence[str] = 3, *, ssh_timeout: float = 15.0) -> None:
        names = [f"node{i + 1}" for i in range(hosts)] if isinstance(hosts, int) else list(hosts)
        if not names or len(set(names)) != len(names):
            raise ValueError(f"need distinct host names, got {names!r}")
        self.names = names
        self.ssh_timeout = ssh_timeout
        self.id = f"{random.getrandbits(24):06x}"
        self.bridge = f"rlab{self.id}br"
        self.dir = BASE_DIR / self.id
        self.hosts: list[LabHost] = []
        self.gateway = ""
        self.subnet = ""
        self._init: dict[str, subprocess.Popen[bytes]] = {}
        self._sshd: dict[str, subprocess.Popen[bytes]] = {}
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
        self._save_record()
        _hostfs.keygen(self.dir / "id_ed25519", f"rke2-lab-{self.id}")
        with _net.allocation_lock():
            net = _net.pick_subnet(random.Random())
            gw = ipaddress.IPv4Interface(f"{net[1]}/{net.prefixlen}")
            self.gateway, self.subnet = str(gw.ip), str(net)
            _net.create_bridge(self.bridge, gw)
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
        self.ssh = SshClient(self.dir / "id_ed25519", timeout=self.ssh_timeout)
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
            self.start_sshd(host.name, wait=False)
        for host in self.hosts:
            self.wait_ssh(host.name)

    def _boot(self, host: LabHost) -> None:
        script = _hostfs.boot_script(host.dir, host.name)
        cmd = ["ip", "netns", "exec", host.netns, "unshare", "--mount", "--uts", "--pid"]
        cmd += ["--fork", "--mount-proc", "--propagation", "private", "sh", "-ec", script]
        env = {"PATH": HOST_PATH, "LAB_READY": str(host.dir / "ready"), "LANG": "C.UTF-8"}
        with (host.dir / "boot.log").open("wb") as log:
            self._init[host.name] = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env, cwd="/",
                start_new_session=True,
            )

    def close(self) -> None:
        """Kill every process of every host, delete links, namespaces, bridge and files.

        Safe to call twice and on a half-built lab; raises LabError if something stays behind.
        """
        ours = [*self._sshd.values(), *self._init.values()]

        def reap() -> None:
            # nsenter/unshare are our children: until reaped, the PID namespace cannot end.
            for proc in ours:
                proc.poll()

        problems = teardown(self.bridge, [(h.netns, h.veth) for h in self.hosts], self.dir,
                            [h.ip for h in self.hosts], reap)
        for proc in ours:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
        self._sshd.clear()
        self._init.clear()
        if problems:
            raise LabError("lab teardown left things behind: " + "; ".join(problems))

    def _save_record(self) -> None:
        record = {"owner": os.getpid(), "bridge": self.bridge,
                  "hosts": [[h.netns, h.veth, h.ip] for h in self.hosts]}
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

    def run(self, host: str, cmd: str, *, timeout: float = 60, check: bool = False,
            input: str | None = None) -> RunResult:
        """Run a shell command on host over real SSH as root (see SshClient.run)."""
        return self._client().run(self.host(host).ip, cmd, timeout=timeout, check=check,
                                  input=input)

    def put(self, host: str, src: Path, dest: str) -> None:
        """Copy a local file or directory to dest on host (scp -r)."""
        self._client().put(self.host(host).ip, src, dest)

    def nsexec(self, host: str, argv: Sequence[str], *, timeout: float = 60) -> RunResult:
        """Run argv inside host's namespaces without SSH (works while sshd or the link is down)."""
        pid = self._init_pid(host)
        cmd = ["nsenter", "-t", str(pid), "-m", "-u", "-n", "-p", "--wd=/", "--", *argv]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                              env={"PATH": HOST_PATH, "LANG": "C.UTF-8"}, check=False)
        return RunResult(proc.returncode, proc.stdout, proc.stderr)

    def _init_pid(self, host: str) -> int:
        kids = children(self._init[host].pid)
        if not kids:
            raise LabError(f"host {host} is not running")
        return kids[0]

    # -- failure injection -----------------------------------------------------------------
    def start_sshd(self, host: str, *, wait: bool = True) -> None:
        """(Re)start host's sshd in the host's namespaces; wait until it answers if wait."""
        h = self.host(host)
        cmd = ["nsenter", "-t", str(self._init_pid(host)), "-m", "-u", "-n", "-p", "--wd=/",
               "--", "/usr/sbin/sshd", "-D", "-e", "-f", str(h.dir / "sshd_config")]
        with (h.dir / "sshd.log").open("ab") as log:
            self._sshd[host] = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                env={"PATH": HOST_PATH, "LANG": "C.UTF-8"}, start_new_session=True,
            )
        if wait:
            self.wait_ssh(host)

    def stop_sshd(self, host: str) -> None:
        """Stop host's sshd listener (open sessions and other processes keep running)."""
        proc = self._sshd.pop(host, None)
        if proc is None:
            return
        for pid in children(proc.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        proc.wait(timeout=10)

    def link_down(self, host: str) -> None:
        """Take host off the network: packets to it are dropped, as for a dead machine."""
        _net.ip("-n", self.host(host).netns, "link", "set", "eth0", "down")

    def link_up(self, host: str) -> None:
        """Bring host back on the network (restores its default route)."""
        ns = self.host(host).netns
        _net.ip("-n", ns, "link", "set", "eth0", "up")
        _net.ip("-n", ns, "route", "replace", "default", "dev", "eth0")

    def wait_ssh(self, host: str, timeout: float = 10) -> None:
        """Block until host's sshd sends its banner; LabError after timeout seconds."""
        addr = self.host(host).ip
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(OSError), socket.create_connection((addr, 22), 1) as s:
                s.settimeout(1)
                if s.recv(8).startswith(b"SSH-"):
                    return
            if time.monotonic() > deadline:
                raise LabError(f"sshd on {host} ({addr}) did not answer in {timeout}s")
            time.sleep(0.02)


def teardown(bridge: str, hosts: Sequence[tuple[str, str]], labdir: Path,
             ips: Sequence[str], reap: Callable[[], None] = lambda: None) -> list[str]:
    """Remove one lab's processes, links, namespaces, bridge and files; return what failed."""
    problems: list[str] = []
    pids = [pid for netns, _ in hosts for pid in _net.netns_pids(netns)]
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    if not wait_gone(pids, timeout=10, reap=reap):
        problems.append(f"processes survived SIGKILL: {pids}")
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
            os.kill(record["owner"], 0)
        except ProcessLookupError:
            hosts = [(ns, veth) for ns, veth, _ in record["hosts"]]
            teardown(record["bridge"], hosts, record_file.parent,
                     [ip for _, _, ip in record["hosts"]])
        except (OSError, ValueError, KeyError):
            continue
    with contextlib.suppress(OSError):
        for d in BASE_DIR.iterdir():
            if not (d / "lab.json").exists() and time.time() - d.stat().st_mtime > 3600:
                shutil.rmtree(d, ignore_errors=True)

