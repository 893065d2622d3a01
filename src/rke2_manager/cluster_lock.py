"""The cluster lock [services/cluster_lock_service.py]: the only writer of the lock columns.

A lock is a lease held by one job: ``operation_status='running'``, ``current_job_id``, when it
was taken, by which operation, when it expires, and a fencing counter (``lock_token``) that grows
on every acquire. Every write after the acquire names the job *and* the token it got, so a holder
that lost its lease can never release or extend somebody else's lock.

Callers pass a session that will write: on PostgreSQL the cluster row is read ``FOR UPDATE``; on
SQLite the session's transaction began with ``BEGIN IMMEDIATE`` (see :mod:`rke2_manager.db`).
Nothing here commits.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select, text, update
from sqlalchemy.orm import selectinload

from rke2_manager import metrics
from rke2_manager.db import WriteSession
from rke2_manager.errors import ClusterBusy, NotFound
from rke2_manager.models import Cluster, Job, JobStatus, LockStatus, utcnow

JOBS_CHANNEL = "rke2m_jobs"


def notify_workers(session: WriteSession) -> None:
    """On PostgreSQL, wake every listening worker when this transaction commits (a job now
    holds a lock and waits to be claimed). Elsewhere workers poll."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_notify(:channel, '')"), {"channel": JOBS_CHANNEL})


def lock_cluster_row(session: WriteSession, cluster_id: int, with_nodes: bool = True) -> Cluster:
    """Read the cluster row for update; nothing can change it until the transaction ends.

    Raises NotFound if there is no such cluster.
    """
    stmt = (
        select(Cluster)
        .where(Cluster.id == cluster_id)
        .with_for_update(key_share=True)
        .execution_options(populate_existing=True)
    )
    if with_nodes:
        stmt = stmt.options(selectinload(Cluster.nodes))
    cluster = session.scalars(stmt).one_or_none()
    if cluster is None:
        raise NotFound(f"Cluster {cluster_id} not found")
    return cluster


def ensure_idle(cluster: Cluster) -> None:
    """Raise ClusterBusy (409, the seed's message) if a job holds the cluster's lock."""
    if cluster.operation_status != LockStatus.IDLE:
        raise ClusterBusy(cluster.operation_locked_by or "unknown", cluster.current_job_id)


def acquire_cluster_lock(
    session: WriteSession, cluster: Cluster, job: Job, ttl: float, now: datetime | None = None
) -> int:
    """Give the lock of ``cluster`` (already locked for update) to ``job``; return its token.

    The job row and the lock are written in the caller's transaction, so they commit together
    or not at all. Raises ClusterBusy if the lock is held.
    """
    ensure_idle(cluster)
    now = now or utcnow()
    if job.id is None:
        session.flush()
    cluster.operation_status = LockStatus.RUNNING
    cluster.current_job_id = job.id
    cluster.operation_started_at = now
    cluster.operation_locked_by = job.operation
    cluster.lock_expires_at = now + timedelta(seconds=ttl)
    cluster.lock_token = (cluster.lock_token or 0) + 1
    job.status = JobStatus.RUNNING
    job.fencing_token = cluster.lock_token
    session.flush()
    notify_workers(session)
    return cluster.lock_token


def _held_by(job_id: int, token: int):  # type: ignore[no-untyped-def]
    return (
        (Cluster.current_job_id == job_id)
        & (Cluster.lock_token == token)
        & (Cluster.operation_status == LockStatus.RUNNING)
    )


def holds_lock(session: WriteSession, cluster_id: int, job_id: int, token: int) -> bool:
    """True if ``job_id`` with fencing ``token`` still holds the lock; locks the row for update."""
    row = session.execute(
        select(Cluster.id)
        .where(Cluster.id == cluster_id, _held_by(job_id, token))
        .with_for_update(key_share=True)
    ).first()
    return row is not None


def renew_cluster_lock(
    session: WriteSession, cluster_id: int, job_id: int, token: int, ttl: float
) -> bool:
    """Extend the lease; False if the job no longer holds the lock (it must stop)."""
    result = session.execute(
        update(Cluster)
        .where(Cluster.id == cluster_id, _held_by(job_id, token))
        .values(lock_expires_at=utcnow() + timedelta(seconds=ttl))
        .execution_options(synchronize_session=False)
    )
    rowcount: int = result.rowcount  # type: ignore[attr-defined]
    return rowcount == 1


def release_cluster_lock(session: WriteSession, cluster_id: int, job_id: int, token: int) -> bool:
    """Return the cluster to idle if, and only if, ``job_id`` with ``token`` holds the lock.

    Called from ``finally`` blocks; returns False (and changes nothing) for a stale holder.
    """
    held = select(Cluster.operation_locked_by, Cluster.operation_started_at)
    held_by = session.execute(held.where(Cluster.id == cluster_id, _held_by(job_id, token))).first()
    result = session.execute(
        update(Cluster)
        .where(Cluster.id == cluster_id, _held_by(job_id, token))
        .values(
            operation_status=LockStatus.IDLE,
            current_job_id=None,
            operation_started_at=None,
            operation_locked_by=None,
            lock_expires_at=None,
        )
        .execution_options(synchronize_session=False)
    )
    rowcount: int = result.rowcount  # type: ignore[attr-defined]
    if rowcount == 1 and held_by is not None:
        metrics.lock_released(session, *held_by)
    return rowcount == 1


def hand_over_cluster_lock(
    session: WriteSession, cluster: Cluster, job_id: int, token: int, successor: Job, ttl: float
) -> int | None:
    """Pass the lock of ``cluster`` (already locked for update) from ``job_id`` straight to
    ``successor`` (G3), with no idle moment in between for another job to slip into. Returns the
    successor's token, or None (nothing written) if ``job_id`` with ``token`` no longer holds it.
    """
    held = (cluster.operation_status, cluster.current_job_id, cluster.lock_token)
    if held != (LockStatus.RUNNING, job_id, token):
        return None
    metrics.lock_released(session, cluster.operation_locked_by, cluster.operation_started_at)
    now = utcnow()
    cluster.current_job_id = successor.id
    cluster.operation_started_at = now
    cluster.operation_locked_by = successor.operation
    cluster.lock_expires_at = now + timedelta(seconds=ttl)
    cluster.lock_token = token + 1
    successor.status = JobStatus.RUNNING
    successor.fencing_token = cluster.lock_token
    session.flush()
    notify_workers(session)
    return cluster.lock_token
