"""Lock-contention benchmark: many clients ask for an operation on one cluster at once.

Starts a real server (``uvicorn --workers N`` on PostgreSQL, or one worker on SQLite) in a fresh
database, creates one cluster, then lets ``--clients`` threads fire ``POST /api/jobs/install/{id}``
at it while ``--health-clients`` threads poll ``GET /healthz``. The job worker is disabled, so
the first request takes the lock and keeps it: every later request must take the 409 path (read
the cluster row ``FOR UPDATE``, see it busy, roll back). Prints how many were accepted (must be
exactly 1), how many got 409, anything else, and the p50/p99 latency of the 409 path next to
``/healthz`` under the same load. Timing is reported, never asserted.

    .venv/bin/python bench/lock_contention.py
    .venv/bin/python bench/lock_contention.py --database-url sqlite://    # temp SQLite file
    .venv/bin/python bench/lock_contention.py --clients 100 --requests-per-client 10 --workers 2

Latencies are measured by the client threads (one Python process, so they include some client
side GIL wait); compare the two paths with each other rather than reading them as absolutes.
Exit status: 0 if exactly one request was accepted and every other answer was the expected 409,
1 otherwise, 2 if the server could not be set up.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL, make_url

DEFAULT_DATABASE_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
BUSY_PREFIX = "Cluster is busy with operation 'install'"


# --------------------------------------------------------------------------- database


@dataclass
class BenchDatabase:
    """Where the server's data lives for this run, and how to clean it up."""

    url: str  # what the server gets as RKE2M_DATABASE_URL
    label: str
    admin_url: URL | None = None  # PostgreSQL only: where CREATE/DROP DATABASE run
    name: str | None = None

    @property
    def is_sqlite(self) -> bool:
        return self.admin_url is None

    def drop(self) -> None:
        if self.admin_url is None or self.name is None:
            return
        engine = create_engine(self.admin_url, isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)'))
        finally:
            engine.dispose()


def prepare_database(raw_url: str, tmp: Path) -> BenchDatabase:
    """A fresh database on the PostgreSQL server, or a fresh (or the named) SQLite file.

    A database rather than a schema: the schema would have to be selected with
    ``?options=-csearch_path%3D...``, and ``rke2_manager.migrate`` hands the URL to Alembic's
    ConfigParser, which rejects any ``%`` in it.
    """
    url = make_url(raw_url)
    backend = url.get_backend_name()
    if backend == "sqlite":
        if not url.database or url.database == ":memory:":
            path = tmp / "bench.db"
            return BenchDatabase(url=f"sqlite:///{path}", label=f"SQLite (temp file {path})")
        return BenchDatabase(
            url=url.render_as_string(hide_password=False), label=f"SQLite ({url.database})"
        )
    if backend != "postgresql":
        raise SystemExit(f"unsupported database URL {raw_url!r}: use postgresql:// or sqlite://")
    admin = url.set(drivername="postgresql+psycopg")
    name = f"rke2m_bench_{secrets.token_hex(4)}"
    engine = create_engine(admin, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        engine.dispose()
    bench = admin.set(database=name)
    return BenchDatabase(
        url=bench.render_as_string(hide_password=False),
        label=f"PostgreSQL {bench.render_as_string(hide_password=True)} (fresh database)",
        admin_url=admin,
        name=name,
    )


class BackendSampler(threading.Thread):
    """Samples pg_stat_activity for the bench database while the load runs (peak connections)."""

    def __init__(self, admin_url: URL, interval: float = 0.2) -> None:
        super().__init__(daemon=True)
        self.engine = create_engine(admin_url, isolation_level="AUTOCOMMIT", pool_size=1)
        self.interval = interval
        self.stop_event = threading.Event()
        self.samples: list[tuple[int, int]] = []  # (backends, waiting on a lock)

    def run(self) -> None:
        query = text(
            "SELECT count(*), count(*) FILTER (WHERE wait_event_type = 'Lock') "
            "FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        try:
            with self.engine.connect() as conn:
                while not self.stop_event.is_set():
                    total, waiting = conn.execute(query).one()
                    self.samples.append((int(total), int(waiting)))
                    self.stop_event.wait(self.interval)
        except Exception as exc:  # a sampler failure must not spoil the run
            print(f"  (backend sampler stopped: {exc})", file=sys.stderr)
        finally:
            self.engine.dispose()

    def stop(self) -> None:
        self.stop_event.set()
        self.join(timeout=5)


# --------------------------------------------------------------------------- server


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_env(db: BenchDatabase, data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RKE2M_")}
    env.update(
        RKE2M_DATABASE_URL=db.url,
        RKE2M_WORKER_ENABLED="false",  # nobody ever releases the lock: every loser gets a 409
        RKE2M_DATA_DIR=str(data_dir),
        RKE2M_SECRET_KEY="bench",
        RKE2M_ALLOWED_NETWORKS="127.0.0.0/8",
        RKE2M_PROBE_POLICY="off",
    )
    return env


def run_migrations(env: dict[str, str], cwd: Path) -> float:
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "rke2_manager", "migrate"],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout + proc.stderr)
        raise SystemExit(2)
    return time.perf_counter() - started


class Server:
    """``uvicorn rke2_manager.api.app:create_app --factory`` in its own process group."""

    def __init__(self, env: dict[str, str], cwd: Path, port: int, workers: int) -> None:
        self.port = port
        self.workers = workers
        self.log_path = cwd / "server.log"
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "rke2_manager.api.app:create_app",
                "--factory",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--workers",
                str(workers),
                "--no-access-log",
                "--log-level",
                "info",
            ],
            env=env,
            cwd=cwd,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.base_url = f"http://127.0.0.1:{port}"

    def log_text(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = 45.0) -> float:
        """Wait for /healthz and for every worker's 'Application startup complete'."""
        started = time.perf_counter()
        deadline = started + timeout
        healthy = False
        with httpx.Client(base_url=self.base_url, timeout=2.0) as client:
            while time.perf_counter() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"server exited with {self.proc.returncode}")
                if not healthy:
                    with contextlib.suppress(httpx.HTTPError):
                        healthy = client.get("/healthz").status_code == 200
                if healthy and self.log_text().count("Application startup complete") >= (
                    self.workers
                ):
                    return time.perf_counter() - started
                time.sleep(0.1)
        if healthy:  # some worker answers; carry on, but say so
            print("  warning: not every worker reported startup in time", file=sys.stderr)
            return time.perf_counter() - started
        raise RuntimeError("server did not become healthy in time")

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)
        self._log.close()


