"""Dashboard benchmark: how long the server takes to render its pages for a large installation,
and how many bytes the API docs pages load.

Makes ``--clusters`` clusters of ``--nodes`` nodes each, with ``--jobs`` ended jobs on the first
one, then times ``GET /ui/`` (every cluster with its queue), ``GET /ui/clusters/1`` and
``GET /ui/jobs/{id}`` over a real uvicorn server on loopback (median and max of ``--rounds``),
and sums what ``/docs`` and ``/redoc`` load.

    .venv/bin/python bench/dashboard_pages.py                  # SQLite in a temporary directory
    .venv/bin/python bench/dashboard_pages.py --clusters 200 --database-url postgresql+psycopg://…

Timing is reported, never asserted.
"""

from __future__ import annotations

import argparse
import re
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
from rke2_manager.models import Job, JobStatus, utcnow
from tests.factories import TEST_SECRET_KEY, make_cluster
from tests.live import live_server


def timed(client: httpx.Client, path: str, rounds: int) -> tuple[float, float, int]:
    """Median and max milliseconds of ``rounds`` GETs, and the page's size in bytes."""
    took, size = [], 0
    for _ in range(rounds):
        start = time.perf_counter()
        r = client.get(path)
        took.append((time.perf_counter() - start) * 1000)
        assert r.status_code == 200, (path, r.status_code)
        size = len(r.content)
    return statistics.median(took), max(took), size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clusters", type=int, default=50)
    parser.add_argument("--nodes", type=int, default=20)
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--database-url")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="rke2m-bench-"))
    settings = Settings(
        database_url=args.database_url or f"sqlite:///{tmp / 'bench.db'}",
        data_dir=tmp / "data",
        secret_key=TEST_SECRET_KEY,
        worker_enabled=False,
        _env_file=None,  # type: ignore[call-arg]
    )
    db = Database(settings.database_url)
    migrate.upgrade(db.engine)
    for c in range(args.clusters):
        nodes = [
            (f"n{i}", f"127.{c // 250}.{c % 250}.{i + 1}", "server" if i < 3 else "agent", "ACTIVE")
            for i in range(args.nodes)
        ]
        make_cluster(db, f"c{c}", nodes)
    with db.transaction() as s:
        jobs = [
            Job(cluster_id=1, operation="scale_add_workers", status=JobStatus.SUCCEEDED)
            for _ in range(args.jobs)
        ]
        for job in jobs:
            job.finished_at = utcnow()
        s.add_all(jobs)
        s.flush()
        last_job = jobs[-1].id
    app = create_app(settings, run_migrations=False, start_worker=False)
    print(f"{args.clusters} clusters x {args.nodes} nodes, {args.jobs} jobs on cluster 1")
    with live_server(app) as url, httpx.Client(base_url=url) as client:
        for label, path in [
            ("cluster list", "/ui/"),
            ("cluster page", "/ui/clusters/1"),
            ("job page", f"/ui/jobs/{last_job}"),
        ]:
            median, worst, size = timed(client, path, args.rounds)
            print(f"{label:13} {path:18} median {median:6.1f} ms  max {worst:6.1f} ms  {size} B")
        for page in ("/docs", "/redoc"):
            html = client.get(page).text
            urls = re.findall(r'(?:src|href)="(/[^"]+)"', html)
            total = sum(len(client.get(u).content) for u in urls)
            print(f"{page:7} loads {len(urls)} files from this service, {total / 1e6:.2f} MB")
    db.dispose()


if __name__ == "__main__":
    main()
