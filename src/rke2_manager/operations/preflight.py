"""``POST /api/clusters/{id}/preflight`` (a job) and ``GET /api/jobs/{id}/preflight`` (its
results, and those of an install or scale add, which run the same checks first)."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, BackgroundTasks
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from rke2_manager.api import problems
from rke2_manager.api.auth import VIEWER, OperatorActor
from rke2_manager.api.deps import ClusterId, CtxDep, JobId, ReadSessionDep
from rke2_manager.errors import NotFound
from rke2_manager.jobs import preflight as service
from rke2_manager.jobs.schemas import OperationAccepted
from rke2_manager.models import Job
from rke2_manager.operations import plan
from rke2_manager.operations.router import (
    ACCEPTED,
    OnBusyQuery,
    SkipPreflightQuery,
    start_job,
)

router = APIRouter(tags=["preflight"])


class CheckOut(BaseModel):
    """One check on one host."""

    check: str = Field(description="The check: " + ", ".join(service.CHECKS), examples=["ports"])
    result: Literal["pass", "warn", "fail"] = Field(
        description="pass; warn (the job goes on); fail (the job stops, unless skipped)",
        examples=["fail"],
    )
    message: str = Field(
        description="What the host showed", examples=["in use: 9345 (by haproxy, pid 812)"]
    )
    fix: str | None = Field(
        description="How to fix it; null for a pass",
        examples=["stop what listens there (ss -ltnp shows it): ..."],
    )
    skipped: bool = Field(
        description="A failure the caller overrode with skip_preflight", examples=[False]
    )


class PreflightOut(BaseModel):
    """A job's preflight results, per host."""

    job_id: int = Field(description="The job", examples=[42])
    operation: str = Field(
        description="preflight, install, scale_add_masters or scale_add_workers",
        examples=["preflight"],
    )
    status: str = Field(description="The job's status", examples=["failed"])
    hosts: dict[str, list[CheckOut]] = Field(
        description="Each host's checks, in the order it ran them; empty until they ran",
        examples=[{"m1": [{"check": "swap", "result": "warn", "message": "swap is on: ..."}]}],
    )
    failed: dict[str, list[str]] = Field(
        description="Per host, the failed checks that were not skipped (they stop the job)",
        examples=[{"m1": ["ports"]}],
    )
    unreported: list[str] = Field(
        description="Hosts the job was to check that reported nothing (unreachable, or sudo "
        "failed: the job's reason says why)",
        examples=[[]],
    )


@router.post(
    "/api/clusters/{cluster_id}/preflight",
    status_code=202,
    response_model=OperationAccepted,
    responses=ACCEPTED,
)
def preflight(
    cluster_id: ClusterId,
    read: ReadSessionDep,
    ctx: CtxDep,
    actor: OperatorActor,
    tasks: BackgroundTasks,
    skip_preflight: SkipPreflightQuery = [],  # noqa: B006 (FastAPI copies defaults)
    on_busy: OnBusyQuery = "reject",
    dry_run: plan.DryRunQuery = False,
) -> OperationAccepted | JSONResponse:
    """Check every node of the cluster (SSH and sudo, OS and architecture, CPU and memory,
    ports, reachability of the servers, swap, clock, NetworkManager and firewalld, free disk)
    without changing anything: a job under the cluster's lock, whose results are at
    ``GET /api/jobs/{id}/preflight``. It fails when a check not named in skip_preflight fails."""
    return start_job(
        ctx,
        read,
        tasks,
        cluster_id,
        on_busy,
        dry_run,
        lambda s: service.start_preflight(
            s, ctx.settings, cluster_id, skip_preflight, actor, on_busy
        ),
    )


@router.get(
    "/api/jobs/{job_id}/preflight",
    response_model=PreflightOut,
    dependencies=[VIEWER],
    responses=problems.responses(400, 401, 403, 404, 422),
)
def preflight_results(job_id: JobId, session: ReadSessionDep) -> PreflightOut:
    """The preflight results of a job (preflight, install or scale add), per host."""
    job = session.get(Job, job_id)
    if job is None:
        raise NotFound(f"Job {job_id} not found")
    if job.operation not in plan.PREFLIGHT_FIRST:
        raise NotFound(
            f"Job {job_id} ({job.operation}) ran no preflight checks: preflight, install and "
            "scale add jobs do"
        )
    results = job.preflight if isinstance(job.preflight, dict) else {}
    checked = [str(n) for n in (job.params or {}).get("nodes") or [] if isinstance(n, str)]
    checked += [str(t.get("hostname")) for t in job.targets or [] if isinstance(t, dict)]
    return PreflightOut(
        job_id=job.id,
        operation=job.operation,
        status=job.status,
        hosts={host: [CheckOut(**c) for c in checks] for host, checks in results.items()},
        failed=service.failed_checks(results),
        unreported=[h for h in dict.fromkeys(checked) if h not in results]
        if job.finished_at is not None
        else [],
    )
