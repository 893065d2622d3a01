"""Who holds the lock next: G3 hand-over and the per-cluster FIFO queue.

Everything here runs inside a write transaction that already holds the cluster row: the one of
:func:`rke2_manager.jobs.settle.settle` as a job ends, a request's, or the queue sweep's. A job
about to start is checked against the guardrails again, because the cluster may have changed
since it was queued; a job that no longer passes ends ``failed`` with the guardrail's message
and the next one is tried.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from rke2_manager.cluster_lock import (
    acquire_cluster_lock,
    hand_over_cluster_lock,
    lock_cluster_row,
    release_cluster_lock,
)
from rke2_manager.config import Settings
from rke2_manager.db import WriteSession
from rke2_manager.errors import DomainError
from rke2_manager.jobs.plans import check_request, request_of
from rke2_manager.models import Cluster, Job, JobStatus, utcnow


def queued_jobs(session: Session, cluster_id: int) -> list[Job]:
    """The cluster's queue: queued jobs that wait for the lock (not for a predecessor), FIFO."""
    return list(
        session.scalars(
            select(Job)
            .where(
                Job.cluster_id == cluster_id,
                Job.status == JobStatus.QUEUED,
                Job.predecessor_id.is_(None),
            )
            .order_by(Job.id)
        )
    )


def queue_position(session: Session, job: Job) -> int | None:
    """1 for the job that starts next; None for a job that is not in the queue."""
    ids = [j.id for j in queued_jobs(session, job.cluster_id)]
    return ids.index(job.id) + 1 if job.id in ids else None


def _end(job: Job, status: JobStatus, reason: str) -> None:
    job.status, job.reason, job.finished_at = status, reason, utcnow()


def cancel_successors(session: WriteSession, job: Job) -> None:
    """G3: the agents job waiting on a servers job that did not succeed is canceled."""
    for successor in session.scalars(
        select(Job).where(Job.predecessor_id == job.id, Job.status == JobStatus.QUEUED)
    ):
        _end(successor, JobStatus.CANCELED, f"servers job {job.id} failed")
        cancel_successors(session, successor)


def begin(session: WriteSession, cluster: Cluster, job: Job) -> None:
    """Re-check a waiting job's guardrails and apply it (create its nodes, …); raises 4xx."""
    request = request_of(job)
    # The supervisor probe is not repeated here: a worker must not wait on the network while it
    # holds the cluster row. G1's status rule still applies.
    at_start = check_request(cluster, request, None, "off")
    job.warnings = [*job.warnings, *(w for w in at_start if w not in job.warnings)]
    request.apply(session, cluster, job)


def start_next(session: WriteSession, settings: Settings, cluster: Cluster) -> Job | None:
    """The lock of ``cluster`` is free: give it to the oldest queued job that still passes."""
    for job in queued_jobs(session, cluster.id):
        try:
            begin(session, cluster, job)
        except DomainError as exc:
            _end(job, JobStatus.FAILED, exc.detail)
            cancel_successors(session, job)
            continue
        acquire_cluster_lock(session, cluster, job, settings.lock_ttl)
        return job
    return None


def pass_on(
    session: WriteSession,
    settings: Settings,
    cluster_id: int,
    job: Job,
    token: int,
    succeeded: bool,
) -> Job | None:
    """``job`` has ended: hand the lock to its G3 successor if it succeeded (nothing can slip in
    between), else cancel the successor; otherwise release it and start the next queued job.

    Returns the job that holds the lock afterwards, if any. Writes nothing if ``job`` with
    ``token`` no longer holds the lock.
    """
    cluster = lock_cluster_row(session, cluster_id)
    if cluster.current_job_id != job.id or cluster.lock_token != token:
        return None
    successor = session.scalars(
        select(Job)
        .where(Job.predecessor_id == job.id, Job.status == JobStatus.QUEUED)
        .order_by(Job.id)
    ).first()
    if succeeded and successor is not None:
        try:
            begin(session, cluster, successor)
        except DomainError as exc:
            _end(successor, JobStatus.FAILED, exc.detail)
            cancel_successors(session, successor)
        else:
            hand_over_cluster_lock(session, cluster, job.id, token, successor, settings.lock_ttl)
            return successor
    else:
        cancel_successors(session, job)
    release_cluster_lock(session, cluster_id, job.id, token)
    return start_next(session, settings, lock_cluster_row(session, cluster_id))
