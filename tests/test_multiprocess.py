"""Two API processes and three worker processes on one PostgreSQL database, 200 jobs.

Jobs over 20 clusters arrive through both APIs over HTTP, most with ``on_busy=queue``; some are
canceled while queued, some while running, and one worker process is SIGKILLed mid-run. The
test playbooks (``tests/playbooks_stress``) run locally and append ``start``/``tick``/``end``
lines to one file per cluster, so the test sees when each run really lived: no run may record
anything after its job ended (the moment its lock moved on), and per cluster no two runs may
overlap. The recorder runs in a session of its own, as a remote command or ssh's ControlPersist
master would, so a cancel that only kills ansible-playbook's process group does not end it.
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from tests.conftest import _PG_PROBLEM, PG_ADMIN_URL, skip_or_fail
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

CLUSTERS = 20
TTL = 6.0
QUEUED_CANCELS = 12
RUNNING_CANCELS = 8
LONG_TICKS = 40
"""Runs on clusters with even ids take 4 s (the others 0.8 s): a canceled run there would
still be recording when the next job of its cluster starts, unless the cancel ended it."""


@pytest.fixture
def pg_database() -> Iterator[str]:
    """A fresh PostgreSQL database of its own (dropped afterwards, connections and all)."""
    if _PG_PROBLEM:
        skip_or_fail(f"PostgreSQL at {PG_ADMIN_URL} is not available: {_PG_PROBLEM}")
    name = f"rke2m_mp_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name}"))
    try:
        yield make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        admin.dispose()


def _nodes(c: int) -> list[dict[str, str]]:
    """m1-m3 (servers), a1-a3 (agents), on addresses of their own (127.1.<c>.x)."""
    nodes = [(f"m{i}", f"127.1.{c}.{i}", "server") for i in (1, 2, 3)]
    nodes += [(f"a{i}", f"127.1.{c}.{i + 10}", "agent") for i in (1, 2, 3)]
    return [{"hostname": h, "ip": ip, "role": role} for h, ip, role in nodes]


def _plan(c: int) -> list[tuple[str, str, dict[str, Any] | None]]:
    """Ten job-starting requests for cluster ``c``: every operation, each valid in this order."""

    def add(name: str, n: int, role: str = "agent") -> tuple[str, str, dict[str, Any]]:
        node = {"hostname": name, "ip": f"127.1.{c}.{n}", "role": role}
        return ("POST", "/api/clusters/{cid}/scale/add?on_busy=queue", {"nodes": [node]})

    def remove(name: str, confirm: bool = False) -> tuple[str, str, dict[str, Any]]:
        query = "&confirm_master_removal=true" if confirm else ""
        path = "/api/clusters/{cid}/scale/remove?on_busy=queue" + query
        return ("POST", path, {"nodes": [{"hostname": name}]})

    return [
        ("POST", "/api/jobs/install/{cid}", None),
        add("a4", 14),
        add("m4", 4, "server"),
        remove("a1"),
        remove("m3", confirm=True),
        add("a5", 15),
        remove("a2"),
        add("a6", 16),
        remove("a3"),
        add("a7", 17),
    ]


class Stress:
    """The shared state of one run: services, clients, jobs submitted, what was done to them."""

    def __init__(self, apis: list[Service], workers: list[Service], record_dir: Path) -> None:
        self.apis, self.workers, self.record_dir = apis, workers, record_dir
        self.clients = [httpx.Client(base_url=a.url, timeout=60) for a in apis]
        self.jobs: dict[int, int] = {}  # job id -> cluster id
        self.canceled_queued: set[int] = set()
        self.canceled_running: set[int] = set()
        self.unexpected: list[str] = []
        self.replaced = 0
        self.lock = threading.Lock()
        self.rng = random.Random(8)

    def client(self, i: int) -> httpx.Client:
        return self.clients[i % len(self.clients)]

    def close(self) -> None:
        for c in self.clients:
            c.close()

    def submit_cluster(self, index: int, cid: int) -> None:
        """Submit the cluster's plan in order, alternating APIs; cancel one queued job."""
        cancel_at = 6 + index % 3 if index < QUEUED_CANCELS else None
        for i, (method, path, body) in enumerate(_plan(index)):
            r = self.client(index + i).request(method, path.format(cid=cid), json=body)
            if r.status_code == 400 and i > 0:
                # a guardrail refused it at once, the cluster having changed faster than the
                # plan assumed (e.g. its install already failed): queue a re-install instead
                with self.lock:
                    self.replaced += 1
                r = self.client(index + i).post(f"/api/jobs/install/{cid}?on_busy=queue")
            if r.status_code != 202:
                with self.lock:
                    self.unexpected.append(f"{path} on cluster {cid}: {r.status_code} {r.text}")
                continue
            job_id = r.json()["job_id"]
            with self.lock:
                self.jobs[job_id] = cid
            if i == cancel_at:
                c = self.client(index + i + 1).post(f"/api/jobs/{job_id}/cancel")
                if c.status_code == 200 and c.json()["started_at"] is None:
                    with self.lock:
                        self.canceled_queued.add(job_id)

    def running_runs(self) -> list[tuple[int, int]]:
        """(job, cluster) of runs that recorded a start and no end yet."""
        found = []
        for path in self.record_dir.glob("cluster-*.log"):
            cid = int(path.stem.split("-")[1])
            found += [(r.job_id, cid) for r in read_runs(path).values() if not r.ended]
        return found

    def cancel_running(self, stop_at: float) -> None:
        """Cancel long runs that have started, one every second or so, on different clusters."""
        done_clusters: set[int] = set()
        tried: set[int] = set()
        n = 0
        while len(self.canceled_running) < RUNNING_CANCELS and time.monotonic() < stop_at:
            time.sleep(0.7)
            long_runs = [(j, c) for j, c in self.running_runs() if c % 2 == 0 and j not in tried]
            # a cluster not canceled on yet if there is one
            candidates = [(j, c) for j, c in long_runs if c not in done_clusters] or long_runs
            if not candidates:
                continue
            job_id, cid = self.rng.choice(candidates)
            tried.add(job_id)
            n += 1
            r = self.client(n).post(f"/api/jobs/{job_id}/cancel")
            # 409: it ended first; 200 with another end: it ended (e.g. its lease ran out)
            # while the cancel waited for its run to stop
            assert r.status_code in (200, 409), r.text
            if r.status_code == 200:
                assert r.json()["status"] in FINAL, r.text
            if r.status_code == 200 and r.json()["status"] == "canceled":
                self.canceled_running.add(job_id)
                done_clusters.add(cid)

    def all_jobs(self) -> dict[int, dict[str, Any]]:
        """Every job, through the list endpoint of the first API."""
        out: dict[int, dict[str, Any]] = {}
        offset = 0
        while True:
            r = self.clients[0].get("/api/jobs", params={"limit": 500, "offset": offset})
            assert r.status_code == 200, r.text
            page = r.json()
            out.update({j["id"]: j for j in page})
            if len(page) < 500:
                return out
            offset += 500


