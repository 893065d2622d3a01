"""Response bodies of the job endpoints."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel

from rke2_manager.jobs.create import Accepted


class JobNode(BaseModel):
    id: int | None
    hostname: str
    ip: str
    role: str


class HostProgress(BaseModel):
    """Where one host of a running job is: the task it is in now (null between tasks), the
    last task it finished, and since when. A host whose ``since`` stays old is stuck."""

    task: str | None = None
    last: str | None = None
    since: datetime | None = None


class JobOut(BaseModel):
    id: int
    cluster_id: int
    operation: str
    status: str
    reason: str | None
    nodes: list[JobNode]
    warnings: list[str]
    requested_by: str
    predecessor_id: int | None
    progress: dict[str, HostProgress]
    """Per host of the run (targets and the servers it works through), updated as it runs."""
    worker_id: str | None
    """The worker running the job (``host:machine:boot:pid:nonce``), once one has claimed it."""
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class OperationAccepted(BaseModel):
    """202 body of every job-starting call (``sequenced``/``workers_pending`` are G3's)."""

    job_id: int
    status: str
    position: int | None
    """Place in the cluster's queue when ``status`` is ``queued`` (1 = next)."""
    job: JobOut
    jobs: list[JobOut]
    sequenced: bool
    workers_pending: int
    workers_job_id: int | None
    warnings: list[str]


class QueuedJob(BaseModel):
    position: int
    job: JobOut


class LogLine(BaseModel):
    seq: int
    text: str


class JobLog(BaseModel):
    job_id: int
    status: str
    lines: list[LogLine]
    next_seq: int
    """Pass as ``after`` to read only what came since."""
    finished: bool


def job_out(job: Any) -> JobOut:
    return JobOut(
        id=job.id,
        cluster_id=job.cluster_id,
        operation=job.operation,
        status=job.status,
        reason=job.reason,
        nodes=[JobNode(**t) for t in job.targets],
        warnings=job.warnings,
        requested_by=job.requested_by,
        predecessor_id=job.predecessor_id,
        progress={
            host: HostProgress.model_validate(entry)
            for host, entry in (job.progress or {}).items()
            if isinstance(entry, dict)
        },
        worker_id=job.worker_id,
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
    )


def accepted_out(result: Accepted) -> OperationAccepted:
    jobs = [result.job, *result.waiting]
    return OperationAccepted(
        job_id=result.job.id,
        status=result.job.status,
        position=result.position,
        job=job_out(result.job),
        jobs=[job_out(j) for j in jobs],
        sequenced=result.sequenced,
        workers_pending=result.workers_pending,
        workers_job_id=result.waiting[0].id if result.waiting else None,
        warnings=result.warnings,
    )
