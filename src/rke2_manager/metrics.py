"""Prometheus metrics (served at ``/metrics``; each one is described in docs/operations.md).

Events (a job's end, a lock released, a lease reaped, a force-unlock) are counted by the
process that wrote them, and only once their transaction has committed (:func:`on_commit`):
a rolled-back or retried transaction counts nothing. Gauges of jobs per cluster are read from
the database at scrape time (:class:`JobsCollector`), so every process that shares the database
reports the same, drift-free values.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import TYPE_CHECKING

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import ColumnElement, case, event, func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from rke2_manager.models import Cluster, Job, JobStatus, utcnow

if TYPE_CHECKING:
    from rke2_manager.db import Database

log = logging.getLogger(__name__)

#: Seconds, from a quick local run to a long install (a real install takes minutes).
DURATION_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400)

JOBS_FINISHED = Counter(
    "rke2m_jobs_finished_total", "Jobs this process's workers ended", ["operation", "status"]
)
REFUSALS = Counter(
    "rke2m_refusals_total",
    "Requests refused: busy cluster (409) or a guardrail (400)",
    ["reason"],
)
JOB_DURATION = Histogram(
    "rke2m_job_duration_seconds",
    "Run time of jobs that a worker started, from its start to the job's end",
    ["operation", "result"],
    buckets=DURATION_BUCKETS,
)
LOCK_HOLD = Histogram(
    "rke2m_lock_hold_seconds",
    "How long a job held its cluster's lock, observed when the lock is released or handed on",
    ["operation"],
    buckets=DURATION_BUCKETS,
)
LEASE_EXPIRIES = Counter(
    "rke2m_lease_expiries_total",
    "Jobs ended by the reaper because their lock lease ran out (their worker was lost)",
    ["operation"],
)
FORCE_UNLOCKS = Counter(
    "rke2m_force_unlocks_total", "Locks freed by an admin's force-unlock", ["operation"]
)

_PENDING = "rke2m_metrics_pending"


def on_commit(session: Session, observe: Callable[[], None]) -> None:
    """Call ``observe`` once ``session``'s transaction commits; drop it if it rolls back."""
    session.info.setdefault(_PENDING, []).append(observe)


@event.listens_for(Session, "after_commit")
def _committed(session: Session) -> None:
    for observe in session.info.pop(_PENDING, ()):
        try:
            observe()
        except Exception:  # a metric must never fail the work it counts
            log.exception("could not record a metric")


@event.listens_for(Session, "after_rollback")
def _rolled_back(session: Session) -> None:
    session.info.pop(_PENDING, None)


def job_ended(session: Session, job: Job) -> None:
    """``job`` ends in this transaction: observe its run time, if a worker started it."""
    if job.started_at is None:
        return
    seconds = ((job.finished_at or utcnow()) - job.started_at).total_seconds()
    labels = JOB_DURATION.labels(job.operation, job.status)
    on_commit(session, lambda: labels.observe(max(seconds, 0.0)))


def lock_released(session: Session, operation: str | None, since: datetime | None) -> None:
    """The lock taken at ``since`` by ``operation`` is released or handed on here."""
    if since is None:
        return
    seconds = (utcnow() - since).total_seconds()
    labels = LOCK_HOLD.labels(operation or "unknown")
    on_commit(session, lambda: labels.observe(max(seconds, 0.0)))


def lease_expired(session: Session, operation: str) -> None:
    on_commit(session, LEASE_EXPIRIES.labels(operation).inc)


def force_unlocked(session: Session, operation: str) -> None:
    on_commit(session, FORCE_UNLOCKS.labels(operation).inc)


class JobsCollector(Collector):
    """Running and queued jobs per cluster, read from the database at each scrape."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def collect(self) -> Iterator[Metric]:
        labels = ["cluster_id", "cluster"]
        running = GaugeMetricFamily(
            "rke2m_jobs_running", "Jobs that hold their cluster's lock", labels=labels
        )
        queued = GaugeMetricFamily(
            "rke2m_jobs_queued", "Jobs waiting for their cluster's lock", labels=labels
        )
        up = GaugeMetricFamily(
            "rke2m_database_up", "1 if this scrape could read the job gauges from the database"
        )
        query = (
            select(Cluster.id, Cluster.name, _count(JobStatus.RUNNING), _count(JobStatus.QUEUED))
            .outerjoin(Job, Job.cluster_id == Cluster.id)
            .group_by(Cluster.id, Cluster.name)
            .order_by(Cluster.id)
        )
        try:
            with self.db.read_session() as session:
                rows = session.execute(query).all()
        except SQLAlchemyError as exc:
            log.warning("metrics: cannot read jobs: %s", exc)
            up.add_metric([], 0)
            yield up
            return
        for cluster_id, name, n_running, n_queued in rows:
            running.add_metric([str(cluster_id), name], n_running)
            queued.add_metric([str(cluster_id), name], n_queued)
        up.add_metric([], 1)
        yield from (running, queued, up)


def _count(status: JobStatus) -> ColumnElement[int]:
    return func.count(case((Job.status == status, 1)))


class _ProcessMetrics(Collector):
    """This process's own metrics (the default registry) next to the database's gauges."""

    def collect(self) -> Iterator[Metric]:
        yield from REGISTRY.collect()


def registry_for(db: Database) -> CollectorRegistry:
    """What ``/metrics`` serves for an app on ``db``."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_ProcessMetrics())
    registry.register(JobsCollector(db))
    return registry