# --------------------------------------------------------------------------- load


@dataclass
class Sample:
    kind: str  # "install" or "healthz"
    outcome: str  # "202", "409", "500", ..., or "error:<ExceptionName>"
    seconds: float
    job_id: int | None = None  # install: the accepted job, or the job the 409 names
    detail_ok: bool = True


@dataclass
class Results:
    samples: list[Sample] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def extend(self, items: list[Sample]) -> None:
        with self.lock:
            self.samples.extend(items)


def install_client(
    base_url: str, cluster_id: int, count: int, start: threading.Barrier, results: Results
) -> None:
    mine: list[Sample] = []
    with httpx.Client(base_url=base_url, timeout=30.0) as client:
        with contextlib.suppress(httpx.HTTPError):
            client.get("/healthz")  # open the keep-alive connection before the clock starts
        start.wait()
        for _ in range(count):
            t0 = time.perf_counter()
            try:
                resp = client.post(f"/api/jobs/install/{cluster_id}")
            except httpx.HTTPError as exc:
                mine.append(
                    Sample("install", f"error:{type(exc).__name__}", time.perf_counter() - t0)
                )
                continue
            elapsed = time.perf_counter() - t0
            sample = Sample("install", str(resp.status_code), elapsed)
            with contextlib.suppress(ValueError):
                body = resp.json()
                if resp.status_code == 202:
                    sample.job_id = body.get("job_id")
                elif resp.status_code == 409:
                    sample.job_id = body.get("job_id")
                    sample.detail_ok = str(body.get("detail", "")).startswith(BUSY_PREFIX)
            mine.append(sample)
    results.extend(mine)


def health_client(
    base_url: str,
    interval: float,
    start: threading.Barrier,
    done: threading.Event,
    results: Results,
) -> None:
    mine: list[Sample] = []
    with httpx.Client(base_url=base_url, timeout=30.0) as client:
        with contextlib.suppress(httpx.HTTPError):
            client.get("/healthz")
        start.wait()
        while not done.is_set():
            t0 = time.perf_counter()
            try:
                resp = client.get("/healthz")
                outcome = str(resp.status_code)
            except httpx.HTTPError as exc:
                outcome = f"error:{type(exc).__name__}"
            mine.append(Sample("healthz", outcome, time.perf_counter() - t0))
            if interval:
                done.wait(interval)
    results.extend(mine)


