"""SSH settings of a run: connections shared within the run only, host keys pinned.

A run's tasks share one connection per host (ControlMaster), and that connection belongs to the
run: the socket's name carries the run's tag, so no other run — of another cluster, with another
key, or the next job of the same cluster — ever rides on it without authenticating, and ending
the run's processes (:mod:`.procs`; the master carries the run's tag too) closes its sessions
on the nodes. ControlPersist only bounds how long a master the run could not end would linger.
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


def short_hash(value: str) -> str:
    """A short, stable name for ``value`` (not reversible to it)."""
    return hashlib.sha256(value.encode()).hexdigest()[:16]


#: Longest Unix socket path on Linux (108 bytes with the terminating NUL).
MAX_SOCKET_PATH = 107
#: ssh binds the master's socket under a temporary name first: the path plus ``.`` and 16
#: random characters (OpenSSH mux.c).
BIND_SUFFIX = 17


def control_path(cluster_id: int, run_tag: str) -> str:
    """The ControlPath of the connections of the run tagged ``run_tag`` (of ``cluster_id``).

    Raises ControlDirError if the socket path would be too long (a long ``TMPDIR``).
    """
    path = f"{control_dir()}/c{cluster_id}-{short_hash(run_tag)}-%C"
    # %C expands to 40 hex digits
    if len(path.encode()) - 2 + 40 + BIND_SUFFIX > MAX_SOCKET_PATH:
        raise ControlDirError(f"SSH control socket path {path} is too long: shorten TMPDIR")
    return path


def master_title(cluster_id: int, run_tag: str) -> str:
    """How the run's ControlPersist masters name themselves (``ssh: <ControlPath> [mux]``).

    ssh's setproctitle overwrites the master's environment, so it no longer carries the run's
    tag; :func:`~rke2_manager.execution.procs.end_run` finds it by this title instead.
    """
    return "ssh: " + control_path(cluster_id, run_tag).removesuffix("%C")


def ssh_env(
    cluster_id: int, run_tag: str, known_hosts: Path, host_key_checking: bool
) -> dict[str, str]:
    """Ansible's SSH settings for a run (environment variables; nothing secret in them).

    With ``host_key_checking``, SSH reads and extends only the run's ``known_hosts`` (built from
    the pinned keys); each host's ``StrictHostKeyChecking`` comes from the inventory
    (``yes`` when pinned, ``accept-new`` otherwise). Without it (labs), nothing is checked.
    """
    args = [
        "-o ControlMaster=auto",
        f"-o ControlPersist={CONTROL_PERSIST}",
        "-o " + shlex.quote(f'ControlPath="{control_path(cluster_id, run_tag)}"'),
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
