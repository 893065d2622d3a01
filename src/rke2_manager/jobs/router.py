"""Job endpoints: list, show, log [routers/jobs.py]."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, Query
from fastapi.responses import StreamingResponse

from rke2_manager.api import problems
from rke2_manager.api.auth import VIEWER, OperatorActor
from rke2_manager.api.deps import MAX_ID, CtxDep, JobId, ReadSessionDep
from rke2_manager.jobs import service
from rke2_manager.jobs.control import cancel_job as cancel
from rke2_manager.jobs.schemas import JobLog, JobOut, LogLine, job_out
from rke2_manager.jobs.stopping import end_stopped
from rke2_manager.models import JobStatus

router = APIRouter(prefix="/api/jobs", tags=["jobs"])


@router.get(
    "",
    response_model=list[JobOut],
    dependencies=[VIEWER],
    responses=problems.responses(400, 401, 403, 422),
)
def list_jobs(
    session: ReadSessionDep,
    cluster_id: Annotated[
        int | None, Query(ge=1, le=MAX_ID, description="only this cluster's jobs", examples=[1])
    ] = None,
    status: Annotated[
        JobStatus | None, Query(description="only jobs in this status", examples=["running"])
    ] = None,
    limit: Annotated[
        int, Query(ge=1, le=500, description="at most this many jobs", examples=[100])
    ] = 100,
    offset: Annotated[
        int, Query(ge=0, le=MAX_ID, description="skip this many (newest first)", examples=[0])
    ] = 0,
) -> list[JobOut]:
    """Jobs, newest first."""
    return [job_out(j) for j in service.list_jobs(session, cluster_id, status, limit, offset)]


@router.get(
    "/{job_id}",
    response_model=JobOut,
    dependencies=[VIEWER],
    responses=problems.responses(400, 401, 403, 404, 422),
)
def get_job(job_id: JobId, session: ReadSessionDep) -> JobOut:
    return job_out(service.get_job(session, job_id))


@router.post(
    "/{job_id}/cancel",
    response_model=JobOut,
    responses=problems.responses(400, 401, 403, 404, 409, 413, 422),
)
def cancel_job(job_id: JobId, ctx: CtxDep, actor: OperatorActor, tasks: BackgroundTasks) -> JobOut:
    """Cancel a queued job (it leaves the queue) or a running one: its run is ended (every
    process of it), then its nodes' state is recorded as unknown and the lock passed on; the
    answer comes once that is done. 409 if the job has already ended."""
    with ctx.db.transaction() as session:
        job = cancel(session, ctx.settings, job_id, actor)
    if not JobStatus(job.status).is_final:
        job = end_stopped(ctx, job)  # the run is ended before the lock moves on
    tasks.add_task(ctx.wake_workers)
    return job_out(job)


@router.get(
    "/{job_id}/log",
    response_model=JobLog,
    dependencies=[VIEWER],
    responses=problems.responses(400, 401, 403, 404, 422),
)
def get_log(
    job_id: JobId,
    session: ReadSessionDep,
    after: Annotated[
        int,
        Query(ge=0, le=MAX_ID, description="only lines after this seq (next_seq)", examples=[0]),
    ] = 0,
    limit: Annotated[
        int, Query(ge=1, le=10_000, description="at most this many lines", examples=[1000])
    ] = 1000,
) -> JobLog:
    """The job's output lines after ``after``; poll with ``next_seq`` to follow it."""
    job = service.get_job(session, job_id)
    lines = service.read_log(session, job_id, after, limit)
    return JobLog(
        job_id=job.id,
        status=job.status,
        lines=[LogLine(seq=line.seq, text=line.text) for line in lines],
        next_seq=lines[-1].seq if lines else after,
        finished=JobStatus(job.status).is_final,
    )


@router.get(
    "/{job_id}/log/follow",
    dependencies=[VIEWER],
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "The output, as it comes",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        },
        **problems.responses(400, 401, 403, 404, 422),
    },
)
async def follow_log(job_id: JobId, ctx: CtxDep) -> StreamingResponse:
    """Stream the job's output as plain text until the job ends (like ``tail -f``)."""
    with ctx.db.read_session() as session:
        service.get_job(session, job_id)

    def chunk(after: int) -> tuple[list[str], int, bool]:
        with ctx.db.read_session() as session:
            job = service.get_job(session, job_id)
            lines = service.read_log(session, job_id, after, 1000)
            last = lines[-1].seq if lines else after
            return [f"{line.text}\n" for line in lines], last, JobStatus(job.status).is_final

    async def stream() -> AsyncIterator[str]:
        after = 0
        while True:
            lines, after, done = await asyncio.to_thread(chunk, after)
            for line in lines:
                yield line
            if done and not lines:
                return
            if not lines:
                await asyncio.sleep(0.5)

    return StreamingResponse(stream(), media_type="text/plain")