def _running_on(database_url: str, pid: int) -> list[int]:
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                text("SELECT id FROM jobs WHERE status = 'running' AND worker_id LIKE :w"),
                {"w": f"%:{pid}:%"},
            )
            return [int(r[0]) for r in rows]
    finally:
        engine.dispose()


def _kill_mid_run(stress: Stress, victim: Service, database_url: str) -> list[int]:
    """SIGKILL ``victim`` (the process alone, as the OOM killer would) while one of its jobs'
    runs is under way, once the stress is in full swing; the jobs it was running then."""

    def busy_run() -> bool:
        if len(stress.running_runs()) < 4 or len(list(stress.record_dir.glob("*.log"))) < 10:
            return False
        running = set(_running_on(database_url, victim.proc.pid))
        return any(job in running for job, _ in stress.running_runs())

    wait_for(busy_run, 120, "a run on the worker to kill", every=0.1)
    os.kill(victim.proc.pid, signal.SIGKILL)
    victim.proc.wait(10)
    return _running_on(database_url, victim.proc.pid)


def _check_clusters(stress: Stress, cids: list[int]) -> None:
    """Every lock idle; no node left mid-change."""
    for cid in cids:
        r = stress.client(cid).get(f"/api/clusters/{cid}")
        assert r.status_code == 200, r.text
        cluster = r.json()
        assert (cluster["operation_status"], cluster["current_job_id"]) == ("idle", None), cluster
        for node in cluster["nodes"]:
            assert node["status"] not in ("INSTALLING", "REMOVING"), (cid, node)


def _check_ends(stress: Stress, jobs: dict[int, dict[str, Any]], killed: list[int]) -> None:
    """The killed worker's jobs ended by the lease reaper, and only they; cancels held."""
    assert killed, "the killed worker was running nothing"
    reaped = [j for j in killed if j not in stress.canceled_running]
    assert reaped
    for job_id in reaped:
        assert jobs[job_id]["status"] == "failed", jobs[job_id]
        assert str(jobs[job_id]["reason"]).startswith(LEASE_EXPIRED), jobs[job_id]
    wrongly_reaped = [
        f"job {j['id']} ({j['operation']}, worker {j.get('worker_id')}, started {j['started_at']})"
        for j in jobs.values()
        if str(j["reason"]).startswith(LEASE_EXPIRED) and j["id"] not in killed
    ]
    assert not wrongly_reaped, (
        f"{len(wrongly_reaped)} jobs not on the killed worker ended '{LEASE_EXPIRED}': "
        + ", ".join(wrongly_reaped[:10])
    )
    assert len(stress.canceled_queued) >= QUEUED_CANCELS // 2, stress.canceled_queued
    assert len(stress.canceled_running) == RUNNING_CANCELS, stress.canceled_running
    for job_id in stress.canceled_queued | stress.canceled_running:
        assert jobs[job_id]["status"] == "canceled", jobs[job_id]


def _epoch(timestamp: str) -> float:
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()


