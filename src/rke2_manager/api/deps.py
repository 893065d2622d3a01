"""Request dependencies: the app context, the request's session (the one commit point), actor."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Path, Request
from sqlalchemy.orm import Session

from rke2_manager.context import AppContext

MAX_ID = 2_147_483_647


def get_ctx(request: Request) -> AppContext:
    ctx: AppContext = request.app.state.ctx
    return ctx


CtxDep = Annotated[AppContext, Depends(get_ctx)]


def _write_session(ctx: CtxDep) -> Iterator[Session]:
    session = ctx.db.write_session()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def _read_session(ctx: CtxDep) -> Iterator[Session]:
    session = ctx.db.read_session()
    try:
        yield session
    finally:
        session.rollback()
        session.close()


# scope="function": the commit happens when the endpoint returns, before the response is sent.
WriteSessionDep = Annotated[Session, Depends(_write_session, scope="function")]
ReadSessionDep = Annotated[Session, Depends(_read_session, scope="function")]


def get_actor(request: Request) -> str:
    """Who is calling; until tokens exist, the client's address (loopback by default)."""
    host = request.client.host if request.client else "unknown"
    return f"anonymous@{host}"


ActorDep = Annotated[str, Depends(get_actor)]
ClusterId = Annotated[int, Path(ge=1, le=MAX_ID, description="cluster id")]
JobId = Annotated[int, Path(ge=1, le=MAX_ID, description="job id")]
