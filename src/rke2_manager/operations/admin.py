"""Admin endpoints: force-unlock (admin role)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, BackgroundTasks
from pydantic import Field

from rke2_manager.api import problems
from rke2_manager.api.auth import AdminActor
from rke2_manager.api.deps import MAX_ID, ClusterId, CtxDep
from rke2_manager.jobs.control import force_unlock
from rke2_manager.jobs.schemas import JobOut, job_out
from rke2_manager.jobs.stopping import end_stopped
from rke2_manager.models import JobStatus
from rke2_manager.validation import StrictModel

router = APIRouter(prefix="/api/admin", tags=["admin"])


class ForceUnlockIn(StrictModel):
    """Which job to stop, and why (recorded in the job and the audit log)."""

    job_id: Annotated[int, Field(ge=1, le=MAX_ID)] = Field(
        description="The job the caller expects to hold the lock (see "
        "GET /api/clusters/{id}/lock); 409 if another one does",
        examples=[42],
    )
    reason: Annotated[str, Field(min_length=1, max_length=500)] = Field(
        description="Why the lock is forced", examples=["worker host lost; job will not return"]
    )


@router.post(
    "/clusters/{cluster_id}/force-unlock",
    response_model=JobOut,
    responses=problems.responses(400, 401, 403, 404, 409, 413, 422),
)
def force_unlock_cluster(
    cluster_id: ClusterId,
    body: ForceUnlockIn,
    ctx: CtxDep,
    actor: AdminActor,
    tasks: BackgroundTasks,
) -> JobOut:
    """Stop the job holding the cluster's lock and free the lock; 409 if ``job_id`` does not
    hold it. The job's run is ended first (if its worker does not within
    ``RKE2M_STOP_TIMEOUT``, here when it runs on this machine; else the nodes' fences refuse
    it); the job ends ``canceled`` with who and why; an audit entry records it."""
    with ctx.db.transaction() as session:
        job = force_unlock(session, ctx.settings, cluster_id, body.job_id, body.reason, actor)
    if not JobStatus(job.status).is_final:
        job = end_stopped(ctx, job)  # the run is ended before the lock moves on
    tasks.add_task(ctx.wake_workers)
    return job_out(job)
