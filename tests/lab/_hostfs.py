"""Per-host files of a lab host: overlay layers, root's home, sshd config, boot script.

A host's directory (``<lab>/<host>/``) holds everything that differs between hosts; the boot
script mounts it over the shared root filesystem inside the host's own mount namespace, so each
SSH session on that host sees its own ``/etc``, ``/var/lib``, ``/usr/local``, ``/root``, ``/run``
and ``/tmp``.
"""

from __future__ import annotations

import os
import shlex
import shutil
import stat
import subprocess
from collections.abc import Sequence
from pathlib import Path

from tests.lab.standin import install_systemd_standin

OVERLAYS = ("etc", "var/lib", "usr/local", "usr/bin")
# Tools this machine may have that a fresh RKE2 host lacks: hidden, so that a playbook calling
# them by bare name fails here as it would there (RKE2's kubectl is /var/lib/rancher/rke2/bin).
HIDDEN = ("kubectl", "helm", "crictl", "etcdctl")

SSHD_CONFIG = """\
Port 22
ListenAddress 0.0.0.0
HostKey {host_key}
PidFile none
PermitRootLogin prohibit-password
PubkeyAuthentication yes
AuthorizedKeysFile .ssh/authorized_keys
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
UseDNS no
PrintMotd no
PrintLastLog no
MaxStartups 200
MaxSessions 200
LogLevel ERROR
AcceptEnv LANG LC_*
Subsystem sftp internal-sftp
# The post-quantum default costs ~150 ms of CPU per connection on these machines.
KexAlgorithms curve25519-sha256,curve25519-sha256@libssh.org,ecdh-sha2-nistp256
"""

# PID 1 of the host's PID namespace. It calls itself "systemd" (fact gathering then reports
# service_mgr=systemd as on a real host), reaps orphans, and runs the host's sshd as its own
# child: SIGUSR1 stops sshd, SIGUSR2 starts it again. sshd must be parented inside the
# namespace; a zombie whose parent lives outside waits ~1 s for the machine's init to reap it.
INIT_PROGRAM = """\
import json, os, signal, subprocess
with open('/proc/self/comm', 'w') as f:
    f.write('systemd')
sigs = {signal.SIGCHLD, signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2}
signal.pthread_sigmask(signal.SIG_BLOCK, sigs)
argv = json.loads(os.environ['LAB_SSHD'])
log = open(os.environ['LAB_SSHD_LOG'], 'ab')
env = {'PATH': os.environ['PATH'], 'LANG': 'C.UTF-8'}
sshd = None
def start():
    return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env)
sshd = start()
open(os.environ['LAB_READY'], 'w').close()
while True:
    try:
        while (pid := os.waitpid(-1, os.WNOHANG)[0]):
            if sshd is not None and pid == sshd.pid:
                sshd.returncode, sshd = 0, None
    except ChildProcessError:
        pass
    info = signal.sigtimedwait(sigs, 1.0)
    sig = info.si_signo if info else None
    if sig == signal.SIGTERM:
        os._exit(0)
    if sig == signal.SIGUSR1 and sshd is not None:
        sshd.terminate()
    if sig == signal.SIGUSR2 and sshd is None:
        sshd = start()
"""


def keygen(path: Path, comment: str) -> None:
    """Write a fresh passphrase-less ed25519 key pair at path and path.pub."""
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        check=True,
        capture_output=True,
    )


def etc_hosts(entries: Sequence[tuple[str, str]]) -> str:
    """An /etc/hosts naming localhost and every lab host."""
    lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback"]
    lines += [f"{addr}\t{name}" for name, addr in entries]
    return "\n".join(lines) + "\n"


def prepare(hostdir: Path, name: str, hosts: Sequence[tuple[str, str]], pubkey: str) -> None:
    """Lay out hostdir: overlay layers pre-seeded with host files, root's home, sshd files."""
    for layer in OVERLAYS:
        flat = layer.replace("/", "-")
        (hostdir / "fs" / f"{flat}.upper").mkdir(parents=True)
        (hostdir / "fs" / f"{flat}.work").mkdir(parents=True)
    etc = hostdir / "fs" / "etc.upper"
    (etc / "hostname").write_text(name + "\n")
    (etc / "hosts").write_text(etc_hosts(hosts))
    (etc / "resolv.conf").write_text("nameserver 127.0.0.1\noptions timeout:1 attempts:1\n")
    home = hostdir / "root"
    shutil.copytree("/etc/skel", home, symlinks=True)
    home.chmod(0o700)
    ssh_dir = home / ".ssh"
    ssh_dir.mkdir(mode=0o700)
    (ssh_dir / "authorized_keys").write_text(pubkey)
    (ssh_dir / "authorized_keys").chmod(0o600)
    fs = hostdir / "fs"
    install_systemd_standin(fs / "usr-local.upper", fs / "usr-bin.upper")
    for tool in HIDDEN:
        if os.path.lexists(f"/usr/bin/{tool}"):
            whiteout(fs / "usr-bin.upper" / tool)
    # The machine's SysV services (databases, brokers) are not the host's; service_facts would
    # also spend seconds asking each script for its status.
    if Path("/etc/init.d").is_dir():
        (etc / "init.d").mkdir()
        for script in Path("/etc/init.d").iterdir():
            whiteout(etc / "init.d" / script.name)
    keygen(hostdir / "ssh_host_ed25519_key", f"root@{name}")
    (hostdir / "init").write_text(INIT_PROGRAM)
    (hostdir / "sshd_config").write_text(
        SSHD_CONFIG.format(host_key=hostdir / "ssh_host_ed25519_key")
    )


def whiteout(path: Path) -> None:
    """An overlayfs whiteout (a 0/0 character device): hides the lower file at path."""
    os.mknod(path, stat.S_IFCHR | 0o000, os.makedev(0, 0))


def sshd_argv(hostdir: Path) -> list[str]:
    """How the host's init runs sshd (foreground, logging to stderr)."""
    return ["/usr/sbin/sshd", "-D", "-e", "-f", str(hostdir / "sshd_config")]


def boot_script(hostdir: Path, name: str) -> str:
    """Shell script run as the host's first process: mounts the host view, then becomes init."""
    q = shlex.quote
    lines = ["set -e", f"hostname {q(name)}"]
    for layer in OVERLAYS:
        flat = layer.replace("/", "-")
        upper, work = hostdir / "fs" / f"{flat}.upper", hostdir / "fs" / f"{flat}.work"
        opts = f"lowerdir=/{layer},upperdir={upper},workdir={work}"
        lines.append(f"mount -t overlay overlay -o {q(opts)} /{layer}")
    lines += [
        f"mount --bind {q(str(hostdir / 'root'))} /root",
        "mount -t tmpfs -o mode=0755,size=256m tmpfs /run",
        "mkdir -p /run/sshd /run/lock /run/systemd/system",
        "mount -t tmpfs -o mode=1777,size=1g tmpfs /tmp",
        "cd /",
        f"exec python3 {q(str(hostdir / 'init'))}",
    ]
    return "\n".join(lines) + "\n"