def _check_runs(stress: Stress, jobs: dict[int, dict[str, Any]], cids: list[int]) -> None:
    """Each job ran at most once, a succeeded job ran to its end, a job canceled in the queue
    never ran, no run went on after its job ended (and so after its lock moved on), and per
    cluster no run lived while another one did."""
    found: list[str] = []
    late: list[str] = []
    ran: set[int] = set()
    for cid in cids:
        runs = read_runs(stress.record_dir / f"cluster-{cid}.log")
        ran |= set(runs)
        for run in runs.values():
            job = jobs[run.job_id]
            assert run.starts == 1, (cid, run)
            assert job["cluster_id"] == cid
            if job["status"] == "succeeded":
                assert run.ended, (cid, run)
            after = run.last - _epoch(job["finished_at"])
            if after > 0:
                late.append(
                    f"job {job['id']} ({job['status']}: {job['reason']}): its run recorded "
                    f"{after:.2f}s after the job ended"
                )
        for first, second in overlaps(runs):
            a, b = jobs[first.job_id], jobs[second.job_id]
            found.append(
                f"cluster {cid}: job {a['id']} ({a['status']}: {a['reason']}) ran "
                f"{first.first:.2f}-{first.last:.2f} (ended: {first.ended}), "
                f"job {b['id']} started {second.first:.2f}"
            )
    succeeded = {j for j, job in jobs.items() if job["status"] == "succeeded"}
    assert succeeded <= ran, succeeded - ran
    assert not (stress.canceled_queued & ran)
    print(f"runs: {len(ran)}")
    assert not late, "runs outlived their jobs:\n" + "\n".join(late)
    assert not found, "runs overlapped:\n" + "\n".join(found)
    try:
        wait_for(lambda: not processes_mentioning(str(stress.record_dir)), 15, "runs to end")
    except AssertionError:
        left = "\n".join(processes_mentioning(str(stress.record_dir)))
        raise AssertionError(f"runs outlived every job:\n{left}") from None


def _summary(stress: Stress, jobs: dict[int, dict[str, Any]], killed: list[int]) -> None:
    statuses = Counter(j["status"] for j in jobs.values())
    reasons = Counter(str(j["reason"])[:80] for j in jobs.values() if j["status"] == "failed")
    print(f"\nstatuses {dict(statuses)}; killed worker's jobs {killed}")
    print(f"failed: {dict(reasons)}")
    print(f"canceled queued {sorted(stress.canceled_queued)}; replaced {stress.replaced}")
    print(f"canceled running {sorted(stress.canceled_running)}")


def test_two_apis_three_workers_two_hundred_jobs(pg_database: str, tmp_path: Path) -> None:
    started = time.monotonic()
    record_dir = tmp_path / "records"
    record_dir.mkdir()
    env = service_env(
        pg_database,
        tmp_path / "data",
        lock_ttl=TTL,
        worker_concurrency=4,
        db_pool_size=3,
        db_max_overflow=7,
        ansible_extra_vars={
            "stress_record_dir": str(record_dir),
            "stress_ticks": 8,  # 0.8 s
            "stress_long_ticks": LONG_TICKS,
        },
    )
    migrate(env)
    logs = tmp_path / "logs"
    services: list[Service] = []
    stress: Stress | None = None
    try:
        apis = [start_api(f"api{i}", env, logs) for i in (1, 2)]
        services += apis
        workers = [start_worker(f"worker{i}", env, logs) for i in (1, 2, 3)]
        services += workers
        stress = Stress(apis, workers, record_dir)
        cids = []
        for c in range(CLUSTERS):
            r = stress.client(c).post("/api/clusters", json={"name": f"s{c}", "nodes": _nodes(c)})
            assert r.status_code == 201, r.text
            cids.append(r.json()["id"])

        with ThreadPoolExecutor(12) as pool:
            canceler = pool.submit(stress.cancel_running, time.monotonic() + 120)
            submitted = [pool.submit(stress.submit_cluster, i, cid) for i, cid in enumerate(cids)]
            killed = _kill_mid_run(stress, workers[2], pg_database)
            for f in submitted:
                f.result()
            canceler.result()
        assert not stress.unexpected, stress.unexpected
        assert len(stress.jobs) == CLUSTERS * 10

        def settled() -> dict[int, dict[str, Any]] | None:
            jobs = stress.all_jobs() if stress else {}
            return jobs if all(j["status"] in FINAL for j in jobs.values()) else None

        jobs = wait_for(settled, 240, "every job to end", every=1.0)
        assert jobs is not None
        assert set(jobs) == set(stress.jobs)
        _summary(stress, jobs, killed)
        _check_clusters(stress, cids)
        _check_runs(stress, jobs, cids)
        _check_ends(stress, jobs, killed)
        for w in workers[:2]:
            assert w.alive(), w.tail()
        print(f"took {time.monotonic() - started:.0f}s")
    except BaseException:
        for s in services:
            print(s.tail())
        raise
    finally:
        if stress is not None:
            stress.close()
        for s in services:
            stop(s)
