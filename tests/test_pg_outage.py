"""PostgreSQL goes down and comes back while jobs run and requests arrive.

The test runs a PostgreSQL server of its own (``initdb`` into a temporary directory, on a free
port), so stopping it disturbs no other test's database. While it is down every API request
that needs the database answers 503 problem+json saying so, with ``Retry-After`` — never a 500,
never a hang; afterwards new requests work, every job ends and every lock is idle.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import skip_or_fail
from tests.live import free_port
from tests.processes import (
    FINAL,
    LEASE_EXPIRED,
    Service,
    migrate,
    overlaps,
    processes_mentioning,
    read_runs,
    service_env,
    start_api,
    start_worker,
    stop,
    wait_for,
)

OUTAGE = 6.0
"""Seconds the database stays down: shorter than the lease, longer than a renewal period."""
TTL = 20.0
CLIENT_TIMEOUT = 10.0
"""A request that takes longer than this while the database is down counts as a hang."""


class PrivatePostgres:
    """A throwaway PostgreSQL server: its own data directory, port and socket directory."""

    def __init__(self) -> None:
        bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=_version)
        found = bins[-1] if bins else shutil.which("pg_ctl")
        if found is None:
            skip_or_fail("no PostgreSQL server binaries (pg_ctl, initdb) to start a private one")
        self.bin = Path(str(found)).parent
        self.user: str | None = None
        if os.geteuid() == 0:  # the server refuses to run as root
            try:
                pwd.getpwnam("postgres")
            except KeyError:
                skip_or_fail("running as root, and there is no 'postgres' user to run a server")
            self.user = "postgres"
        # under /tmp, not $TMPDIR: the server's user must be able to reach it
        self.dir = Path(tempfile.mkdtemp(prefix="rke2m-pg-", dir="/tmp" if self.user else None))
        if self.user:
            entry = pwd.getpwnam(self.user)
            os.chown(self.dir, entry.pw_uid, entry.pw_gid)
        self.data = self.dir / "data"
        self.port = free_port()
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str, timeout: float = 120) -> None:
        done = subprocess.run(
            [str(self.bin / args[0]), *args[1:]],
            user=self.user,
            cwd=self.dir,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        assert done.returncode == 0, f"{args}: {done.stdout}{done.stderr}"

    def init(self) -> None:
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "--no-sync")

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c max_connections=60"
        )
        log = str(self.dir / "server.log")
        self._run(
            "pg_ctl", "-D", str(self.data), "-l", log, "-o", options, "-w", "-t", "60", "start"
        )

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def destroy(self) -> None:
        if self.running():
            with contextlib.suppress(AssertionError):
                self.stop("immediate")
        shutil.rmtree(self.dir, ignore_errors=True)


def _version(path: str) -> float:
    try:
        return float(Path(path).parent.parent.name)
    except ValueError:
        return 0.0


@pytest.fixture
def private_pg() -> Iterator[PrivatePostgres]:
    server = PrivatePostgres()
    try:
        server.init()
        server.start()
        yield server
    finally:
        server.destroy()


@dataclass
class Answer:
    phase: str
    what: str
    status: int | None
    content_type: str = ""
    body: str = ""
    retry_after: str | None = None
    error: str | None = None
    seconds: float = 0.0

    @classmethod
    def of(cls, phase: str, what: str, r: httpx.Response, seconds: float = 0.0) -> Answer:
        return cls(
            phase,
            what,
            r.status_code,
            r.headers.get("content-type", ""),
            r.text[:300],
            r.headers.get("retry-after"),
            seconds=seconds,
        )


@dataclass
class Traffic:
    """Requests of every kind, one after another, until told to stop; each answer recorded."""

    url: str
    cluster_id: int
    job_id: int
    phase: str = "before"
    answers: list[Answer] = field(default_factory=list)
    done: threading.Event = field(default_factory=threading.Event)

    def requests(self) -> list[tuple[str, str, dict[str, Any] | None]]:
        cid, job = self.cluster_id, self.job_id
        return [
            ("GET", "/api/clusters", None),
            ("GET", f"/api/clusters/{cid}", None),
            ("GET", f"/api/clusters/{cid}/lock", None),
            ("GET", f"/api/clusters/{cid}/queue", None),
            ("GET", f"/api/jobs/{job}", None),
            ("GET", f"/api/jobs/{job}/log", None),
            ("GET", "/api/jobs?limit=5", None),
            # write transactions that end in 404 when the database is up
            ("POST", "/api/jobs/999999/cancel", None),
            ("POST", f"/api/clusters/{cid}/scale/remove", {"nodes": [{"hostname": "nope"}]}),
        ]

    def run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=CLIENT_TIMEOUT) as http:
            while not self.done.is_set():
                for method, path, body in self.requests():
                    phase, began = self.phase, time.monotonic()
                    what = f"{method} {path}"
                    try:
                        r = http.request(method, path, json=body)
                    except httpx.HTTPError as exc:
                        self.answers.append(Answer(phase, what, None, error=repr(exc)))
                        continue
                    self.answers.append(Answer.of(phase, what, r, time.monotonic() - began))
                time.sleep(0.05)


def _unavailable(answer: Answer) -> bool:
    """A 503 problem+json that says the database is unavailable, with Retry-After."""
    return (
        answer.status == 503
        and answer.content_type.startswith("application/problem+json")
        and "database" in answer.body.lower()
        and "unavailable" in answer.body.lower()
        and answer.retry_after is not None
    )


def _submit(http: httpx.Client) -> tuple[list[int], list[int]]:
    """Five clusters; on four of them an install and two agents queued behind it (runs of
    ~3 s, one after another, so runs start, go on and end while the database is down); the
    fifth stays idle. Returns (cluster ids, job ids)."""
    cids: list[int] = []
    jobs: list[int] = []
    for c in range(5):
        node = {"hostname": "m1", "ip": f"127.2.{c}.1", "role": "server"}
        r = http.post("/api/clusters", json={"name": f"o{c}", "nodes": [node]})
        assert r.status_code == 201, r.text
        cids.append(r.json()["id"])
    for c, cid in enumerate(cids[:4]):
        r = http.post(f"/api/jobs/install/{cid}")
        assert r.status_code == 202, r.text
        jobs.append(r.json()["job_id"])
        for i in (1, 2):
            agent = {"hostname": f"a{i}", "ip": f"127.2.{c}.{10 + i}", "role": "agent"}
            r = http.post(f"/api/clusters/{cid}/scale/add?on_busy=queue", json={"nodes": [agent]})
            assert r.status_code == 202, r.text
            jobs.append(r.json()["job_id"])
    return cids, jobs


def _outage(pg: PrivatePostgres, traffic: Traffic, http: httpx.Client, idle: int) -> None:
    """Stop the server under the traffic, keep it down for OUTAGE seconds, start it again.
    While it is down, also ask to start a job and ask for readiness."""
    thread = threading.Thread(target=traffic.run, daemon=True)
    thread.start()
    try:
        time.sleep(1)
        traffic.phase = "stopping"
        pg.stop("fast")
        traffic.phase = "down"
        down_at = time.monotonic()
        for method, path in (("POST", f"/api/jobs/install/{idle}"), ("GET", "/readyz")):
            began = time.monotonic()
            r = http.request(method, path, timeout=CLIENT_TIMEOUT)
            answer = Answer.of("down", f"{method} {path}", r, time.monotonic() - began)
            traffic.answers.append(answer)
        time.sleep(max(0.0, OUTAGE - (time.monotonic() - down_at)))
        traffic.phase = "starting"
    finally:
        if not pg.running():
            pg.start()
    traffic.phase = "after"
    time.sleep(3)
    traffic.done.set()
    thread.join(30)


def _check_answers(answers: list[Answer]) -> None:
    """While down: 503 problem+json saying so, with Retry-After; never a 5xx other than 503,
    never a request without an answer; afterwards, answers as usual."""
    down = [a for a in answers if a.phase == "down"]
    slowest = max((a.seconds for a in down), default=0.0)
    print(f"\n{len(answers)} requests, {len(down)} while down (slowest {slowest:.2f}s)")
    assert down, "no request was made while the database was down"
    hung = [a for a in answers if a.error is not None]
    assert not hung, hung[:5]
    crashed = [a for a in answers if a.status is not None and a.status >= 500 and a.status != 503]
    assert not crashed, crashed[:5]
    ready = [a for a in down if a.what == "GET /readyz"]
    assert [a.status for a in ready] == [503], ready
    wrong = [a for a in down if a not in ready and not _unavailable(a)]
    assert not wrong, wrong[:5]
    after = [a for a in answers if a.phase == "after"][-9:]
    assert len(after) == 9, after
    assert all(a.status in (200, 404, 409) for a in after), [(a.what, a.status) for a in after]


def test_requests_answer_503_while_postgresql_is_down_and_jobs_recover(
    private_pg: PrivatePostgres, tmp_path: Path
) -> None:
    record_dir = tmp_path / "records"
    record_dir.mkdir()
    env = service_env(
        private_pg.url,
        tmp_path / "data",
        lock_ttl=TTL,
        worker_concurrency=4,
        db_pool_size=3,
        db_max_overflow=7,
        ansible_extra_vars={
            "stress_record_dir": str(record_dir),
            "stress_ticks": 30,
            "stress_long_ticks": 30,
        },
    )
    migrate(env)
    services: list[Service] = []
    traffic: Traffic | None = None
    http = httpx.Client(timeout=60)
    try:
        api = start_api("api", env, tmp_path / "logs")
        worker = start_worker("worker", env, tmp_path / "logs")
        services += [api, worker]
        http.base_url = httpx.URL(api.url)
        cids, jobs = _submit(http)
        wait_for(
            lambda: sum(len(read_runs(p)) for p in record_dir.glob("*.log")) >= 3,
            120,
            "runs to start",
        )
        traffic = Traffic(api.url, cids[0], jobs[0])
        _outage(private_pg, traffic, http, cids[4])
        _check_answers(traffic.answers)

        # everything resumes: jobs end, a new job runs, locks are idle, no run is left
        def settled() -> list[dict[str, Any]] | None:
            got = [http.get(f"/api/jobs/{j}").json() for j in jobs]
            return got if all(j["status"] in FINAL for j in got) else None

        ended = wait_for(settled, 180, "every job to end", every=1.0)
        assert ended is not None
        for job in ended:
            print(f"job {job['id']} {job['operation']}: {job['status']} {job['reason'] or ''}")
        r = http.post(f"/api/jobs/install/{cids[4]}")
        assert r.status_code == 202, r.text
        fresh = r.json()["job_id"]

        def fresh_end() -> str | None:
            status = str(http.get(f"/api/jobs/{fresh}").json()["status"])
            return status if status in FINAL else None

        assert wait_for(fresh_end, 120, "a job started after the outage to end") == "succeeded"
        for cid in cids:
            cluster = http.get(f"/api/clusters/{cid}").json()
            assert (cluster["operation_status"], cluster["current_job_id"]) == ("idle", None)
            for node in cluster["nodes"]:
                assert node["status"] not in ("INSTALLING", "REMOVING"), (cid, node)
            runs = read_runs(record_dir / f"cluster-{cid}.log")
            assert not overlaps(runs), (cid, runs)
        wait_for(lambda: not processes_mentioning(str(record_dir)), 15, "runs to end")
        for s in services:
            assert s.alive(), s.tail()

        # the worker lived throughout: no job may end saying it was lost
        lost = [j for j in ended if str(j["reason"]).startswith(LEASE_EXPIRED)]
        assert not lost, (
            f"{len(lost)} job(s) ran across a {OUTAGE:.0f}s outage, shorter than the "
            f"{TTL:.0f}s lease, on a worker that never stopped, and ended "
            f"'{LEASE_EXPIRED}': {[j['id'] for j in lost]}"
        )
    except BaseException:
        for s in services:
            print(s.tail(60))
        raise
    finally:
        http.close()
        if traffic is not None:
            traffic.done.set()
        for s in services:
            stop(s)
