"""rke2-manager's step watcher on a node (docs/fencing.md): ends a step whose SSH channel is gone.

Installed as /var/lib/rke2-manager/bin/rke2m-watch; rke2m-step starts it in the background
of every step: ``python3 -I -S rke2m-watch <pid of the step's shell>``. sshd does not end a
command without a terminal when its channel closes (the manager's ansible-playbook killed,
its SSH connection gone): it only closes its ends of the command's stdout and stderr pipes,
and the command runs on. So this holds the step's stdout and stderr and polls them; when the
reading end is gone (POLLERR/POLLHUP), it ends the step: SIGTERM to the step's process group
and to every process tagged with the step's RKE2M_FENCE, SIGKILL after a few seconds.
It dies with the step's shell (PR_SET_PDEATHSIG), so it never holds the channel open.

Runs on the node's Python (3.8 or newer, as Ansible's modules need), stdlib only.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import sys
import time

DIR = "/var/lib/rke2-manager"
GRACE = 5.0
PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass  # then the poll's timeout notices the step's end


def journal(tag: str, step: str, details: str) -> None:
    cluster, token, job = [*tag.split(":"), "", "", ""][:3]
    line = f"{int(time.time())} job={job} token={token} step={step} cluster={cluster} {details}\n"
    try:
        fd = os.open(f"{DIR}/fence.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)
    except OSError:
        pass


def tagged(tag: str) -> list[int]:
    """The processes whose environment carries exactly this step's tag (ourselves excluded)."""
    needle = f"\0RKE2M_FENCE={tag}\0".encode()
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as fh:
                environ = b"\0" + fh.read() + b"\0"
        except OSError:
            continue
        if needle in environ:
            found.append(int(name))
    return found


def end_step(step: int, group: int, tag: str) -> None:
    """SIGTERM the step's group and tagged processes; SIGKILL what is left after GRACE."""
    os.setpgid(0, 0)  # out of the step's group, which is signalled as a whole
    for sig in (signal.SIGTERM, signal.SIGKILL):
        pids = tagged(tag)
        if sig == signal.SIGKILL and not pids and not alive(step):
            return
        if group > 1:
            with contextlib.suppress(OSError):
                os.killpg(group, sig)
        for pid in pids:
            with contextlib.suppress(OSError):
                os.kill(pid, sig)
        if sig == signal.SIGTERM:
            pids_text = ",".join(map(str, pids)) or "none"
            journal(tag, "kill", f"pid={step} group={group} what=hangup pids={pids_text}")
            end = time.monotonic() + GRACE
            while time.monotonic() < end and (alive(step) or tagged(tag)):
                time.sleep(0.2)


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            stat = fh.read()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2 :].split()[0] != "Z"


def main() -> int:
    step = int(sys.argv[1])
    die_with_parent()
    if os.getppid() != step:
        return 0
    tag = os.environ.get("RKE2M_FENCE", "")
    group = os.getpgid(step)
    poller = select.poll()
    for fd in (1, 2):
        try:
            os.fstat(fd)
        except OSError:
            continue  # closed: nothing to watch there
        poller.register(fd, 0)  # POLLERR and POLLHUP are always reported
    while True:
        events = poller.poll(1000)
        if os.getppid() != step:
            return 0  # the step ended (without PR_SET_PDEATHSIG)
        if any(ev & (select.POLLERR | select.POLLHUP) for _, ev in events):
            break
    # the channel is gone: the step's own end must not take us with it
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, 0)
    except (OSError, AttributeError):
        pass
    journal(tag, "hangup", f"pid={step}")
    end_step(step, group, tag)
    return 0


if __name__ == "__main__":
    sys.exit(main())
