"""Refused calls reach the audit log in batches, off the request path.

A refusal (409 busy, 400 guardrail, 403 role, …) changes nothing, and a storm of them is what
the 409 fast path exists for: one write transaction per refusal put every refusal in the queue
for SQLite's single write lock (409 p99 3.3–4.5 s with 50 clients, against 0.6 s without).
So the handlers only append here; a timer writes what has gathered in one transaction a moment
later, and :meth:`RefusalLog.close` (app shutdown) writes the rest.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from rke2_manager import audit
from rke2_manager.db import Database

log = logging.getLogger(__name__)


class RefusalLog:
    """A bounded buffer of refused calls, written to the audit log every ``delay`` seconds."""

    def __init__(self, db: Database, delay: float = 0.2, limit: int = 10_000) -> None:
        self._db = db
        self._delay = delay
        self._limit = limit
        self._pending: list[dict[str, Any]] = []
        self._dropped = 0
        self._timer: threading.Timer | None = None
        self._lock = threading.Lock()

    def add(self, actor: str, action: str, cluster_id: int | None, result: str) -> None:
        """Queue one entry (never blocks on the database; drops beyond ``limit``, counted)."""
        with self._lock:
            if len(self._pending) >= self._limit:
                self._dropped += 1
                return
            self._pending.append(
                {"actor": actor, "action": action, "cluster_id": cluster_id, "result": result}
            )
            if self._timer is None:
                self._timer = threading.Timer(self._delay, self.flush)
                self._timer.daemon = True
                self._timer.start()

    def flush(self) -> None:
        """Write every queued entry now, in one transaction."""
        with self._lock:
            batch, self._pending = self._pending, []
            dropped, self._dropped = self._dropped, 0
            self._timer = None
        if dropped:
            log.warning("audit log: %d refused calls not recorded (buffer full)", dropped)
        if not batch:
            return
        try:
            with self._db.transaction() as session:
                for entry in batch:
                    audit.record(session, **entry)
        except Exception as exc:  # a refusal already answered must not fail anything else
            log.warning("audit log: could not record %d refused calls: %s", len(batch), exc)

    def close(self) -> None:
        """Stop the timer and write what is left."""
        with self._lock:
            timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()
        self.flush()
