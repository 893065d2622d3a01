"""The net under the job lifecycle: leases that ran out, runs orphaned by a dead worker, and
queued jobs of idle clusters. Each ends jobs through :func:`rke2_manager.jobs.settle.settle`;
the runs they can reach (on this machine) are ended by the caller first. Services flush;
callers commit.
"""

from __future__ import annotations

from collections.abc import Callable, Container, Sequence
from typing import TypeVar

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from rke2_manager import audit, metrics
from rke2_manager.cluster_lock import lock_cluster_row
from rke2_manager.config import Settings
from rke2_manager.db import WriteSession
from rke2_manager.jobs.queue import queued_jobs, start_next
from rke2_manager.jobs.settle import settle
from rke2_manager.jobs.stopping import UNCONFIRMED, machine_prefix
from rke2_manager.models import Cluster, Job, JobStatus, LockStatus, utcnow

LEASE_EXPIRED = "lock lease expired: worker lost"

T = TypeVar("T")


def _waiting(query: Select[T]) -> Select[T]:
    """``query`` (over jobs) narrowed to queued jobs, first in line, of idle clusters."""
    return query.join(Cluster, Cluster.id == Job.cluster_id).where(
        Job.status == JobStatus.QUEUED,
        Job.predecessor_id.is_(None),
        Cluster.operation_status == LockStatus.IDLE,
    )


def needs_maintenance(session: Session) -> bool:
    """A cheap read: is any lease expired, or any idle cluster's queue waiting?"""
    expired = _expired(select(Cluster.id))
    waiting = _waiting(select(Job.id))
    return (
        session.scalar(expired.limit(1)) is not None or session.scalar(waiting.limit(1)) is not None
    )


def _expired(query: Select[T]) -> Select[T]:
    """``query`` (over clusters) narrowed to the locks whose lease ran out in a worker's hands.

    A job that no worker has claimed yet is not reaped, however long it waits for a free
    worker: no worker can have been lost (the claim starts its lease afresh).
    """
    return query.where(
        Cluster.operation_status == LockStatus.RUNNING,
        Cluster.lock_expires_at < utcnow(),
        select(Job.id).where(Job.id == Cluster.current_job_id, Job.worker_id.is_not(None)).exists(),
    )


def expired_jobs(session: Session) -> list[Job]:
    """The running jobs whose lock lease has run out in a worker's hands."""
    clusters = _expired(select(Cluster.current_job_id)).subquery()
    return list(session.scalars(select(Job).where(Job.id.in_(select(clusters)))))


def reap_expired(
    session: WriteSession, settings: Settings, ended: Container[int] = ()
) -> list[int]:
    """End the jobs whose lock lease ran out (their worker died) and pass their locks on.

    ``ended``: jobs whose runs the caller has ended on this machine (the others' runs, on other
    machines, are refused by the nodes' fences). Safe with several reapers at once: rows are
    taken ``FOR UPDATE SKIP LOCKED``.
    """
    clusters = session.scalars(
        _expired(select(Cluster))
        .order_by(Cluster.id)
        .with_for_update(skip_locked=True, key_share=True)
    ).all()
    reaped = []
    for cluster in clusters:
        job = session.get(Job, cluster.current_job_id) if cluster.current_job_id else None
        if job is None:
            continue
        reason = LEASE_EXPIRED
        if job.worker_id is not None and job.id not in ended:
            reason += f"; {UNCONFIRMED.format(worker=job.worker_id)}"
        settle(session, settings, job, JobStatus.FAILED, reason)
        audit.record(session, "reaper", "job.lease_expired", cluster.id, job.id)
        metrics.lease_expired(session, job.operation)
        reaped.append(job.id)
    return reaped


def start_queued(session: WriteSession, settings: Settings) -> list[int]:
    """Start queued jobs of idle clusters (normally the ending job does it; this is the net)."""
    started = []
    ids = session.scalars(_waiting(select(Job.cluster_id)).distinct()).all()
    for cluster_id in ids:
        cluster = lock_cluster_row(session, cluster_id)
        if cluster.operation_status == LockStatus.IDLE and queued_jobs(session, cluster_id):
            job = start_next(session, settings, cluster)
            if job is not None:
                started.append(job.id)
    return started


def dead_workers_jobs(session: Session, alive: Callable[[str], bool]) -> list[Job]:
    """Running jobs of this machine's workers (ids starting with its prefix) that are gone."""
    jobs = session.scalars(
        select(Job).where(
            Job.status == JobStatus.RUNNING,
            Job.worker_id.startswith(machine_prefix(), autoescape=True),
        )
    ).all()
    return [j for j in jobs if j.worker_id is not None and not alive(j.worker_id)]


def recover_dead_workers(
    session: WriteSession, settings: Settings, jobs: Sequence[Job], ended: Container[int]
) -> list[int]:
    """At start-up: end the running ``jobs`` of this machine's dead workers whose runs are
    ``ended`` (see :func:`~rke2_manager.jobs.stopping.end_local_run`), without waiting for their
    leases. A job whose run could not be ended is left to its lease."""
    recovered = []
    for found in jobs:
        if found.id not in ended:
            continue
        lock_cluster_row(session, found.cluster_id, with_nodes=False)
        job = session.get(Job, found.id, populate_existing=True)
        if job is None or job.status != JobStatus.RUNNING or job.worker_id != found.worker_id:
            continue
        settle(
            session,
            settings,
            job,
            JobStatus.FAILED,
            f"worker {job.worker_id} stopped while the job ran (found at start-up; "
            "its run was ended)",
        )
        audit.record(session, "worker", "job.recovered", job.cluster_id, job.id)
        recovered.append(job.id)
    return recovered
