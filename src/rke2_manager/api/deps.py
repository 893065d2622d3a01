"""Request dependencies: the app context and a read session (writes: see below; callers and
roles: ``api/auth.py``)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Path, Request

from rke2_manager.context import AppContext
from rke2_manager.db import ReadSession

MAX_ID = 2_147_483_647


def get_ctx(request: Request) -> AppContext:
    ctx: AppContext = request.app.state.ctx
    return ctx


CtxDep = Annotated[AppContext, Depends(get_ctx)]


def _read_session(ctx: CtxDep) -> Iterator[ReadSession]:
    session = ctx.db.read_session()
    try:
        yield session
    finally:
        session.rollback()
        session.close()


# Writes do not use a dependency: a yield-dependency's commit would run in a different
# thread-pool thread than the endpoint, and with every pool thread blocked waiting for the
# cluster row (FOR UPDATE / BEGIN IMMEDIATE) the lock holder could never get a thread to commit.
# Mutating endpoints run their whole unit of work in one thread: ``with ctx.db.transaction()``.
ReadSessionDep = Annotated[ReadSession, Depends(_read_session, scope="function")]

ClusterId = Annotated[int, Path(ge=1, le=MAX_ID, description="cluster id", examples=[1])]
JobId = Annotated[int, Path(ge=1, le=MAX_ID, description="job id", examples=[42])]
