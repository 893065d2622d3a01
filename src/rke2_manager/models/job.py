"""A job (one operation under a cluster's lock), its log lines and its events."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from rke2_manager.models.base import Base, one_of, utcnow
from rke2_manager.models.enums import JobStatus, Operation


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (
        CheckConstraint(one_of("operation", Operation), name="operation"),
        CheckConstraint(one_of("status", JobStatus), name="status"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    cluster_id: Mapped[int] = mapped_column(
        ForeignKey("clusters.id", ondelete="CASCADE"), index=True
    )
    operation: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16), index=True)
    reason: Mapped[str | None] = mapped_column(Text)
    targets: Mapped[list[Any]] = mapped_column(default=list)
    """The nodes the job acts on: ``[{"id", "hostname", "ip", "role"}]``, kept after removal."""
    warnings: Mapped[list[Any]] = mapped_column(default=list)
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    """What was asked (nodes, confirmation), to re-check the guardrails when the job starts."""
    requested_by: Mapped[str] = mapped_column(String(128), default="anonymous")
    predecessor_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"))
    worker_id: Mapped[str | None] = mapped_column(String(128))
    fencing_token: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]

    # The run on the worker's machine (see execution/procs.py): every process of it carries
    # RKE2M_RUN=<run_tag> in its environment, so it can be found and ended even after the
    # worker died; pid, process group and start time are of its ansible-playbook.
    run_tag: Mapped[str | None] = mapped_column(String(64))
    run_pid: Mapped[int | None] = mapped_column(Integer)
    run_pgid: Mapped[int | None] = mapped_column(Integer)
    run_start_ticks: Mapped[int | None] = mapped_column(BigInteger)
    """The pid's start time (clock ticks after boot, /proc/<pid>/stat field 22)."""
    stop_status: Mapped[str | None] = mapped_column(String(16))
    """Set by cancel or force-unlock for the worker running the job: end the run, then settle
    with this status and :attr:`stop_reason`."""
    stop_reason: Mapped[str | None] = mapped_column(Text)
    stop_requested_at: Mapped[datetime | None]
    progress: Mapped[dict[str, Any]] = mapped_column(default=dict)
    """Per host of the run: ``{"task": <task it is in, or null>, "since": <ISO time>}``."""
    event_seq: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    """The last id given to one of the job's log lines or events (one sequence for both, so
    ``GET /api/jobs/{id}/events`` ids are durable and ordered); raised only by
    :func:`rke2_manager.jobs.events.reserve`."""
    snapshot: Mapped[str | None] = mapped_column(String(255))
    """The etcd snapshot the job saved (a save, the automatic one before a server removal or
    an upgrade) or restored, by its full name as RKE2 lists it."""
    preflight: Mapped[dict[str, Any] | None]
    """The preflight results of the job's run (preflight, install, scale add), per host:
    ``{"m1": [{"check", "result", "message", "fix", "skipped"}, ...]}``; null if none ran."""


class JobLogLine(Base):
    __tablename__ = "job_log_lines"
    __table_args__ = (UniqueConstraint("job_id", "seq"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(Integer)
    text: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class JobEvent(Base):
    """A durable event of a job's run (task start/end per host, node status); its ``seq``
    shares the job's sequence with its log lines (see docs/events.md)."""

    __tablename__ = "job_events"
    __table_args__ = (UniqueConstraint("job_id", "seq"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(16))
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
