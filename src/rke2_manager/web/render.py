"""Rendering dashboard pages: templates, security headers, HTML error pages.

Every page is sent with a Content-Security-Policy that admits scripts, styles, images and
connections from this service only: a page cannot load anything from the internet (air-gapped
sites), and no inline script runs (page data travels in ``data-`` attributes).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException

from rke2_manager.errors import DomainError

HERE = Path(__file__).parent
TEMPLATES = Jinja2Templates(directory=str(HERE / "templates"))  # autoescapes HTML
PAGE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
# Swagger UI and ReDoc set inline styles, and ReDoc runs its search in a blob: worker.
DOCS_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; connect-src 'self'; worker-src 'self' blob:; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)


def _age(value: datetime | None) -> str:
    """'12s ago', '3m ago', '2h ago' for a timestamp; '' for None."""
    if value is None:
        return ""
    stamp = value if value.tzinfo else value.replace(tzinfo=UTC)
    seconds = max(0, int((datetime.now(UTC) - stamp).total_seconds()))
    for size, unit in ((86400, "d"), (3600, "h"), (60, "m")):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"


def _stamp(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S UTC") if value is not None else ""


TEMPLATES.env.filters["age"] = _age
TEMPLATES.env.filters["stamp"] = _stamp


def security_headers(csp: str) -> dict[str, str]:
    return {
        "Content-Security-Policy": csp,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "same-origin",  # "no-referrer" makes form posts send Origin: null
        "Cache-Control": "no-store",
    }


def page(request: Request, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    """Render ``template`` with ``context`` (plus ``request``), with the page's headers."""
    return TEMPLATES.TemplateResponse(
        request,
        template,
        context,
        status_code=status_code,
        headers=security_headers(PAGE_CSP),
    )


def error_page(request: Request, status_code: int, title: str, detail: str) -> HTMLResponse:
    return page(
        request, "error.html", status_code, title=title, detail=detail, caller=None, csrf=None
    )


def install_error_pages(app: FastAPI) -> None:
    """Errors of dashboard pages render as HTML with their status and message (never a 500
    for bad input: unknown ids are 404, malformed ones 422)."""

    @app.exception_handler(DomainError)
    async def _domain(request: Request, exc: DomainError) -> HTMLResponse:
        return error_page(request, exc.status_code, exc.title, exc.detail)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> HTMLResponse:
        where = ", ".join(
            ".".join(str(p) for p in e.get("loc", ())[1:]) or "request" for e in exc.errors()
        )
        return error_page(request, 422, "Unprocessable Content", f"Invalid value: {where}")

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> HTMLResponse:
        return error_page(request, exc.status_code, str(exc.detail), str(exc.detail))

    @app.exception_handler(OperationalError)
    @app.exception_handler(PoolTimeout)
    async def _db_down(request: Request, _: Exception) -> HTMLResponse:
        response = error_page(
            request, 503, "Service Unavailable", "The database is unavailable; retry shortly."
        )
        response.headers["Retry-After"] = "1"
        return response
