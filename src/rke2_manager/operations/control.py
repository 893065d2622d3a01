"""Ending jobs from outside their worker: cancel, force-unlock, lease expiry, start-up recovery
(each through :func:`rke2_manager.settle.settle`), and the sweep that starts queued jobs of idle
clusters. Services flush; callers commit.
"""

from __future__ import annotations

from collections.abc import Callable, Container, Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from rke2_manager import audit
from rke2_manager.cluster_lock import lock_cluster_row
from rke2_manager.config import Settings
from rke2_manager.errors import Conflict, NotFound
from rke2_manager.jobs.stopping import UNCONFIRMED, machine_prefix, request_stop
from rke2_manager.models import Cluster, Job, JobStatus, LockStatus, utcnow
from rke2_manager.operations.dispatch import cancel_successors, queued_jobs, start_next
from rke2_manager.settle import settle

LEASE_EXPIRED = "lock lease expired: worker lost"


def _stop(session: Session, settings: Settings, job: Job, status: JobStatus, reason: str) -> None:
    """End a running job now if no worker runs it yet, else ask its worker to (it settles the
    job once its run has ended; see :func:`rke2_manager.jobs.stopping.end_stopped`)."""
    if job.worker_id is None:
        settle(session, settings, job, status, reason)
    else:
        request_stop(job, status, reason)


def cancel_job(session: Session, settings: Settings, job_id: int, actor: str) -> Job:
    """Cancel a queued job (it leaves the queue) or a running one (its run is ended, then the
    lock passes on). Raises NotFound, Conflict if the job has already ended.

    A running job that a worker has claimed is only asked to stop here (``job.stop_status``);
    the caller then waits with :func:`~rke2_manager.jobs.stopping.end_stopped`.
    """
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
        _stop(session, settings, job, JobStatus.CANCELED, reason)
    audit.record(session, actor, "job.cancel", job.cluster_id, job.id)
    return job


def force_unlock(
    session: Session, settings: Settings, cluster_id: int, job_id: int, reason: str, actor: str
) -> Job:
    """Admin: free the lock held by ``job_id`` (which the caller must name, like
    ``terraform force-unlock``); the job ends ``canceled`` with who and why, once its run has
    ended (asked here; the caller waits with :func:`~rke2_manager.jobs.stopping.end_stopped`).

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
    _stop(session, settings, job, JobStatus.CANCELED, f"force-unlocked by {actor}: {reason}")
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


def expired_jobs(session: Session) -> list[Job]:
    """The running jobs whose lock lease has run out."""
    return list(
        session.scalars(
            select(Job)
            .join(Cluster, Cluster.current_job_id == Job.id)
            .where(
                Cluster.operation_status == LockStatus.RUNNING,
                Cluster.lock_expires_at < utcnow(),
            )
        )
    )


def reap_expired(session: Session, settings: Settings, ended: Container[int] = ()) -> list[int]:
    """End the jobs whose lock lease ran out (their worker died) and pass their locks on.

    ``ended``: jobs whose runs the caller has ended on this machine (the others' runs, on other
    machines, are refused by the nodes' fences). Safe with several reapers at once: rows are
    taken ``FOR UPDATE SKIP LOCKED``.
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
        reason = LEASE_EXPIRED
        if job.worker_id is not None and job.id not in ended:
            reason += f"; {UNCONFIRMED.format(worker=job.worker_id)}"
        settle(session, settings, job, JobStatus.FAILED, reason)
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
    session: Session, settings: Settings, jobs: Sequence[Job], ended: Container[int]
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
