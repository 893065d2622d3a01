"""Exception handlers: every error leaves as ``application/problem+json`` with a ``detail``."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException

from rke2_manager.api.guards import MUTATING
from rke2_manager.audit.refusals import RefusalLog
from rke2_manager.errors import ClusterBusy, DomainError, GuardrailViolation
from rke2_manager.metrics import REFUSALS

log = logging.getLogger(__name__)
PROBLEM = "application/problem+json"


def _problem(status: int, title: str, detail: str, **extras: Any) -> JSONResponse:
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail, **extras}
    return JSONResponse(body, status_code=status, media_type=PROBLEM)


def _where(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body",)]
    return ".".join(parts) or "body"


def _validation_message(error: dict[str, Any]) -> str:
    kind, msg = error.get("type", ""), str(error.get("msg", "invalid"))
    if kind == "json_invalid":
        return "request body is not valid JSON"
    if kind == "missing" and tuple(error.get("loc", ())) == ("body",):
        return "request body is required"
    msg = msg.removeprefix("Value error, ")
    return f"{_where(tuple(error.get('loc', ())))}: {msg}"


def _audit_refusal(request: Request, status: int, detail: str) -> None:
    """Record a refused mutating call of an authenticated caller (unauthenticated ones are
    only logged: an anonymous client must not be able to fill the table). Batched: see
    :mod:`rke2_manager.audit.refusals`."""
    actor = getattr(request.state, "actor", None)
    if request.method not in MUTATING or actor is None:
        return
    refusals: RefusalLog = request.app.state.refusals
    cluster_id = str(request.path_params.get("cluster_id", ""))
    refusals.add(
        actor,
        f"{request.method} {request.url.path}",
        int(cluster_id) if cluster_id.isdigit() and len(cluster_id) < 10 else None,
        f"{status} {detail}",
    )


def install(app: FastAPI) -> None:
    """Register the handlers on ``app``."""

    @app.exception_handler(DomainError)
    async def _domain(request: Request, exc: DomainError) -> JSONResponse:
        if isinstance(exc, ClusterBusy):
            REFUSALS.labels("busy").inc()
        elif isinstance(exc, GuardrailViolation):
            REFUSALS.labels(exc.guardrail).inc()
        _audit_refusal(request, exc.status_code, exc.detail)
        headers = {"WWW-Authenticate": "Bearer"} if exc.status_code == 401 else None
        return JSONResponse(
            exc.problem(), status_code=exc.status_code, media_type=PROBLEM, headers=headers
        )

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        messages = [_validation_message(e) for e in exc.errors()]
        errors = [
            {"loc": [str(p) for p in e.get("loc", ())], "msg": m}
            for e, m in zip(exc.errors(), messages, strict=True)
        ]
        detail = "; ".join(messages[:5]) or "invalid request"
        _audit_refusal(request, 422, detail)
        return _problem(422, "Unprocessable Content", detail, errors=errors)

    @app.exception_handler(HTTPException)
    async def _http(_: Request, exc: HTTPException) -> JSONResponse:
        return _problem(exc.status_code, str(exc.detail), str(exc.detail))

    @app.exception_handler(IntegrityError)
    async def _integrity(_: Request, exc: IntegrityError) -> JSONResponse:
        log.info("integrity conflict: %s", exc.orig)
        return _problem(409, "Conflict", "The change conflicts with the current state; retry.")

    @app.exception_handler(OperationalError)
    @app.exception_handler(PoolTimeout)
    async def _db_down(_: Request, exc: Exception) -> JSONResponse:
        log.warning("database unavailable: %s", str(exc).splitlines()[0])
        return JSONResponse(
            {
                "type": "about:blank",
                "title": "Service Unavailable",
                "status": 503,
                "detail": "The database is unavailable or overloaded; retry shortly.",
            },
            status_code=503,
            media_type=PROBLEM,
            headers={"Retry-After": "1"},
        )

    @app.exception_handler(Exception)
    async def _crash(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return _problem(500, "Internal Server Error", "Internal error; see the server log.")
