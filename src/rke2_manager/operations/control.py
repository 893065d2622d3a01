"""Ending jobs from outside their worker: cancel, force-unlock, lease expiry, start-up recovery
(each through :func:`rke2_manager.settle.settle`), and the sweep that starts queued jobs of idle
clusters. Services flush; callers commit.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from sqlalchemy import select
from sqlalchemy.orm import Session

from rke2_manager import audit
from rke2_manager.cluster_lock import lock_cluster_row
from rke2_manager.config import Settings
from rke2_manager.errors import Conflict, NotFound
from rke2_manager.models import Cluster, Job, JobStatus, LockStatus, utcnow
from rke2_manager.operations.dispatch import cancel_successors, queued_jobs, start_next
from rke2_manager.settle import settle

LEASE_EXPIRED = "lock lease expired: worker lost"


def cancel_job(session: Session, settings: Settings, job_id: int, actor: str) -> Job:
    """Cancel a queued job (it leaves the queue) or a running one (its run is stopped, the lock
    passes on). Raises NotFound, Conflict if the job has already ended."""
    job = session.get(Job, job_id)
    if job is None:
        raise NotFound(f"Job {job_id} not found")
    lock_cluster_row(session, job.cluster_id, with_nodes=False)
    session.refresh(job)
    if JobStatus(job.status).is_final:
        raise Conflict(f"Job {job_id} has already ended ({job.status})", job_id=job_id)
    reason = f"canceled by {actor}"
    if job.status == JobStatus.QUEUED:
        job.status, job.reason, job.finished_at = JobStatus.CANCELED, reason, utcnow()
        cancel_successors(session, job)
    else:
        settle(session, settings, job, JobStatus.CANCELED, reason)
    audit.record(session, actor, "job.cancel", job.cluster_id, job.id)
    return job


def force_unlock(
    session: Session, settings: Settings, cluster_id: int, job_id: int, reason: str, actor: str
) -> Job:
    """Admin: free the lock held by ``job_id`` (which the caller must name, like
    ``terraform force-unlock``); the job ends ``canceled`` with who and why.

    Raises NotFound, Conflict (409) if the cluster is not locked or another job holds it.
    """
    cluster = lock_cluster_row(session, cluster_id)
    if cluster.operation_status != LockStatus.RUNNING or cluster.current_job_id is None:
        raise Conflict(f"Cluster {cluster_id} is not locked", current_job_id=None)
    if cluster.current_job_id != job_id:
        raise Conflict(
            f"Cluster {cluster_id} is locked by job {cluster.current_job_id} "
            f"('{cluster.operation_locked_by}'), not job {job_id}",
            current_job_id=cluster.current_job_id,
            operation=cluster.operation_locked_by,
        )
    job = session.get(Job, job_id)
    assert job is not None
    settle(session, settings, job, JobStatus.CANCELED, f"force-unlocked by {actor}: {reason}")
    audit.record(session, actor, "cluster.force_unlock", cluster_id, job_id, reason=reason)
    return job


def needs_maintenance(session: Session) -> bool:
    """A cheap read: is any lease expired, or any idle cluster's queue waiting?"""
    expired = select(Cluster.id).where(
        Cluster.operation_status == LockStatus.RUNNING, Cluster.lock_expires_at < utcnow()
    )
    waiting = (
        select(Job.id)
        .join(Cluster, Cluster.id == Job.cluster_id)
        .where(
            Job.status == JobStatus.QUEUED,
            Job.predecessor_id.is_(None),
            Cluster.operation_status == LockStatus.IDLE,
        )
    )
    return (
        session.scalar(expired.limit(1)) is not None or session.scalar(waiting.limit(1)) is not None
    )


def reap_expired(session: Session, settings: Settings) -> list[int]:
    """End the jobs whose lock lease ran out (their worker died) and pass their locks on.

    Safe with several reapers at once: rows are taken ``FOR UPDATE SKIP LOCKED``.
    """
    clusters = session.scalars(
        select(Cluster)
        .where(Cluster.operation_status == LockStatus.RUNNING, Cluster.lock_expires_at < utcnow())
        .order_by(Cluster.id)
        .with_for_update(skip_locked=True, key_share=True)
    ).all()
    reaped = []
    for cluster in clusters:
        job = session.get(Job, cluster.current_job_id) if cluster.current_job_id else None
        if job is None:
            continue
        settle(session, settings, job, JobStatus.FAILED, LEASE_EXPIRED)
        audit.record(session, "reaper", "job.lease_expired", cluster.id, job.id)
        reaped.append(job.id)
    return reaped


def start_queued(session: Session, settings: Settings) -> list[int]:
    """Start queued jobs of idle clusters (normally the ending job does it; this is the net)."""
    started = []
    ids = session.scalars(
        select(Job.cluster_id)
        .join(Cluster, Cluster.id == Job.cluster_id)
        .where(
            Job.status == JobStatus.QUEUED,
            Job.predecessor_id.is_(None),
            Cluster.operation_status == LockStatus.IDLE,
        )
        .distinct()
    ).all()
    for cluster_id in ids:
        cluster = lock_cluster_row(session, cluster_id)
        if cluster.operation_status == LockStatus.IDLE and queued_jobs(session, cluster_id):
            job = start_next(session, settings, cluster)
            if job is not None:
                started.append(job.id)
    return started


def recover_dead_workers(
    session: Session, settings: Settings, machine: str, alive: Callable[[str], bool]
) -> list[int]:
    """At start-up: end the running jobs of this machine's workers (ids starting with
    ``machine``) that are gone (``alive`` says no), without waiting for their leases."""
    jobs = session.scalars(
        select(Job).where(
            Job.status == JobStatus.RUNNING, Job.worker_id.startswith(machine, autoescape=True)
        )
    ).all()
    ended = []
    for job in jobs:
        if job.worker_id is None or alive(job.worker_id):
            continue
        lock_cluster_row(session, job.cluster_id, with_nodes=False)
        session.refresh(job)
        if job.status != JobStatus.RUNNING:
            continue
        settle(
            session,
            settings,
            job,
            JobStatus.FAILED,
            f"worker {job.worker_id} stopped while the job ran (found at start-up)",
        )
        audit.record(session, "worker", "job.recovered", job.cluster_id, job.id)
        ended.append(job.id)
    return ended


def _first_line(path: str) -> str:
    try:
        with open(path) as fh:
            return fh.read().strip().replace("-", "")[:12]
    except OSError:
        return ""


def machine_id() -> str:
    """This machine's id (``/etc/machine-id``), or "" when it has none."""
    return _first_line("/etc/machine-id")


def boot_id() -> str:
    """This boot's id: a worker id from another boot of this machine belongs to a dead worker."""
    return _first_line("/proc/sys/kernel/random/boot_id")


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
