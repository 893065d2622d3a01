"""Writes a job may make only while it holds its cluster's lock.

Every transaction opened through :class:`Fence` first checks, under the cluster row lock, that
the job still holds the lock with its fencing token; a job that lost it (cancel, force-unlock,
an expired lease) gets :class:`~rke2_manager.errors.LockLost` and writes nothing.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy.orm import Session

from rke2_manager.cluster_lock import holds_lock
from rke2_manager.context import AppContext
from rke2_manager.errors import LockLost
from rke2_manager.models import JobLogLine


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
    def session(self) -> Iterator[Session]:
        with self.ctx.db.transaction() as session:
            c = self.claim
            if not holds_lock(session, c.cluster_id, c.job_id, c.token):
                raise LockLost(f"job {c.job_id} no longer holds the lock of cluster {c.cluster_id}")
            yield session


class LogWriter:
    """Buffers output lines and stores them in batches (fenced)."""

    def __init__(self, fence: Fence) -> None:
        self.fence, self.seq, self.buffer = fence, 0, list[str]()
        self.last_flush = time.monotonic()

    def write(self, lines: list[str]) -> None:
        self.buffer.extend(lines)
        if len(self.buffer) >= 50 or time.monotonic() - self.last_flush > 0.5:
            self.flush()

    def flush(self) -> None:
        if not self.buffer:
            return
        lines, self.buffer = self.buffer, []
        with self.fence.session() as session:
            for text in lines:
                self.seq += 1
                session.add(JobLogLine(job_id=self.fence.claim.job_id, seq=self.seq, text=text))
        self.last_flush = time.monotonic()


class StopSignal(threading.Event):
    """Asks a running job to stop its playbook, with the reason to record."""

    reason: str | None = None

    def stop(self, reason: str) -> None:
        self.reason = reason
        self.set()
