"""The service as real OS processes (``serve``, ``worker``, ``migrate``) and what tests read back.

Each process gets its own session, so a test can signal it alone (``os.kill``) or with its
whole process group; its output goes to a log file named after it, which a failing test prints.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx

from tests.live import free_port

T = TypeVar("T")
#: Test-only playbooks that run locally and record every run (see record_run.sh there).
STRESS_PLAYBOOKS = Path(__file__).parent / "playbooks_stress"
FINAL = {"succeeded", "failed", "canceled"}
#: The reason a job ends with when the lease reaper finds its lease ran out (docs/lock.md); the
#: documented text, not an import, so these tests do not follow the modules around.
LEASE_EXPIRED = "lock lease expired: worker lost"


def wait_for(predicate: Callable[[], T], timeout: float, what: str, every: float = 0.2) -> T:
    """Poll ``predicate`` until it returns something true; AssertionError after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(every)


def service_env(database_url: str, data_dir: Path, **settings: Any) -> dict[str, str]:
    """The environment of a service process: ``RKE2M_<NAME>`` for each of ``settings``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RKE2M_")}
    env.update(
        RKE2M_DATABASE_URL=database_url,
        RKE2M_DATA_DIR=str(data_dir),
        RKE2M_SECRET_KEY="test-secret-key",
        RKE2M_ALLOWED_NETWORKS="127.0.0.0/8",
        RKE2M_PROBE_POLICY="off",
        RKE2M_PLAYBOOK_DIR=str(STRESS_PLAYBOOKS),
    )
    for name, value in settings.items():
        text = json.dumps(value) if isinstance(value, dict | list) else str(value)
        env[f"RKE2M_{name.upper()}"] = text
    return env


@dataclass
class Service:
    """One ``rke2-manager`` process; ``url`` for ``serve``."""

    name: str
    proc: subprocess.Popen[bytes]
    log: Path
    url: str = ""

    def alive(self) -> bool:
        return self.proc.poll() is None

    def tail(self, lines: int = 40) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return f"--- {self.name} (pid {self.proc.pid}) ---\n" + "\n".join(
            text.splitlines()[-lines:]
        )


def _spawn(name: str, args: list[str], env: dict[str, str], log_dir: Path) -> Service:
    log_dir.mkdir(parents=True, exist_ok=True)
    log = log_dir / f"{name}.log"
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "rke2_manager", *args],
            env=env,
            start_new_session=True,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    return Service(name, proc, log)


def migrate(env: dict[str, str]) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "rke2_manager", "migrate"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def start_api(name: str, env: dict[str, str], log_dir: Path, worker: bool = False) -> Service:
    """``rke2-manager serve`` on a free loopback port (``--no-worker`` unless ``worker``)."""
    port = free_port()
    args = ["serve", "--port", str(port)] + ([] if worker else ["--no-worker"])
    service = _spawn(name, args, env, log_dir)
    service.url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        assert service.alive(), service.tail()
        try:
            return httpx.get(f"{service.url}/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    wait_for(up, 90, f"{name} to answer")
    return service


def start_worker(name: str, env: dict[str, str], log_dir: Path) -> Service:
    service = _spawn(name, ["worker"], env, log_dir)

    def up() -> bool:
        assert service.alive(), service.tail()
        return " started" in service.log.read_text(errors="replace")

    wait_for(up, 90, f"{name} to start")
    return service


def stop(service: Service) -> None:
    """SIGTERM, then SIGKILL to the whole group if it does not end within 20 s."""
    if not service.alive():
        return
    try:
        os.killpg(service.proc.pid, signal.SIGTERM)
        service.proc.wait(20)
    except subprocess.TimeoutExpired:
        os.killpg(service.proc.pid, signal.SIGKILL)
        service.proc.wait(10)
    except ProcessLookupError:
        pass


# --- what the test playbooks recorded -------------------------------------------------------------
@dataclass
class Run:
    """One job's run as its record file shows it: first and last line, whether it ended."""

    job_id: int
    starts: int
    first: float
    last: float
    ended: bool


def read_runs(record_file: Path) -> dict[int, Run]:
    """Runs by job id from one cluster's record file (``start|tick|end JOB TIME ...`` lines)."""
    seen: dict[int, list[tuple[str, float]]] = defaultdict(list)
    if record_file.exists():
        for line in record_file.read_text().splitlines():
            parts = line.split()
            if len(parts) >= 3 and parts[0] in ("start", "tick", "end"):
                seen[int(parts[1])].append((parts[0], float(parts[2])))
    runs = {}
    for job_id, lines in seen.items():
        times = [t for _, t in lines]
        kinds = [k for k, _ in lines]
        runs[job_id] = Run(job_id, kinds.count("start"), min(times), max(times), "end" in kinds)
    return runs


def overlaps(runs: dict[int, Run]) -> list[tuple[Run, Run]]:
    """Pairs of runs of one cluster whose recorded lifetimes intersect (in start order)."""
    ordered = sorted(runs.values(), key=lambda r: r.first)
    found = []
    for i, run in enumerate(ordered):
        for later in ordered[i + 1 :]:
            if later.first <= run.last:
                found.append((run, later))
    return found


def processes_mentioning(text: str) -> list[str]:
    """Command lines of live processes that contain ``text`` (e.g. a run's record directory)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline:
            found.append(f"{entry.name}: {cmdline.strip()}")
    return found
