"""Races: many concurrent requests for one idle cluster → exactly one 202, every other a 409."""

from __future__ import annotations

import multiprocessing
import threading
from collections import Counter
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from rke2_manager.api.app import create_app
from rke2_manager.config import Settings
from rke2_manager.db import Database
from rke2_manager.errors import ClusterBusy
from rke2_manager.jobs.create import start_install
from rke2_manager.models import Cluster, Job
from tests.factories import FakeProber, make_cluster
from tests.live import live_server

ROUNDS = 20
BUSY = "Cluster is busy with operation 'install' (job {}). Please wait."


def assert_one_winner(db: Database, cluster_id: int, results: list[tuple[int, str]]) -> None:
    codes = Counter(code for code, _ in results)
    assert codes[202] == 1, codes
    assert codes[409] == len(results) - 1, codes
    with db.read_session() as s:
        jobs = s.scalars(select(Job).where(Job.cluster_id == cluster_id)).all()
        cluster = s.get(Cluster, cluster_id)
        assert cluster is not None
        assert len(jobs) == 1
        assert cluster.operation_status == "running"
        assert cluster.current_job_id == jobs[0].id
        assert cluster.lock_token == jobs[0].fencing_token == 1
    expected = BUSY.format(jobs[0].id)
    assert all(detail == expected for code, detail in results if code == 409)


def test_fifty_threads(settings: Settings, db: Database) -> None:
    app = create_app(settings, prober=FakeProber(), run_migrations=False, start_worker=False)
    with live_server(app) as url:
        clients = [httpx.Client(base_url=url, timeout=60) for _ in range(50)]
        try:
            for round_ in range(ROUNDS):
                cid = make_cluster(db, name=f"race-{round_}")
                barrier = threading.Barrier(50)
                results: list[tuple[int, str]] = []

                def hit(http: httpx.Client, cid: int = cid) -> None:
                    barrier.wait()  # noqa: B023 - each round waits on its own barrier
                    r = http.post(f"/api/jobs/install/{cid}")
                    results.append((r.status_code, r.json().get("detail", "")))  # noqa: B023

                threads = [threading.Thread(target=hit, args=(c,)) for c in clients]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
                assert_one_winner(db, cid, results)
        finally:
            for c in clients:
                c.close()


def _contend(url: str, cluster_ids: list[int], barrier: Any, out: Any) -> None:
    """One OS process with its own engine; each round it races the others for one cluster."""
    settings = Settings(database_url=url, secret_key="x", _env_file=None)  # type: ignore[call-arg]
    db = Database(url)
    try:
        for cluster_id in cluster_ids:
            barrier.wait()
            try:
                with db.transaction() as s:
                    accepted = start_install(s, settings, cluster_id, "proc")
                    out.put((cluster_id, 202, str(accepted.job.id)))
            except ClusterBusy as exc:
                out.put((cluster_id, 409, exc.detail))
            except Exception as exc:  # reported, so the test fails with the cause
                out.put((cluster_id, 500, repr(exc)))
    finally:
        db.dispose()


def test_four_processes(settings: Settings, db: Database) -> None:
    ctx = multiprocessing.get_context("spawn")
    cluster_ids = [make_cluster(db, name=f"race-{round_}") for round_ in range(ROUNDS)]
    barrier, out = ctx.Barrier(4), ctx.Queue()
    procs = [
        ctx.Process(target=_contend, args=(settings.database_url, cluster_ids, barrier, out))
        for _ in range(4)
    ]
    for p in procs:
        p.start()
    results: dict[int, list[tuple[int, str]]] = {cid: [] for cid in cluster_ids}
    for _ in range(4 * ROUNDS):
        cid, code, detail = out.get(timeout=120)
        results[cid].append((code, detail))
    for p in procs:
        p.join(30)
    for cid in cluster_ids:
        assert_one_winner(db, cid, results[cid])


@pytest.mark.parametrize("n", [50])
def test_threads_through_service_directly(settings: Settings, db: Database, n: int) -> None:
    """Same race without HTTP: the guarantee lives in the transaction, not the web layer."""
    cid = make_cluster(db)
    barrier = threading.Barrier(n)
    results: list[tuple[int, str]] = []

    def go() -> None:
        barrier.wait()
        try:
            with db.transaction() as s:
                start_install(s, settings, cid, "t")
            results.append((202, ""))
        except ClusterBusy as exc:
            results.append((409, exc.detail))

    threads = [threading.Thread(target=go) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert_one_winner(db, cid, results)
    with db.read_session() as s:
        assert s.scalar(select(func.count(Job.id))) == 1