def create_cluster(base_url: str) -> int:
    body = {
        "name": f"bench-{secrets.token_hex(3)}",
        "nodes": [
            {"hostname": "m1", "ip": "127.0.0.11", "role": "server"},
            {"hostname": "m2", "ip": "127.0.0.12", "role": "server"},
            {"hostname": "m3", "ip": "127.0.0.13", "role": "server"},
            {"hostname": "w1", "ip": "127.0.0.21", "role": "agent"},
        ],
    }
    resp = httpx.post(f"{base_url}/api/clusters", json=body, timeout=30.0)
    if resp.status_code != 201:
        raise RuntimeError(f"creating the cluster: {resp.status_code} {resp.text}")
    return int(resp.json()["id"])


# --------------------------------------------------------------------------- report


def percentile(sorted_values: list[float], pct: float) -> float:
    """Nearest-rank percentile of an already sorted list."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(pct / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def ms(seconds: float) -> str:
    return "-" if math.isnan(seconds) else f"{seconds * 1000:8.2f}"


def ratio(a: float, b: float) -> str:
    if math.isnan(a) or math.isnan(b) or b == 0:
        return "-"
    return f"{a / b:.1f}x"


def error_lines(log: str, limit: int = 8) -> tuple[int, int, list[str]]:
    """(tracebacks, ERROR lines, a few distinct interesting lines) from the server log."""
    lines = log.splitlines()
    tracebacks = sum(1 for line in lines if line.startswith("Traceback"))
    errors = [
        line
        for line in lines
        if "ERROR" in line or "Exception" in line or line.split(":", 1)[0].endswith("Error")
    ]
    distinct: list[str] = []
    for line in errors:
        short = line.strip()[:200]
        if short not in distinct:
            distinct.append(short)
        if len(distinct) >= limit:
            break
    return tracebacks, len(errors), distinct


def report(
    results: Results,
    wall: float,
    accepted_job_from_api: int | None,
    jobs_in_db: int | None,
    sampler: BackendSampler | None,
    log: str,
) -> int:
    installs = [s for s in results.samples if s.kind == "install"]
    health = [s for s in results.samples if s.kind == "healthz"]
    accepted = [s for s in installs if s.outcome == "202"]
    busy = [s for s in installs if s.outcome == "409"]
    other = [s for s in installs if s.outcome not in ("202", "409")]
    health_ok = sorted(s.seconds for s in health if s.outcome == "200")
    health_bad = [s for s in health if s.outcome != "200"]
    busy_t = sorted(s.seconds for s in busy)

    winner = accepted[0].job_id if len(accepted) == 1 else None
    wrong_job = sum(1 for s in busy if winner is not None and s.job_id != winner)
    bad_detail = sum(1 for s in busy if not s.detail_ok)

    print()
    print("results")
    print(
        f"  install requests      {len(installs):7d}   in {wall:6.2f} s  "
        f"= {len(installs) / wall:7.1f} req/s"
    )
    print(
        f"  healthz requests      {len(health):7d}   "
        f"= {len(health) / wall:7.1f} req/s   (total {len(results.samples) / wall:.1f} req/s)"
    )
    print(
        f"  accepted (202)        {len(accepted):7d}   (must be exactly 1)"
        + (f"  job {winner}" if winner is not None else "")
    )
    print(f"  busy (409)            {len(busy):7d}")
    print(
        f"  other                 {len(other):7d}"
        + (f"   {dict(Counter(s.outcome for s in other))}" if other else "")
    )
    if health_bad:
        print(
            f"  healthz not 200       {len(health_bad):7d}   "
            f"{dict(Counter(s.outcome for s in health_bad))}"
        )
    if bad_detail or wrong_job:
        print(f"  409 bodies wrong      {bad_detail:7d} bad detail, {wrong_job} naming another job")
    print()
    print("  latency (ms)              p50       p99       max")
    print(
        f"  409 path             {ms(percentile(busy_t, 50))}  {ms(percentile(busy_t, 99))}"
        f"  {ms(busy_t[-1] if busy_t else math.nan)}"
    )
    print(
        f"  GET /healthz         {ms(percentile(health_ok, 50))}  "
        f"{ms(percentile(health_ok, 99))}  {ms(health_ok[-1] if health_ok else math.nan)}"
    )
    if accepted:
        print(f"  the one 202          {ms(accepted[0].seconds)}")
    print(
        f"  ratio 409/healthz   {ratio(percentile(busy_t, 50), percentile(health_ok, 50)):>9}"
        f" {ratio(percentile(busy_t, 99), percentile(health_ok, 99)):>9}"
    )
    print()
    print("checks")
    print(
        f"  jobs for the cluster in the database: {jobs_in_db}   "
        f"lock held by job: {accepted_job_from_api}"
    )
    if sampler is not None and sampler.samples:
        peak = max(total for total, _ in sampler.samples)
        peak_wait = max(waiting for _, waiting in sampler.samples)
        print(
            f"  PostgreSQL backends on the database: peak {peak}, "
            f"peak waiting on a lock {peak_wait} ({len(sampler.samples)} samples)"
        )
    tracebacks, n_errors, distinct = error_lines(log)
    started = log.count("Started server process")
    died = sum(1 for line in log.splitlines() if "died" in line or "Killed" in line)
    print(
        f"  server log: {tracebacks} tracebacks, {n_errors} error lines, "
        f"{started} worker processes started, {died} reported dead"
    )
    for line in distinct:
        print(f"    {line}")

    ok = (
        len(accepted) == 1
        and not other
        and not bad_detail
        and not wrong_job
        and jobs_in_db in (None, 1)
        and accepted_job_from_api in (None, winner)
    )
    print()
    print(
        "verdict: "
        + ("OK (exactly one accepted, every loser got the 409)" if ok else "PROBLEM (see above)")
    )
    return 0 if ok else 1


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", type=int, default=50, help="concurrent install clients")
    parser.add_argument("--requests-per-client", type=int, default=20)
    parser.add_argument(
        "--health-clients", type=int, default=4, help="threads polling GET /healthz during the load"
    )
    parser.add_argument(
        "--health-interval",
        type=float,
        default=0.01,
        help="pause between one health client's requests, seconds",
    )
    parser.add_argument(
        "--database-url",
        default=DEFAULT_DATABASE_URL,
        help="postgresql[+psycopg]://... (a fresh database is made on that "
        "server) or sqlite:// (a temp file) or sqlite:///path",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="uvicorn workers (default 4 on PostgreSQL, 1 on SQLite)",
    )
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    args = parser.parse_args(argv)
    if args.clients < 1 or args.requests_per_client < 1 or args.health_clients < 0:
        parser.error("--clients and --requests-per-client must be >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="rke2m-bench-") as tmp_name:
        tmp = Path(tmp_name)
        db = prepare_database(args.database_url, tmp)
        workers = args.workers or (1 if db.is_sqlite else 4)
        port = args.port or free_port()
        env = server_env(db, tmp / "data")
        server: Server | None = None
        sampler: BackendSampler | None = None
        try:
            print(f"database   {db.label}")
            print(f"server     uvicorn, {workers} worker(s), 127.0.0.1:{port}, job worker off")
            print(
                f"load       {args.clients} clients x {args.requests_per_client} install "
                f"requests, {args.health_clients} /healthz clients "
                f"(pause {args.health_interval * 1000:.0f} ms); {os.cpu_count()} CPUs"
            )
            print(f"migrate    {run_migrations(env, tmp):.2f} s")
            server = Server(env, tmp, port, workers)
            try:
                print(f"startup    {server.wait_ready():.2f} s")
                cluster_id = create_cluster(server.base_url)
            except (RuntimeError, httpx.HTTPError) as exc:
                print(f"server setup failed: {exc}", file=sys.stderr)
                sys.stderr.write(server.log_text()[-4000:])
                return 2
            print(f"cluster    {cluster_id}")

            results = Results()
            start = threading.Barrier(args.clients + args.health_clients + 1)
            done = threading.Event()
            installers = [
                threading.Thread(
                    target=install_client,
                    daemon=True,
                    args=(server.base_url, cluster_id, args.requests_per_client, start, results),
                )
                for _ in range(args.clients)
            ]
            pollers = [
                threading.Thread(
                    target=health_client,
                    daemon=True,
                    args=(server.base_url, args.health_interval, start, done, results),
                )
                for _ in range(args.health_clients)
            ]
            for thread in installers + pollers:
                thread.start()
            if db.admin_url is not None:
                sampler = BackendSampler(make_url(db.url))
                sampler.start()
            start.wait(timeout=60)
            t0 = time.perf_counter()
            for thread in installers:
                thread.join()
            wall = time.perf_counter() - t0
            done.set()
            for thread in pollers:
                thread.join()
            if sampler is not None:
                sampler.stop()

            jobs_in_db: int | None = None
            lock_job: int | None = None
            with httpx.Client(base_url=server.base_url, timeout=30.0) as client:
                resp = client.get("/api/jobs", params={"cluster_id": cluster_id})
                if resp.status_code == 200:
                    jobs_in_db = len(resp.json())
                resp = client.get(f"/api/clusters/{cluster_id}")
                if resp.status_code == 200:
                    lock_job = resp.json().get("current_job_id")
            return report(results, wall, lock_job, jobs_in_db, sampler, server.log_text())
        finally:
            if sampler is not None:
                sampler.stop()
            if server is not None:
                server.stop()
            db.drop()


if __name__ == "__main__":
    sys.exit(main())
