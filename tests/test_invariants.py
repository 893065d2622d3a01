"""A randomized storm: many clients start, queue, cancel and force-unlock on a few clusters at
once. At every observation at most one job per cluster runs and the lock names it; in the end
everything settles with all locks idle.

The playbook run is replaced by a fast fake (this test is about the lock, not Ansible); every
other part — HTTP server, worker threads, database — is the real one.
"""

from __future__ import annotations

import itertools
import random
import threading
import time
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from rke2_manager.api.app import create_app
from rke2_manager.config import Settings
from rke2_manager.db import Database
from rke2_manager.execution.ansible_service import RunOutcome, RunSpec
from tests.factories import FakeProber, make_cluster
from tests.live import live_server

CLIENTS, ACTIONS, CLUSTERS = 6, 30, 3
OBSERVE = text(
    """
    SELECT c.id, c.operation_status, c.current_job_id,
           (SELECT count(*) FROM jobs j WHERE j.cluster_id = c.id AND j.status = 'running'),
           (SELECT min(j.id) FROM jobs j WHERE j.cluster_id = c.id AND j.status = 'running'),
           (SELECT count(*) FROM jobs j WHERE j.cluster_id = c.id AND j.status = 'queued')
    FROM clusters c ORDER BY c.id
    """
)


def fake_run(spec: RunSpec, on_host: Any, on_output: Any, should_cancel: Any) -> RunOutcome:
    on_output([f"fake run of {spec.playbook.name}"])
    deadline = time.monotonic() + random.uniform(0.01, 0.08)
    while time.monotonic() < deadline:
        if should_cancel():
            return RunOutcome(status="canceled", rc=-1)
        time.sleep(0.005)
    return RunOutcome(status="successful" if random.random() < 0.8 else "failed", rc=0)


def check(rows: list[Any], violations: list[str]) -> None:
    for cid, status, current, running, running_id, _ in rows:
        if running > 1:
            violations.append(f"cluster {cid}: {running} running jobs")
        elif running == 1 and (status, current) != ("running", running_id):
            violations.append(
                f"cluster {cid}: job {running_id} runs but lock is {status}/{current}"
            )
        elif running == 0 and status != "idle":
            violations.append(f"cluster {cid}: lock {status}/{current} with no running job")


def client_loop(url: str, cluster_ids: list[int], seed: int, names: Any, codes: list[int]) -> None:
    rng = random.Random(seed)
    with httpx.Client(base_url=url, timeout=60) as http:
        for _ in range(ACTIONS):
            cid = rng.choice(cluster_ids)
            action = rng.choice(["install", "queue", "add", "cancel", "force", "remove"])
            if action == "install":
                r = http.post(f"/api/jobs/install/{cid}")
            elif action == "queue":
                r = http.post(f"/api/jobs/install/{cid}?on_busy=queue")
            elif action == "add":
                n = next(names)
                nodes = [
                    {
                        "hostname": f"s{n}",
                        "ip": f"127.1.{n // 250}.{n % 250 + 1}",
                        "role": "server",
                    },
                    {"hostname": f"a{n}", "ip": f"127.2.{n // 250}.{n % 250 + 1}", "role": "agent"},
                ]
                r = http.post(
                    f"/api/clusters/{cid}/scale/add?on_busy={rng.choice(['reject', 'queue'])}",
                    json={"nodes": nodes[: rng.randint(1, 2)]},
                )
            elif action == "remove":
                r = http.post(
                    f"/api/clusters/{cid}/scale/remove?on_busy=queue",
                    json={"nodes": [{"hostname": "w1"}]},
                )
            elif action == "cancel":
                jobs = http.get(f"/api/jobs?cluster_id={cid}&limit=5").json()
                r = (
                    http.post(f"/api/jobs/{rng.choice(jobs)['id']}/cancel")
                    if jobs
                    else http.get("/healthz")
                )
            else:
                lock = http.get(f"/api/clusters/{cid}/lock").json()
                job_id = lock["current_job_id"] or 1
                r = http.post(
                    f"/api/admin/clusters/{cid}/force-unlock",
                    json={"job_id": job_id, "reason": "storm"},
                )
            codes.append(r.status_code)
            time.sleep(rng.uniform(0, 0.02))


@pytest.mark.parametrize("seed", [1, 2])
def test_storm_keeps_one_running_job_per_cluster(
    settings: Settings, db: Database, monkeypatch: pytest.MonkeyPatch, seed: int
) -> None:
    monkeypatch.setattr("rke2_manager.jobs.runner.run.run_playbook", fake_run)
    settings.worker_poll_interval = 0.02
    settings.maintenance_interval = 0.2
    settings.worker_concurrency = 3
    cluster_ids = [
        make_cluster(
            db,
            name=f"storm-{i}",
            nodes=[
                ("m1", f"127.0.6{i}.1", "server", "ACTIVE"),
                ("w1", f"127.0.6{i}.2", "agent", "ACTIVE"),
            ],
        )
        for i in range(CLUSTERS)
    ]
    violations: list[str] = []
    observations = 0
    stop = threading.Event()

    def observe() -> None:
        nonlocal observations
        while not stop.is_set():
            with db.read_session() as s:
                check(list(s.execute(OBSERVE)), violations)
            observations += 1

    app = create_app(settings, prober=FakeProber(), run_migrations=False, start_worker=True)
    codes: list[int] = []
    names = itertools.count(seed * 1000)
    with live_server(app) as url:
        observer = threading.Thread(target=observe)
        observer.start()
        clients = [
            threading.Thread(
                target=client_loop, args=(url, cluster_ids, seed * 100 + i, names, codes)
            )
            for i in range(CLIENTS)
        ]
        for t in clients:
            t.start()
        for t in clients:
            t.join()
        deadline = time.monotonic() + 90
        while True:
            with db.read_session() as s:
                rows = list(s.execute(OBSERVE))
            if all(
                status == "idle" and running == 0 and queued == 0
                for _, status, _, running, _, queued in rows
            ):
                break
            assert time.monotonic() < deadline, f"did not settle: {rows}"
            time.sleep(0.1)
        stop.set()
        observer.join()
    assert violations == []
    assert observations > 20
    assert all(code < 500 for code in codes), codes
    assert 202 in codes and 409 in codes
    with db.read_session() as s:
        statuses = {row[0] for row in s.execute(text("SELECT DISTINCT status FROM jobs"))}
    assert statuses <= {"succeeded", "failed", "canceled"}
