"""Per-unit supervisor of the stand-in systemd: runs one service like systemd's manager would.

Started detached by ``systemctl start``; it owns the unit's notify socket (Type=notify), records
state for ``systemctl show``/``is-active``, restarts the service per Restart=, and stops it on
SIGTERM (sent by ``systemctl stop``) honouring KillMode=.
"""

from __future__ import annotations

import contextlib
import os
import select
import shlex
import signal
import socket
import subprocess
import sys
import time

import units

STOP_TIMEOUT = 20.0


class Supervisor:
    """Runs unit name until stopped or, without Restart=, until its process ends."""

    def __init__(self, name: str) -> None:
        self.unit = units.Unit(name)
        self.name = self.unit.name
        self.stopping = False
        self.proc: subprocess.Popen[bytes] | None = None
        self.journal = units.state_path(self.name, "log").open("ab", buffering=0)
        signal.signal(signal.SIGTERM, self._on_term)
        sock_path = units.state_path(self.name, "notify")
        with contextlib.suppress(FileNotFoundError):
            sock_path.unlink()
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(sock_path))
        self.notify_path = str(sock_path)
        self.env = self.environment()

    def environment(self) -> dict[str, str]:
        """EnvironmentFile= is read at each spawn (systemd.exec(5)), so an edited
        /etc/default file counts from the next (re)start, even an automatic one."""
        env = units.environment(self.unit)
        env["NOTIFY_SOCKET"] = self.notify_path
        return env

    def _on_term(self, *_: object) -> None:
        self.stopping = True

    def log(self, msg: str) -> None:
        stamp = time.strftime("%b %d %H:%M:%S")
        self.journal.write(f"{stamp} {os.uname().nodename} systemd[1]: {msg}\n".encode())

    def run(self) -> int:
        svc = self.unit
        restart = svc.get("Service", "Restart", "no")
        delay = units.parse_seconds(svc.get("Service", "RestartSec"), 0.1) or 0.1
        nrestarts = 0
        while True:
            rc = self.run_once()
            if self.stopping:
                return self.finish()
            failed = rc != 0
            units.write_state(self.name, result="exit-code" if failed else "success", status=rc)
            if restart == "always" or (restart == "on-failure" and failed):
                nrestarts += 1
                units.write_state(
                    self.name,
                    active="activating",
                    sub="auto-restart",
                    main_pid=0,
                    nrestarts=nrestarts,
                )
                self.log(f"{self.name}: Scheduled restart job, restart counter is at {nrestarts}.")
                end = time.monotonic() + delay
                while time.monotonic() < end and not self.stopping:
                    time.sleep(0.05)
                if self.stopping:
                    return self.finish()
                continue
            units.write_state(
                self.name,
                active="failed" if failed else "inactive",
                sub="failed" if failed else "dead",
                main_pid=0,
            )
            return rc

    def run_once(self) -> int:
        """Start the service once and wait for it to end; return its exit status."""
        units.write_state(self.name, active="activating", sub="start-pre", main_pid=0)
        self.env = self.environment()
        self.log(f"Starting {self.unit.get('Unit', 'Description', self.name)}...")
        for spec in self.unit.all("Service", "ExecStartPre"):
            rc = self.exec_aux(spec)
            if rc != 0 and self.stopping:
                return rc
            if rc != 0:
                self.start_failed()
                return rc
        spec = self.unit.get("Service", "ExecStart")
        self.proc = subprocess.Popen(
            shlex.split(spec.lstrip("-@+!")),
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=self.journal,
            stderr=self.journal,
            start_new_session=True,
            cwd="/",
        )
        stype = self.unit.get("Service", "Type", "simple")
        units.write_state(self.name, active="activating", sub="start", main_pid=self.proc.pid)
        if stype != "notify":
            self.ready()
        ready = stype != "notify"
        while True:
            rlist, _, _ = select.select([self.sock], [], [], 0.1)
            if rlist:
                msg = self.sock.recv(4096).decode(errors="replace")
                if "READY=1" in msg.split("\n") and not ready:
                    ready = True
                    self.ready()
                for line in msg.split("\n"):
                    if line.startswith("STATUS="):
                        units.write_state(self.name, status_text=line[7:])
            status = self.proc.poll()
            if status is not None:
                if not ready and not self.stopping:
                    self.start_failed()
                self.log(f"{self.name}: Main process exited, status={status}")
                return status
            if self.stopping:
                self.kill_main()

    def ready(self) -> None:
        units.write_state(self.name, active="active", sub="running")
        self.log(f"Started {self.unit.get('Unit', 'Description', self.name)}.")

    def start_failed(self) -> None:
        failures = int(units.read_state(self.name)["start_failures"]) + 1
        units.write_state(self.name, start_failures=failures)
        self.log(f"Failed to start {self.unit.get('Unit', 'Description', self.name)}.")

    def exec_aux(self, spec: str) -> int:
        """Run an ExecStartPre/ExecStopPost line; a leading '-' makes failure harmless."""
        ignore = spec.startswith("-")
        try:
            rc = subprocess.run(
                shlex.split(spec.lstrip("-@+!")),
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=self.journal,
                stderr=self.journal,
                check=False,
                timeout=60,
            ).returncode
        except (OSError, subprocess.TimeoutExpired) as exc:
            self.log(f"{spec}: {exc}")
            rc = 1
        return 0 if ignore else rc

    def kill_main(self) -> None:
        """SIGTERM the main process (its group unless KillMode=process), SIGKILL on timeout."""
        if self.proc is None or self.proc.poll() is not None:
            return
        units.write_state(self.name, active="deactivating", sub="stop-sigterm")
        mode = self.unit.get("Service", "KillMode", "control-group")
        target = self.proc.pid

        def send(sig: int) -> None:
            with contextlib.suppress(ProcessLookupError):
                if mode == "process":
                    os.kill(target, sig)
                else:
                    os.killpg(target, sig)

        send(signal.SIGTERM)
        try:
            self.proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            send(signal.SIGKILL)
            self.proc.wait()

    def finish(self) -> int:
        self.kill_main()
        for spec in self.unit.all("Service", "ExecStopPost"):
            self.exec_aux(spec)
        self.log(f"Stopped {self.unit.get('Unit', 'Description', self.name)}.")
        units.write_state(self.name, active="inactive", sub="dead", main_pid=0, supervisor=0)
        return 0


def main() -> int:
    """Entry point: ``supervisor.py UNIT``."""
    return Supervisor(sys.argv[1]).run()


if __name__ == "__main__":
    sys.exit(main())
