"""``GET /api/jobs/{id}/events``: a job's live events as Server-Sent Events (docs/events.md).

The stream reads the job's durable sequence (:mod:`rke2_manager.jobs.events`) from the
database, so a client that reconnects with ``Last-Event-ID`` to any API process of the same
database resumes right after the last event it saw. It sends a ``job`` snapshot first and
whenever the job's status changes, then every stored event in order, a keep-alive comment
while nothing happens, and ``end`` once the job has ended; then it closes.

Access is checked again every :data:`RECHECK` seconds while the stream is open: a revoked
token (or a first token created while a loopback caller watched in protected mode) ends the
stream with an ``access`` comment, and the reconnect gets the 401.

Bounded: at most :data:`BATCH` events are read (and held) at once, the next read only after
they were sent (a slow reader slows its stream, not the server's memory), and each process
serves at most :data:`MAX_STREAMS` streams at once (503 beyond).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import StreamingResponse

from rke2_manager.api import problems
from rke2_manager.api.auth import VIEWER, authenticate
from rke2_manager.api.deps import MAX_ID, CtxDep, JobId
from rke2_manager.context import AppContext
from rke2_manager.errors import DomainError, Unauthorized
from rke2_manager.jobs import events, service
from rke2_manager.jobs.schemas import job_out
from rke2_manager.models import Job, JobStatus

router = APIRouter(prefix="/api/jobs", tags=["jobs"])

#: Seconds between database reads while nothing new came.
POLL = 0.5
#: Seconds of silence after which a keep-alive comment is sent.
KEEPALIVE = 15.0
#: Seconds between checks that the caller may still read the stream.
RECHECK = 15.0
#: Events read from the database (and held) at once.
BATCH = 500
#: Streams one process serves at once.
MAX_STREAMS = 200
#: What the client is told to wait before reconnecting (``retry:``), in milliseconds.
RETRY_MS = 2000


class TooManyStreams(DomainError):
    status_code = 503
    title = "Service Unavailable"


@dataclass
class _Read:
    found: bool
    job: dict[str, Any] | None
    """The job's snapshot, if its status differs from the one last sent."""
    stored: list[events.Stored]
    end: tuple[int, dict[str, Any]] | None
    status: str | None
    upto: int = 0
    """The last id this read covers."""
    more: bool = False
    """More events are stored than this read took."""


def _read(ctx: AppContext, job_id: int, after: int, sent_status: str | None) -> _Read:
    with ctx.db.read_session() as session:
        job = session.get(Job, job_id)
        if job is None:
            return _Read(False, None, [], None, None)
        # event_seq is read before the rows: every row up to it is visible (jobs/events.py)
        last, status = job.event_seq, job.status
        upto = min(last, after + BATCH)
        stored = events.read_after(session, job_id, after, upto) if upto > after else []
        snapshot = job_out(job).model_dump(mode="json") if status != sent_status else None
        end = None
        if JobStatus(status).is_final and upto >= last:
            finished = job.finished_at.isoformat() if job.finished_at else None
            end = (
                last + 1,
                {"status": status, "reason": job.reason, "finished_at": finished},
            )
        return _Read(True, snapshot, stored, end, status, max(upto, after), upto < last)


def _frame(event: str, data: dict[str, Any], event_id: int | None = None) -> str:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


def _start(after: int | None, last_event_id: str | None) -> int:
    """Where the stream starts: after ``Last-Event-ID`` (a reconnect) or else ``after``."""
    if last_event_id is not None and last_event_id.strip():
        value = last_event_id.strip()
        if not value.isdigit() or int(value) > MAX_ID:
            raise DomainError(
                f"Last-Event-ID must be the id of an event of this stream (0 to {MAX_ID})"
            )
        return int(value)
    return after or 0


@router.get(
    "/{job_id}/events",
    dependencies=[VIEWER],
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "The job's events as Server-Sent Events (see docs/events.md)",
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
        },
        **problems.responses(400, 401, 403, 404, 422),
        503: {
            "description": "This process already serves its maximum of event streams",
            "content": {problems.PROBLEM: {"schema": {"$ref": "#/components/schemas/Problem"}}},
        },
    },
)
async def job_events(
    job_id: JobId,
    ctx: CtxDep,
    request: Request,
    after: Annotated[
        int | None,
        Query(
            ge=0,
            le=MAX_ID,
            description="start after this event id (a `Last-Event-ID` header wins)",
            examples=[0],
        ),
    ] = None,
    last_event_id: Annotated[
        str | None,
        Header(
            alias="Last-Event-ID",
            max_length=16,
            description="the id of the last event received: resume right after it",
            examples=["17"],
        ),
    ] = None,
) -> StreamingResponse:
    """Stream the job's events (task start/end per host, node status, log lines, its end) as
    Server-Sent Events until the job has ended. Resumable with ``Last-Event-ID``."""
    cursor = _start(after, last_event_id)
    with ctx.db.read_session() as session:
        service.get_job(session, job_id)  # 404 before the stream starts
    state = request.app.state
    if getattr(state, "event_streams", 0) >= MAX_STREAMS:
        raise TooManyStreams(
            f"This process already serves {MAX_STREAMS} event streams; retry shortly"
        )
    return StreamingResponse(
        _stream(ctx, request, job_id, cursor),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def _allowed(ctx: AppContext, request: Request) -> bool:
    """Whether the caller is still let in (every role may read events: viewer is the least)."""
    try:
        authenticate(request, ctx)
    except Unauthorized:
        return False
    return True


async def _stream(
    ctx: AppContext, request: Request, job_id: int, cursor: int
) -> AsyncIterator[str]:
    state = request.app.state
    state.event_streams = getattr(state, "event_streams", 0) + 1
    try:
        yield f"retry: {RETRY_MS}\n\n"
        status: str | None = None
        quiet_since = checked = time.monotonic()
        while True:
            if time.monotonic() - checked >= RECHECK:
                if not await asyncio.to_thread(_allowed, ctx, request):
                    yield ": access revoked\n\n"
                    return
                checked = time.monotonic()
            read = await asyncio.to_thread(_read, ctx, job_id, cursor, status)
            if not read.found:
                return  # deleted with its cluster: a reconnect gets 404
            if read.job is not None and status is None:
                yield _frame("job", read.job)  # the state to start from
            for item in read.stored:
                data = {"id": item.seq, "at": item.at.isoformat(), **item.data}
                yield _frame(item.kind, data, item.seq)
            if read.job is not None and status is not None:
                yield _frame("job", read.job)  # the state these events led to
            status, cursor = read.status, read.upto
            if read.end is not None:
                end_id, data = read.end
                yield _frame("end", {"id": end_id, **data}, end_id)
                return
            if read.job is not None or read.stored:
                quiet_since = time.monotonic()
                if read.more:
                    continue
            elif time.monotonic() - quiet_since >= KEEPALIVE:
                yield ": keep-alive\n\n"
                quiet_since = time.monotonic()
            await asyncio.sleep(POLL)
    finally:
        state.event_streams -= 1
