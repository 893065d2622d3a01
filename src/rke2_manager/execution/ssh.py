"""SSH settings of a run: connections shared per cluster and key, host keys pinned.

ControlPersist keeps a connection open for 60 s after a run; the next run reaching the same
``user@host:port`` reuses it *without authenticating again*. So the socket's name carries the
cluster id and a hash of the private key: a run of another cluster, or with another key, never
rides on a connection it could not have opened itself.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shlex
import stat
import tempfile
from pathlib import Path

#: How long an idle shared connection stays open after a run.
CONTROL_PERSIST = "60s"


class ControlDirError(RuntimeError):
    """The directory for SSH control sockets exists but is not safely ours."""


def control_dir() -> Path:
    """``<tmp>/rke2m-ssh-<uid>``, a 0700 directory we own (created if missing).

    Short on purpose: a Unix socket path must stay under ~104 bytes, and ``%C`` adds 40.
    Raises ControlDirError if it is a symlink, not a directory, or someone else's.
    """
    path = Path(tempfile.gettempdir()) / f"rke2m-ssh-{os.geteuid()}"
    with contextlib.suppress(FileExistsError):
        path.mkdir(mode=0o700)
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
        raise ControlDirError(f"{path} is not a directory owned by uid {os.geteuid()}")
    if stat.S_IMODE(st.st_mode) != 0o700:
        os.chmod(path, 0o700)
    return path


def key_hash(private_key: str | None) -> str:
    """A short, stable name for a private key (not reversible to the key)."""
    return hashlib.sha256((private_key or "").encode()).hexdigest()[:16]


#: Longest Unix socket path on Linux is 107 bytes; ssh adds a temporary suffix while binding.
MAX_SOCKET_PATH = 100


def control_path(cluster_id: int, private_key: str | None) -> str:
    """The ControlPath of the cluster's connections made with ``private_key``.

    Raises ControlDirError if the socket path would be too long (a long ``TMPDIR``).
    """
    path = f"{control_dir()}/c{cluster_id}-{key_hash(private_key)}-%C"
    if len(path.encode()) - 2 + 40 > MAX_SOCKET_PATH:  # %C expands to 40 hex digits
        raise ControlDirError(f"SSH control socket path {path} is too long: shorten TMPDIR")
    return path


def ssh_env(
    cluster_id: int, private_key: str | None, known_hosts: Path, host_key_checking: bool
) -> dict[str, str]:
    """Ansible's SSH settings for a run (environment variables; nothing secret in them).

    With ``host_key_checking``, SSH reads and extends only the run's ``known_hosts`` (built from
    the pinned keys); each host's ``StrictHostKeyChecking`` comes from the inventory
    (``yes`` when pinned, ``accept-new`` otherwise). Without it (labs), nothing is checked.
    """
    args = [
        "-o ControlMaster=auto",
        f"-o ControlPersist={CONTROL_PERSIST}",
        "-o " + shlex.quote(f'ControlPath="{control_path(cluster_id, private_key)}"'),
        "-o ServerAliveInterval=15",
        "-o ServerAliveCountMax=4",
    ]
    if host_key_checking:
        args += [
            # quoted twice: Ansible splits these args like a shell, ssh splits the value
            "-o " + shlex.quote(f'UserKnownHostsFile="{known_hosts}"'),
            "-o GlobalKnownHostsFile=/dev/null",
            "-o HashKnownHosts=no",
            "-o CheckHostIP=no",
        ]
    else:
        args += ["-o UserKnownHostsFile=/dev/null", "-o StrictHostKeyChecking=no"]
    return {
        "ANSIBLE_SSH_ARGS": " ".join(args),
        # False would make Ansible add StrictHostKeyChecking=no before the per-host setting
        "ANSIBLE_HOST_KEY_CHECKING": str(host_key_checking),
    }
