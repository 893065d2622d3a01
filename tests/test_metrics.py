"""/metrics after real jobs: gauges per cluster from the database, the job duration and lock
hold histograms, lease expiries and force unlocks (counted only when their transaction commits).

Counters and histograms live in this test process's registry, shared by every test that ran
before, so the assertions are on what changed between two scrapes; gauges are absolute.
"""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from rke2_manager import metrics
from rke2_manager.config import Settings
from rke2_manager.db import Database
from rke2_manager.models import Cluster, Job, utcnow
from tests.factories import lock_cluster, make_cluster, write_playbooks
from tests.test_worker import lock_state, wait_job

Sample = tuple[str, frozenset[tuple[str, str]]]


def scrape(client: TestClient) -> dict[Sample, float]:
    r = client.get("/metrics")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(r.text)
        for s in family.samples
    }


def value(samples: dict[Sample, float], name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def changed(
    before: dict[Sample, float], after: dict[Sample, float], name: str, **labels: str
) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


def gauges(samples: dict[Sample, float], name: str) -> dict[str, float]:
    """``{cluster name: value}`` of a per-cluster gauge."""
    return {dict(labels)["cluster"]: v for (n, labels), v in samples.items() if n == name}


def wait_log(client: TestClient, job_id: int) -> None:
    """Until the job's run has begun (a worker claimed it and ansible prints)."""
    deadline = time.monotonic() + 30
    while not client.get(f"/api/jobs/{job_id}/log").json()["lines"]:
        assert time.monotonic() < deadline, f"job {job_id} did not start"
        time.sleep(0.1)


def test_metrics_follow_real_jobs(
    worker_client: TestClient, db: Database, settings: Settings, playbook_dir: Path
) -> None:
    write_playbooks(playbook_dir, mode="slow", operations=("scale_add_masters",))
    settings.ansible_extra_vars = {"sleep_seconds": 30}
    settings.maintenance_interval = 0.2
    server = [("m1", "127.0.80.1", "server", "ACTIVE")]
    before = scrape(worker_client)

    # a: an install that succeeds; e: one that fails (its node is outside the allowed networks)
    a = make_cluster(db, "a", [("m1", "127.0.80.2", "server", "PENDING")])
    e = make_cluster(db, "e", [("m1", "10.0.0.1", "server", "PENDING")])
    assert wait_job(worker_client, worker_client.post(f"/api/jobs/install/{a}").json()["job_id"])[
        "status"
    ] == ("succeeded")
    assert wait_job(worker_client, worker_client.post(f"/api/jobs/install/{e}").json()["job_id"])[
        "status"
    ] == ("failed")

    # c: a job of a worker that is gone holds the lock (started 5 s ago), two installs queue
    c = make_cluster(db, "c", server)
    holder = lock_cluster(db, c, "install")
    with db.transaction() as s:  # it took the lock and started 5 s ago
        s.get(Job, holder).started_at = utcnow() - timedelta(seconds=5)  # type: ignore[union-attr]
        s.get(Cluster, c).operation_started_at = utcnow() - timedelta(seconds=5)  # type: ignore[union-attr]
    queued = [
        worker_client.post(f"/api/jobs/install/{c}?on_busy=queue").json()["job_id"]
        for _ in range(2)
    ]
    # d: a slow scale-add that this process's worker runs
    d = make_cluster(db, "d", [("m1", "127.0.80.3", "server", "ACTIVE")])
    m2 = {"nodes": [{"hostname": "m2", "ip": "127.0.80.4", "role": "server"}]}
    slow = worker_client.post(f"/api/clusters/{d}/scale/add", json=m2).json()["job_id"]
    wait_log(worker_client, slow)

    busy = scrape(worker_client)
    assert gauges(busy, "rke2m_jobs_running") == {"a": 0, "e": 0, "c": 1, "d": 1}
    assert gauges(busy, "rke2m_jobs_queued") == {"a": 0, "e": 0, "c": 2, "d": 0}
    assert value(busy, "rke2m_database_up") == 1
    assert value(busy, "rke2m_jobs_running", cluster_id=str(c), cluster="c") == 1

    r = worker_client.post(
        f"/api/admin/clusters/{d}/force-unlock", json={"job_id": slow, "reason": "stuck"}
    )
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "canceled"
    with db.transaction() as s:  # c's lease runs out: the worker's maintenance reaps it
        cluster = s.get(Cluster, c)
        assert cluster is not None
        cluster.lock_expires_at = utcnow() - timedelta(seconds=1)
    assert [wait_job(worker_client, j)["status"] for j in queued] == ["succeeded"] * 2
    assert wait_job(worker_client, holder)["reason"].startswith("lock lease expired")
    assert lock_state(db, c) == lock_state(db, d) == ("idle", None, None)

    after = scrape(worker_client)
    assert gauges(after, "rke2m_jobs_running") == {"a": 0, "e": 0, "c": 0, "d": 0}
    assert gauges(after, "rke2m_jobs_queued") == {"a": 0, "e": 0, "c": 0, "d": 0}

    duration = "rke2m_job_duration_seconds_count"
    assert changed(before, after, duration, operation="install", result="succeeded") == 3
    assert changed(before, after, duration, operation="install", result="failed") == 2
    assert changed(before, after, duration, operation="scale_add_masters", result="canceled") == 1
    assert changed(before, after, duration, operation="scale_add_masters", result="failed") == 0
    # the reaped job ran 5 s before its end; the others a few seconds at most
    failed_sum = changed(
        before, after, "rke2m_job_duration_seconds_sum", operation="install", result="failed"
    )
    assert 5 <= failed_sum < 60
    in_1s = changed(
        before,
        after,
        "rke2m_job_duration_seconds_bucket",
        operation="install",
        result="failed",
        le="1.0",
    )
    assert in_1s == 1  # e failed at once; the reaped job took longer
    # the lock of every job above was released or handed on once
    hold = "rke2m_lock_hold_seconds_count"
    assert changed(before, after, hold, operation="install") == 5
    assert changed(before, after, hold, operation="scale_add_masters") == 1
    assert changed(before, after, "rke2m_lock_hold_seconds_sum", operation="install") >= 5
    assert changed(before, after, "rke2m_lease_expiries_total", operation="install") == 1
    assert changed(before, after, "rke2m_force_unlocks_total", operation="scale_add_masters") == 1
    assert changed(before, after, "rke2m_force_unlocks_total", operation="install") == 0


def test_events_count_only_when_their_transaction_commits(db: Database) -> None:
    counter = metrics.FORCE_UNLOCKS.labels("scale_remove_workers")
    start = counter._value.get()
    with pytest.raises(RuntimeError), db.transaction() as s:
        metrics.force_unlocked(s, "scale_remove_workers")
        raise RuntimeError("rolled back")
    assert counter._value.get() == start
    with db.transaction() as s:
        metrics.force_unlocked(s, "scale_remove_workers")
        assert counter._value.get() == start  # not before the commit
    assert counter._value.get() == start + 1
    with db.transaction() as s:  # a later transaction of a new session starts clean
        pass
    assert counter._value.get() == start + 1
