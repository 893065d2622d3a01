"""Stand-in ``systemctl`` for lab hosts, which have no systemd (host side, stdlib only).

Implements the verbs the RKE2 playbooks and Ansible's systemd modules use, with systemd's
output shapes and exit codes. Services run under a detached supervisor (supervisor.py).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import units
from units import Unit
from views import cmd_list, cmd_show, cmd_status

HERE = Path(__file__).resolve().parent
#: The environment of the stand-in's service manager (PID 1's, as on a real host): whoever runs
#: `systemctl start` passes none of theirs on (units.environment() builds the service's own).
MANAGER_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LANG": "C.UTF-8",
}
FLAGS_WITH_VALUE = {
    "-p",
    "--property",
    "-t",
    "--type",
    "--state",
    "-s",
    "--signal",
    "-n",
    "--lines",
    "-o",
    "--output",
    "-H",
    "--host",
    "-M",
    "--machine",
}


def cmd_is_active(names: list[str], quiet: bool, want: tuple[str, ...] = ("active",)) -> int:
    rc = 3 if want == ("active",) else 1
    for name in names:
        active = (
            units.read_state(units.normalize(name))["active"] if Unit(name).path else "inactive"
        )
        if not quiet:
            print(active)
        if active in want:
            rc = 0
    return rc


def cmd_is_enabled(names: list[str], quiet: bool) -> int:
    rc = 1
    for name in names:
        unit = Unit(name)
        if unit.path is None:
            print(
                f"Failed to get unit file state for {unit.name}: No such file or directory",
                file=sys.stderr,
            )
            continue
        state = unit.file_state()
        if not quiet:
            print(state)
        if state in units.ENABLED_STATES:
            rc = 0
    return rc


def cmd_enable(names: list[str], enable: bool) -> int:
    for name in names:
        unit = Unit(name)
        if unit.path is None:
            print(
                f"Failed to {'enable' if enable else 'disable'} unit: "
                f"Unit file {unit.name} does not exist.",
                file=sys.stderr,
            )
            return 1
        for target in unit.wanted_by():
            link = units.ETC / f"{target}.wants" / unit.name
            if enable and not link.is_symlink():
                link.parent.mkdir(parents=True, exist_ok=True)
                link.symlink_to(unit.path)
                print(f"Created symlink {link} \u2192 {unit.path}.", file=sys.stderr)
            elif not enable and link.is_symlink():
                link.unlink()
                print(f'Removed "{link}".', file=sys.stderr)
    return 0


def cmd_mask(names: list[str], mask: bool) -> int:
    for name in names:
        link = units.ETC / units.normalize(name)
        if mask and not link.exists():
            link.symlink_to("/dev/null")
            print(f"Created symlink {link} \u2192 /dev/null.", file=sys.stderr)
        elif not mask and link.is_symlink() and link.resolve() == Path("/dev/null"):
            link.unlink()
            print(f'Removed "{link}".', file=sys.stderr)
    return 0


def cmd_start(name: str, block: bool) -> int:
    """Start unit name; with block, wait like systemd's start job (TimeoutStartSec=0: forever)."""
    unit = Unit(name)
    if unit.path is None or unit.masked:
        why = "Unit is masked" if unit.masked else f"Unit {unit.name} not found"
        print(f"Failed to start {unit.name}: {why}.", file=sys.stderr)
        return 5
    for other in unit.get("Unit", "Conflicts").split():
        if units.read_state(units.normalize(other))["active"] != "inactive":
            cmd_stop(other)
    with units.unit_lock(unit.name):
        st = units.read_state(unit.name)
        baseline = int(st["start_failures"])
        if st["active"] not in ("active", "activating", "reloading"):
            if st["active"] == "deactivating":
                wait_supervisor_gone(int(st["supervisor"]))
            log = units.state_path(unit.name, "log").open("ab")
            proc = subprocess.Popen(
                [sys.executable, str(HERE / "supervisor.py"), unit.name],
                cwd="/",
                # systemd's manager, not the caller, runs a service: nothing of the caller's
                # environment reaches it (systemd.exec(5), "Environment Variables in Spawned
                # Processes"). Playbooks rely on that: rke2-manager tags every process of a
                # step with RKE2M_FENCE and ends stale ones, which RKE2 must never be.
                env=MANAGER_ENV,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
            units.write_state(
                unit.name, active="activating", sub="start-pre", supervisor=proc.pid, main_pid=0
            )
    if not block:
        return 0
    timeout = units.parse_seconds(unit.get("Service", "TimeoutStartSec"), 90.0)
    deadline = time.monotonic() + timeout if timeout else None
    while True:
        st = units.read_state(unit.name)
        if st["active"] == "active":
            return 0
        if int(st["start_failures"]) > baseline or st["active"] in ("failed", "inactive"):
            break
        if deadline and time.monotonic() > deadline:
            break
        time.sleep(0.05)
    print(
        f"Job for {unit.name} failed because the control process exited with error code.\n"
        f'See "systemctl status {unit.name}" and "journalctl -xeu {unit.name}" for details.',
        file=sys.stderr,
    )
    return 1


def wait_supervisor_gone(pid: int) -> None:
    while units.pid_alive(pid):
        time.sleep(0.05)


def cmd_stop(name: str) -> int:
    unit = Unit(name)
    st = units.read_state(unit.name)
    if unit.path is None and st["supervisor"] == 0:
        print(f"Failed to stop {unit.name}: Unit {unit.name} not loaded.", file=sys.stderr)
        return 5
    pid = int(st["supervisor"])
    if units.pid_alive(pid):
        os.kill(pid, signal.SIGTERM)
        wait_supervisor_gone(pid)
    if units.read_state(unit.name)["active"] != "failed":
        units.clear_state(unit.name)
    return 0


def parse_args(argv: list[str]) -> tuple[list[str], dict[str, list[str]]]:
    """Split argv into positional words and options (``--x=y``, ``-p X``, ``-q``)."""
    words: list[str] = []
    opts: dict[str, list[str]] = {}
    it = iter(argv)
    for arg in it:
        if arg.startswith("-") and arg != "-":
            key, eq, val = arg.partition("=")
            if not eq and key in FLAGS_WITH_VALUE:
                val = next(it, "")
            name = {
                "-p": "property",
                "-q": "quiet",
                "-a": "all",
                "-l": "full",
                "-t": "type",
                "-s": "signal",
            }.get(key, key.lstrip("-"))
            opts.setdefault(name, []).append(val)
        else:
            words.append(arg)
    return words, opts


def main(argv: list[str]) -> int:
    words, opts = parse_args(argv)
    if "version" in opts:
        print("systemd 252 (252-standin)\n+PAM -SELINUX (rke2-manager lab stand-in)")
        return 0
    verb, names = (words[0], words[1:]) if words else ("list-units", [])
    quiet = "quiet" in opts
    block = "no-block" not in opts
    simple: dict[str, Callable[[], int]] = {
        "show": lambda: cmd_show(names, opts),
        "status": lambda: cmd_status(names),
        "is-active": lambda: cmd_is_active(names, quiet),
        "is-failed": lambda: cmd_is_active(names, quiet, ("failed",)),
        "is-enabled": lambda: cmd_is_enabled(names, quiet),
        "mask": lambda: cmd_mask(names, True),
        "unmask": lambda: cmd_mask(names, False),
        "list-unit-files": lambda: cmd_list(verb, names, opts),
        "list-units": lambda: cmd_list(verb, names, opts),
        "daemon-reload": lambda: 0,
        "daemon-reexec": lambda: 0,
    }
    if verb in simple:
        return simple[verb]()
    if verb in ("enable", "disable"):
        rc = cmd_enable(names, verb == "enable")
        if rc == 0 and "now" in opts:
            for n in names:
                rc = rc or (cmd_start(n, block) if verb == "enable" else cmd_stop(n))
        return rc
    if verb == "reset-failed":
        for unit in [Unit(n) for n in names] or units.known_units():
            if units.read_state(unit.name)["active"] == "failed":
                units.clear_state(unit.name)
        return 0
    if verb in ("start", "stop", "restart", "try-restart", "reload-or-restart"):
        rc = 0
        for n in names:
            if verb != "start":
                rc = rc or cmd_stop(n)
            if verb != "stop":
                rc = rc or cmd_start(n, block)
        return rc
    print(f"Unknown command verb {verb}.", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
