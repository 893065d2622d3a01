"""Refused calls reach the audit log in batches: by the timer, or at close; never unbounded."""

from __future__ import annotations

import time

from sqlalchemy import select

from rke2_manager.audit.refusals import RefusalLog
from rke2_manager.db import Database
from rke2_manager.models import AuditEntry


def stored(db: Database) -> list[tuple[str, str, str]]:
    with db.read_session() as s:
        rows = s.scalars(select(AuditEntry).order_by(AuditEntry.id)).all()
        return [(r.actor, r.action, r.result) for r in rows]


def test_the_timer_writes_what_gathered_and_close_writes_the_rest(db: Database) -> None:
    log = RefusalLog(db, delay=0.1)
    log.add("ops", "POST /api/clusters", None, "409 Cluster named 'prod' already exists")
    log.add("ops", "POST /api/jobs/install/1", 1, "409 Cluster is busy")
    assert stored(db) == []  # nothing is written on the request path
    deadline = time.monotonic() + 10
    while not stored(db) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert stored(db) == [
        ("ops", "POST /api/clusters", "409 Cluster named 'prod' already exists"),
        ("ops", "POST /api/jobs/install/1", "409 Cluster is busy"),
    ]
    slow = RefusalLog(db, delay=3600)
    slow.add("ops", "DELETE /api/clusters/1", 1, "403 This needs the 'admin' role")
    slow.close()
    assert stored(db)[-1] == ("ops", "DELETE /api/clusters/1", "403 This needs the 'admin' role")


def test_a_full_buffer_drops_and_counts(db: Database) -> None:
    log = RefusalLog(db, delay=3600, limit=2)
    for i in range(5):
        log.add("ops", f"POST /x/{i}", None, "409 busy")
    log.close()
    assert [a for _, a, _ in stored(db)] == ["POST /x/0", "POST /x/1"]
