"""Dry runs: a session in which a job-starting call decides everything and writes nothing.

``?dry_run=true`` runs the very same ``start_*`` function as the real call, with a
:class:`PlanSession` instead of a write session. The busy check, the guardrails and the queue
position are computed by the same code; :func:`rke2_manager.jobs.create.start_jobs` sees the plan
session and returns the jobs it *would* create as transient objects (never added to any
session) instead of writing them, taking the lock and recording the audit entry. So a plan is
what the real call then does, by construction, and an operation added later that starts its
jobs through ``start_jobs`` gets its dry run without extra code.

A plan session is a :class:`~rke2_manager.db.WriteSession` to the type checker (so it can be
passed where the real call passes one), but it begins an ordinary transaction (no SQLite
``BEGIN IMMEDIATE``), refuses every flush that carries a change, and always rolls back.
On PostgreSQL the ``start_*`` functions still read the cluster row ``FOR UPDATE`` for the
moment of the checks, exactly as the real call does, so the plan sees one consistent cluster.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy.orm import Session

from rke2_manager.db import BOX_INFO, Database, ReadOnlySession, WriteSession


class PlanSession(WriteSession):
    """A session for dry runs: typed as a write session, but any change flushed raises."""

    def flush(self, objects: Any = None) -> None:
        if self.new or self.dirty or self.deleted:
            raise ReadOnlySession("a dry run cannot write (a plan session was asked to flush)")
        super().flush(objects)


def planning(session: Session) -> bool:
    """True if ``session`` belongs to a dry run: the caller must decide, not write."""
    return isinstance(session, PlanSession)


@contextmanager
def plan_session(db: Database) -> Iterator[PlanSession]:
    """A :class:`PlanSession` on ``db``'s engine, rolled back and closed afterwards whatever
    happens (it never commits)."""
    session = PlanSession(bind=db.engine, expire_on_commit=False, info={BOX_INFO: db.box})
    try:
        yield session
    finally:
        session.rollback()
        session.close()
