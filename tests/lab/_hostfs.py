"""Per-host files of a lab host: overlay layers, root's home, sshd config, boot script.

A host's directory (``<lab>/<host>/``) holds everything that differs between hosts; the boot
script mounts it over the shared root filesystem inside the host's own mount namespace, so each
SSH session on that host sees its own ``/etc``, ``/var/lib``, ``/usr/local``, ``/root``, ``/run``
and ``/tmp``.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from tests.lab.standin import install_systemd_standin

OVERLAYS = ("etc", "var/lib", "usr/local")

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
"""

# PID 1 of the host's PID namespace: reaps orphans (daemons double-fork) and calls itself
# "systemd" so that fact gathering reports service_mgr=systemd like on a real host.
INIT_PROGRAM = """\
import os, signal, time
with open('/proc/self/comm', 'w') as f:
    f.write('systemd')
signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
open(os.environ['LAB_READY'], 'w').close()
while True:
    try:
        os.wait()
    except ChildProcessError:
        time.sleep(0.5)
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
    install_systemd_standin(hostdir / "fs" / "usr-local.upper")
    keygen(hostdir / "ssh_host_ed25519_key", f"root@{name}")
    (hostdir / "sshd_config").write_text(
        SSHD_CONFIG.format(host_key=hostdir / "ssh_host_ed25519_key")
    )


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
        # A real systemctl/journalctl in /usr/bin must not shadow the stand-ins by full path.
        "for t in systemctl journalctl; do",
        "  if [ -e /usr/bin/$t ]; then mount --bind /usr/local/bin/$t /usr/bin/$t; fi",
        "done",
        "cd /",
        f"exec python3 -c {q(INIT_PROGRAM)}",
    ]
    return "\n".join(lines) + "\n"
