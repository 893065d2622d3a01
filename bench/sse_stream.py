"""Job event stream benchmark: what storing run events costs the worker, and how fast
``GET /api/jobs/{id}/events`` serves a job's stored events.

1. Store: ``--events`` items (2 of 3 log lines, 1 of 3 task events, as an install's output
   mixes them) written in the worker's batches of 50 through ``jobs.events.store``, each batch
   its own transaction as ``LogWriter`` makes it; prints items per second.
2. Stream: the finished job's whole stream from a real uvicorn server on loopback, read with
   httpx; prints the time to the first event, the total, and events per second. Then the same
   from the middle, resumed with ``Last-Event-ID``.

    .venv/bin/python bench/sse_stream.py                    # SQLite in a temporary directory
    .venv/bin/python bench/sse_stream.py --events 50000 --database-url postgresql+psycopg://…

Timing is reported, never asserted.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rke2_manager import migrate
from rke2_manager.api.app import create_app
from rke2_manager.config import Settings
from rke2_manager.db import Database
from rke2_manager.jobs import events
from rke2_manager.models import Job, JobStatus, utcnow
from rke2_manager.vault import SecretBox
from tests.factories import make_cluster
from tests.live import live_server


def store(db: Database, job_id: int, count: int) -> float:
    items = [
        events.Item("log", {"text": f"line {i} " + "x" * 60})
        if i % 3
        else events.Item(events.TASK_END, {"host": f"h{i % 7}", "task": f"t{i}", "result": "ok"})
        for i in range(count)
    ]
    started = time.perf_counter()
    for at in range(0, count, 50):
        with db.transaction() as session:
            events.store(session, job_id, items[at : at + 50])
    return time.perf_counter() - started


def stream(url: str, job_id: int, after: int) -> tuple[float, float, int]:
    started = time.perf_counter()
    first, count = 0.0, 0
    headers = {"Last-Event-ID": str(after)}
    with httpx.stream("GET", f"{url}/api/jobs/{job_id}/events", headers=headers, timeout=60) as r:
        for line in r.iter_lines():
            if line.startswith("id: "):
                count += 1
                first = first or time.perf_counter() - started
    return first, time.perf_counter() - started, count


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--database-url")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = args.database_url or f"sqlite:///{tmp}/bench.db"
        settings = Settings(
            database_url=url,
            data_dir=Path(tmp) / "data",
            secret_key="bench",
            worker_enabled=False,
            _env_file=None,  # type: ignore[call-arg]
        )
        db = Database(url, box=SecretBox("bench"))
        migrate.upgrade(db.engine)
        cluster_id = make_cluster(db, "bench")
        with db.transaction() as session:
            job = Job(cluster_id=cluster_id, operation="install", status=JobStatus.RUNNING)
            session.add(job)
            session.flush()
            job_id = job.id
        took = store(db, job_id, args.events)
        print(f"store: {args.events} items in {took:.2f} s = {args.events / took:,.0f} items/s")
        with db.transaction() as session:
            done = session.get(Job, job_id)
            assert done is not None
            done.status, done.finished_at = JobStatus.SUCCEEDED, utcnow()
        with live_server(create_app(settings, run_migrations=False)) as base:
            for after, label in ((0, "whole"), (args.events // 2, "resumed")):
                runs = [stream(base, job_id, after) for _ in range(args.runs)]
                first = statistics.median(r[0] for r in runs)
                total = statistics.median(r[1] for r in runs)
                count = runs[0][2]
                print(
                    f"stream {label}: {count} events, first after {first * 1000:.1f} ms, "
                    f"all in {total:.2f} s = {count / total:,.0f} events/s (median of {args.runs})"
                )
        db.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
