"""Response bodies of the job endpoints."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from rke2_manager.jobs.create import Accepted
from rke2_manager.validation import example_of

_AT = "2026-12-02T10:00:00Z"
_OPERATION_DOC = (
    "install, scale_add_masters, scale_add_workers, scale_remove_masters, "
    "scale_remove_workers, upgrade, snapshot_save, snapshot_delete, restore, forget_node or "
    "preflight"
)
_STATUS_DOC = "queued, running, succeeded, failed or canceled"


class JobNode(BaseModel):
    """A node the job works on."""

    id: int | None = Field(
        description="The node's id; null once the node was removed", examples=[7]
    )
    hostname: str = Field(description="The node's name", examples=["w2"])
    ip: str = Field(description="The node's address", examples=["10.0.0.5"])
    role: str = Field(description="server or agent", examples=["agent"])


class HostProgress(BaseModel):
    """Where one host of a running job is: the task it is in now (null between tasks), the
    last task it finished, and since when. A host whose ``since`` stays old is stuck."""

    task: str | None = Field(
        None,
        description="The task the host is in now; null between tasks",
        examples=["Start rke2-agent"],
    )
    last: str | None = Field(
        None, description="The last task the host finished", examples=["Install RKE2"]
    )
    since: datetime | None = Field(
        None,
        description="When the host entered its current task (or finished its last)",
        examples=[_AT],
    )


class JobOut(BaseModel):
    """A job: one operation on a cluster, run by a worker."""

    id: int = Field(description="The job's id", examples=[42])
    cluster_id: int = Field(description="The cluster it changes", examples=[1])
    operation: str = Field(description=_OPERATION_DOC, examples=["scale_add_workers"])
    status: str = Field(description=_STATUS_DOC, examples=["running"])
    reason: str | None = Field(
        description="Why the job failed or was canceled (who and why); null otherwise",
        examples=[None, "canceled by ci-deployer"],
    )
    nodes: list[JobNode] = Field(
        description="The nodes the job adds, installs or removes", examples=[[example_of(JobNode)]]
    )
    warnings: list[str] = Field(
        description="What the guardrails noted but did not refuse",
        examples=[["2 servers: etcd tolerates no failure; add a third"]],
    )
    requested_by: str = Field(description="Who started the job", examples=["ci-deployer"])
    predecessor_id: int | None = Field(
        description="A job that must succeed before this one starts (G3: servers before agents)",
        examples=[None, 41],
    )
    progress: dict[str, HostProgress] = Field(
        description="Per host of the run (targets and the servers it works through), updated "
        "as it runs",
        examples=[{"w2": {"task": "Start rke2-agent", "last": "Install RKE2", "since": _AT}}],
    )
    worker_id: str | None = Field(
        description="The worker running the job (``host:machine:boot:pid:nonce``), once one has "
        "claimed it",
        examples=["mgr1:4f3c:9a1b:1234:c0ffee"],
    )
    snapshot: str | None = Field(
        None,
        description="The etcd snapshot the job saved (a save, or the automatic one before a "
        "server removal or an upgrade) or restored, by its full name as listed",
        examples=[None, "pre-remove-42-m1-1764680000"],
    )
    created_at: datetime = Field(description="When the job was requested", examples=[_AT])
    started_at: datetime | None = Field(
        description="When a worker started it; null while queued", examples=[_AT]
    )
    finished_at: datetime | None = Field(
        description="When it ended; null until then", examples=[None]
    )


class OperationAccepted(BaseModel):
    """202 body of every job-starting call (``sequenced``/``workers_pending`` are G3's)."""

    job_id: int = Field(description="The job started (or queued) first", examples=[42])
    status: str = Field(description="That job's status: running or queued", examples=["running"])
    position: int | None = Field(
        description="Place in the cluster's queue when status is queued (1 = next)",
        examples=[None, 1],
    )
    job: JobOut = Field(description="That job", examples=[example_of(JobOut)])
    jobs: list[JobOut] = Field(
        description="Every job the call created, in the order they run (two when servers and "
        "agents were added together)",
        examples=[[example_of(JobOut)]],
    )
    sequenced: bool = Field(
        description="G3: servers and agents were split into two jobs, servers first",
        examples=[False],
    )
    workers_pending: int = Field(
        description="G3: how many agents wait for the servers' job", examples=[0]
    )
    workers_job_id: int | None = Field(
        description="G3: the agents' job, which starts once the servers' job succeeds",
        examples=[None, 43],
    )
    warnings: list[str] = Field(
        description="What the guardrails noted but did not refuse", examples=[[]]
    )


class QueuedJob(BaseModel):
    """A job waiting for its cluster's lock."""

    position: int = Field(description="Place in the queue (1 = next)", examples=[1])
    job: JobOut = Field(description="The job", examples=[example_of(JobOut)])


class LogLine(BaseModel):
    """One line of a job's output."""

    seq: int = Field(description="The line's number in the job's output", examples=[17])
    text: str = Field(
        description="The line (secrets redacted)", examples=["TASK [Install RKE2] ***"]
    )


class JobLog(BaseModel):
    """A page of a job's output."""

    job_id: int = Field(description="The job", examples=[42])
    status: str = Field(description=_STATUS_DOC, examples=["running"])
    lines: list[LogLine] = Field(
        description="The lines after the requested position", examples=[[example_of(LogLine)]]
    )
    next_seq: int = Field(
        description="Pass as ``after`` to read only what came since", examples=[17]
    )
    finished: bool = Field(
        description="The job has ended: no more lines will come", examples=[False]
    )


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
        snapshot=job.snapshot,
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
