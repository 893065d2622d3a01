"""Ending a job from outside its worker: cancel and force-unlock. A job no worker runs yet
ends at once (:func:`rke2_manager.jobs.settle.settle`); one that runs is asked to stop, and the
caller waits for its run to end (:mod:`rke2_manager.jobs.stopping`). Services flush; callers
commit.
"""

from __future__ import annotations

from rke2_manager import audit, metrics
from rke2_manager.cluster_lock import lock_cluster_row
from rke2_manager.config import Settings
from rke2_manager.db import WriteSession
from rke2_manager.errors import Conflict, NotFound
from rke2_manager.jobs.queue import cancel_successors
from rke2_manager.jobs.settle import settle
from rke2_manager.jobs.stopping import request_stop
from rke2_manager.models import Job, JobStatus, LockStatus, utcnow


def _stop(
    session: WriteSession, settings: Settings, job: Job, status: JobStatus, reason: str
) -> None:
    """End a running job now if no worker runs it yet, else ask its worker to (it settles the
    job once its run has ended; see :func:`rke2_manager.jobs.stopping.end_stopped`)."""
    if job.worker_id is None:
        settle(session, settings, job, status, reason)
    else:
        request_stop(job, status, reason)


def cancel_job(session: WriteSession, settings: Settings, job_id: int, actor: str) -> Job:
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
    session: WriteSession, settings: Settings, cluster_id: int, job_id: int, reason: str, actor: str
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
    metrics.force_unlocked(session, job.operation)
    return job
