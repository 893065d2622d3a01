"""A job's durable event stream: one ordered sequence of log lines and events per job.

Every log line (``JobLogLine``) and event (``JobEvent``: a task's start or end on a host, a
node's status change) of a job takes the next number of the job's ``event_seq``; that number is
the event's id in ``GET /api/jobs/{id}/events`` (docs/events.md). Numbers are reserved with one
``UPDATE … RETURNING`` on the job row, in the writer's transaction, so rows become visible in
the order of their numbers (a later writer waits on the row until the earlier one commits) and
a reader that first reads ``event_seq`` sees every row up to it. The end of the job is not
stored: it is the job row itself, with id ``event_seq + 1`` once the job is final (nothing is
written for a job after it ended: its writes are fenced by the lock it gave up).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from rke2_manager.db import WriteSession
from rke2_manager.models import Job, JobEvent, JobLogLine, Node

#: Event kinds stored in ``job_events`` (the stream adds ``log``, ``job`` and ``end``).
TASK_START, TASK_END, NODE = "task_start", "task_end", "node"
#: The ``status`` of a node event whose node left the cluster (its row is deleted).
REMOVED = "REMOVED"


@dataclass(frozen=True)
class Item:
    """One event waiting to be stored: ``kind`` ``log`` (``data = {"text": …}``) or a stored
    kind with its data."""

    kind: str
    data: dict[str, Any]


def reserve(session: WriteSession, job_id: int, count: int) -> int:
    """Reserve ``count`` numbers of the job's sequence; the first of them.

    The caller's transaction must be the one that stores the rows.
    """
    last = session.execute(
        update(Job.__table__)  # type: ignore[arg-type]
        .where(Job.__table__.c.id == job_id)
        .values(event_seq=Job.__table__.c.event_seq + count)
        .returning(Job.__table__.c.event_seq)
    ).scalar_one()
    return int(last) - count + 1


def store(session: WriteSession, job_id: int, items: Sequence[Item]) -> None:
    """Store ``items`` in order, numbered from the job's sequence."""
    if not items:
        return
    seq = reserve(session, job_id, len(items))
    for offset, item in enumerate(items):
        if item.kind == "log":
            session.add(JobLogLine(job_id=job_id, seq=seq + offset, text=item.data["text"]))
        else:
            session.add(JobEvent(job_id=job_id, seq=seq + offset, kind=item.kind, data=item.data))


def node_item(hostname: str, status: str, reason: str | None) -> Item:
    return Item(NODE, {"hostname": hostname, "status": status, "reason": reason})


def node_statuses(session: Session, cluster_id: int, names: Iterable[str]) -> dict[str, str]:
    """The current status of the named nodes of a cluster (absent: no such node)."""
    rows = session.execute(
        select(Node.hostname, Node.status).where(
            Node.cluster_id == cluster_id, Node.hostname.in_(list(names))
        )
    )
    return {name: status for name, status in rows}


def record_node_changes(
    session: WriteSession, job: Job, before: dict[str, str], after: dict[str, str] | None = None
) -> None:
    """Store a node event for every target whose status differs from ``before`` (a node gone
    is ``REMOVED``). Flushes the session first, so changes made through the ORM are seen."""
    if after is None:
        session.flush()
        after = node_statuses(session, job.cluster_id, before)
    reasons = dict(
        session.execute(
            select(Node.hostname, Node.status_reason).where(
                Node.cluster_id == job.cluster_id, Node.hostname.in_(list(before))
            )
        ).all()
    )
    items = [
        node_item(name, after.get(name, REMOVED), reasons.get(name))
        for name in sorted(before)
        if after.get(name, REMOVED) != before[name]
    ]
    store(session, job.id, items)


@dataclass(frozen=True)
class Stored:
    """An event as read back: its id, kind, data and when it was stored."""

    seq: int
    kind: str
    data: dict[str, Any]
    at: datetime


def read_after(session: Session, job_id: int, after: int, upto: int) -> list[Stored]:
    """The job's log lines and events with ``after < seq <= upto``, in order.

    ``upto`` must be an ``event_seq`` the caller read before (every row up to it is then
    visible); callers bound ``upto - after`` to bound what is read at once.
    """
    lines = session.execute(
        select(JobLogLine.seq, JobLogLine.text, JobLogLine.created_at).where(
            JobLogLine.job_id == job_id, JobLogLine.seq > after, JobLogLine.seq <= upto
        )
    )
    found = [Stored(seq, "log", {"text": text}, at) for seq, text, at in lines]
    events = session.execute(
        select(JobEvent.seq, JobEvent.kind, JobEvent.data, JobEvent.created_at).where(
            JobEvent.job_id == job_id, JobEvent.seq > after, JobEvent.seq <= upto
        )
    )
    found += [Stored(seq, kind, dict(data), at) for seq, kind, data, at in events]
    return sorted(found, key=lambda s: s.seq)
