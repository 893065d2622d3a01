"""Writes a job may make only while it holds its cluster's lock.

Every transaction opened through :class:`Fence` first checks, under the cluster row lock, that
the job still holds the lock with its fencing token; a job that lost it (cancel, force-unlock,
an expired lease) gets :class:`~rke2_manager.errors.LockLost` and writes nothing.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from rke2_manager.cluster_lock import holds_lock
from rke2_manager.context import AppContext
from rke2_manager.db import WriteSession, unavailable
from rke2_manager.errors import LockLost
from rke2_manager.jobs import events
from rke2_manager.models import Job, JobStatus

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Claim:
    job_id: int
    cluster_id: int
    token: int


class Fence:
    """Write transactions that only happen while the job still holds its lock."""

    def __init__(self, ctx: AppContext, claim: Claim) -> None:
        self.ctx, self.claim = ctx, claim

    @contextmanager
    def session(self) -> Iterator[WriteSession]:
        with self.ctx.db.transaction() as session:
            c = self.claim
            if not holds_lock(session, c.cluster_id, c.job_id, c.token):
                raise LockLost(f"job {c.job_id} no longer holds the lock of cluster {c.cluster_id}")
            yield session


class LogWriter:
    """Buffers output lines and run events and stores them in batches (fenced), in the order
    they came (:mod:`rke2_manager.jobs.events`), with the per-host progress (``Job.progress``)
    when it changed."""

    def __init__(self, fence: Fence) -> None:
        self.fence, self.buffer = fence, list[events.Item]()
        self.last_flush = time.monotonic()
        self.progress: Any = None
        """The run's :class:`~rke2_manager.jobs.runner.nodestatus.Progress`, once there is one."""
        self._lock = threading.Lock()  # the run's event thread and its ticker both flush
        self.last_warning = 0.0

    def write(self, lines: list[str]) -> None:
        with self._lock:
            self.buffer.extend(events.Item("log", {"text": text}) for text in lines)
        self.tick()

    def event(self, kind: str, data: dict[str, Any]) -> None:
        """Queue a run event (stored with the next batch, after the lines written before it)."""
        with self._lock:
            self.buffer.append(events.Item(kind, data))

    def tick(self) -> None:
        """Store what is waiting if the last batch is older than half a second."""
        if len(self.buffer) >= 50 or time.monotonic() - self.last_flush > 0.5:
            self.flush()

    def flush(self) -> None:
        """Store what waits; while the database is unavailable it waits on (see :meth:`_flush`)."""
        with self._lock:
            self._flush()

    def flush_all(self) -> None:
        """Store everything now; raises the database's error if it is unavailable."""
        with self._lock:
            self._flush(keep_on_outage=False)

    def _flush(self, keep_on_outage: bool = True) -> None:
        progress = self.progress
        changed = progress is not None and progress.changed
        if not self.buffer and not changed:
            return
        lines, self.buffer = self.buffer, []
        try:
            with self.fence.session() as session:
                events.store(session, self.fence.claim.job_id, lines)
                if changed:
                    job = session.get(Job, self.fence.claim.job_id)
                    if job is not None:
                        job.progress = {h: dict(entry) for h, entry in progress.hosts.items()}
        except Exception as exc:
            if not unavailable(exc):
                raise
            self.buffer = lines + self.buffer
            if not keep_on_outage:
                raise
            # the database is away (restart, failover): keep the lines and try again later;
            # the run goes on, and its lease survives an outage shorter than RKE2M_LOCK_TTL
            if time.monotonic() - self.last_warning > 10:
                self.last_warning = time.monotonic()
                log.warning(
                    "job %s: cannot store its output (%s); keeping %d line(s) for later",
                    self.fence.claim.job_id,
                    type(exc).__name__,
                    len(self.buffer),
                )
            self.last_flush = time.monotonic()
            return
        if changed:
            progress.changed = False
        self.last_flush = time.monotonic()


class StopSignal(threading.Event):
    """Asks a running job to stop its playbook, with the status and reason to record."""

    reason: str | None = None
    status: JobStatus = JobStatus.FAILED

    def stop(self, reason: str, status: JobStatus = JobStatus.FAILED) -> None:
        if not self.is_set():  # the first reason wins
            self.reason, self.status = reason, status
        self.set()
