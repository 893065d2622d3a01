"""Exception handlers: every error leaves as ``application/problem+json`` with a ``detail``."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException

from rke2_manager.api.guards import MUTATING
from rke2_manager.audit.refusals import RefusalLog
from rke2_manager.errors import ClusterBusy, DomainError, GuardrailViolation
from rke2_manager.metrics import REFUSALS

log = logging.getLogger(__name__)
PROBLEM = "application/problem+json"


class FieldError(BaseModel):
    """One invalid input of a 422."""

    loc: list[str] = Field(
        description="Where the invalid value is: body, query or path, then the field names "
        "and list indexes down to it",
        examples=[["body", "nodes", "0", "ip"]],
    )
    msg: str = Field(
        description="What is wrong with it", examples=["'10.0.0.300' is not a valid IP address"]
    )


class Problem(BaseModel):
    """An error, as RFC 9457 problem details (``application/problem+json``).

    ``detail`` is the exact, documented message (docs/guardrails.md for refusals); some errors
    add machine-readable members.
    """

    model_config = ConfigDict(extra="allow")

    type: str = Field(
        description="A URI naming the kind of problem; about:blank when the status says it all",
        examples=["urn:rke2-manager:cluster-busy", "urn:rke2-manager:guardrail", "about:blank"],
    )
    title: str = Field(description="The status code's reason phrase", examples=["Conflict"])
    status: int = Field(description="The HTTP status code", examples=[409])
    detail: str = Field(
        description="What went wrong, for a person to read; the exact texts are part of the API",
        examples=["Cluster is busy with operation 'scale_add_masters' (job 42). Please wait."],
    )
    operation: str | None = Field(
        None,
        description="409: the operation holding the cluster's lock",
        examples=["scale_add_masters"],
    )
    job_id: int | None = Field(
        None, description="409 cluster-busy: the job holding the cluster's lock", examples=[42]
    )
    current_job_id: int | None = Field(
        None,
        description="409 on force-unlock: the job holding the lock, null if none does",
        examples=[41],
    )
    cluster_id: int | None = Field(
        None, description="409 on create: the cluster that already has the name", examples=[3]
    )
    guardrail: str | None = Field(
        None,
        description="400 guardrail: which guardrail refused (G1 bootstrap, G2 quorum, "
        "G3 sequencing, G4 uniqueness)",
        examples=["G2"],
    )
    errors: list[FieldError] | None = Field(
        None,
        description="422: every invalid input, where it is and what is wrong with it",
        examples=[[{"loc": ["body", "nodes", "0", "ip"], "msg": "'x' is not a valid IP address"}]],
    )


_WHY = {
    400: "Bad request: a guardrail refused (type urn:rke2-manager:guardrail), or the Host or "
    "Content-Length header is not acceptable",
    401: "No credentials, or a token that is unknown or revoked",
    403: "The caller's role may not do this, or a browser sent the request cross-site",
    404: "No such cluster, node, job or token",
    409: "Conflict: the cluster's lock is held (type urn:rke2-manager:cluster-busy, with "
    "operation and job_id), or the change conflicts with the current state",
    413: "The request body is larger than RKE2M_MAX_BODY",
    422: "Invalid input: the body, a path or a query parameter breaks the schema (errors says "
    "which)",
}
_REF = {"$ref": "#/components/schemas/Problem"}


def responses(*statuses: int, **why: str) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for a route's error statuses, each a :class:`Problem`.

    ``why`` overrides a status's description (keyword ``s409="..."``).
    """
    return {
        status: {
            "description": why.get(f"s{status}", _WHY[status]),
            "content": {PROBLEM: {"schema": _REF}},
        }
        for status in statuses
    }


def _openapi(app: FastAPI) -> dict[str, Any]:
    """The app's OpenAPI document, with :class:`Problem` among its schemas (the routes'
    error responses refer to it by name)."""
    if app.openapi_schema is None:
        document = get_openapi(
            title=app.title,
            version=app.version,
            openapi_version=app.openapi_version,
            summary=app.summary,
            description=app.description,
            routes=app.routes,
            tags=app.openapi_tags,
            servers=app.servers,
            terms_of_service=app.terms_of_service,
            contact=app.contact,
            license_info=app.license_info,
            webhooks=app.webhooks.routes,
            separate_input_output_schemas=app.separate_input_output_schemas,
        )
        schema = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas = document.setdefault("components", {}).setdefault("schemas", {})
        schemas.update(schema.pop("$defs", {}))
        schemas["Problem"] = schema
        app.openapi_schema = document
    return app.openapi_schema


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


def _dry_run(request: Request) -> bool:
    """A dry run (``?dry_run=true``) changes nothing, so it is not audited even when refused."""
    return request.query_params.get("dry_run", "").lower() in ("true", "1", "yes", "on", "t", "y")


def _audit_refusal(request: Request, status: int, detail: str) -> None:
    """Record a refused mutating call of an authenticated caller (unauthenticated ones are
    only logged: an anonymous client must not be able to fill the table). Batched: see
    :mod:`rke2_manager.audit.refusals`."""
    actor = getattr(request.state, "actor", None)
    if request.method not in MUTATING or actor is None or _dry_run(request):
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
    """Register the handlers on ``app``, and the :class:`Problem` schema in its OpenAPI."""
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]

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
