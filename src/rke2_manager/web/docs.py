"""The API documentation pages, ``/docs`` (Swagger UI) and ``/redoc``, with every file they
load served by this service.

FastAPI's own pages load Swagger UI and ReDoc from a public CDN (and ReDoc's fonts from Google),
so at an air-gapped site they stay blank. These load the same files from the
``fastapi-offline`` package's ``static/`` directory (Swagger UI and ReDoc builds, MIT), served
under ``/ui/docs-assets/``, and start them with this package's own scripts (no inline script:
the pages' Content-Security-Policy admits this service only). Swagger UI's online validator is
off (it would send the schema to a public site), and the one image ReDoc loads from its CDN (a
logo in its sidebar, hidden when it fails to load) is replaced by an empty ``data:`` URL.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import fastapi_offline
from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from rke2_manager.errors import NotFound
from rke2_manager.web.access import PUBLIC
from rke2_manager.web.render import DOCS_CSP, TEMPLATES, security_headers
from rke2_manager.web.session import csrf_for, request_token

ASSETS_URL = "/ui/docs-assets"
ASSETS_DIR = Path(fastapi_offline.__file__).parent / "static"
ASSETS = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "redoc.standalone.js": "text/javascript; charset=utf-8",
}
#: Off-host URLs the bundles load at run time, and what they become.
REWRITES = {"redoc.standalone.js": [(b"https://cdn.redoc.ly/redoc/logo-mini.svg", b"data:,")]}
assets = APIRouter()


@cache
def asset_bytes(name: str) -> bytes:
    data = (ASSETS_DIR / name).read_bytes()
    for old, new in REWRITES.get(name, []):
        data = data.replace(old, new)
    return data


@assets.get("/docs-assets/{name}", dependencies=[PUBLIC], include_in_schema=False)
def asset(name: str) -> Response:
    """A Swagger UI or ReDoc file (public: the same for everyone)."""
    if name not in ASSETS:
        raise NotFound(f"No documentation asset '{name[:100]}'")
    return Response(
        asset_bytes(name),
        media_type=ASSETS[name],
        headers={"Cache-Control": "public, max-age=86400", "X-Content-Type-Options": "nosniff"},
    )


def _docs_page(request: Request, template: str) -> Response:
    token = request_token(request)
    context = {
        "openapi_url": request.app.openapi_url,
        "assets": ASSETS_URL,
        "title": request.app.title,
        # Swagger UI's "Try it out" sends the session's CSRF value with mutating requests
        "csrf": csrf_for(token) if token is not None else "",
    }
    return TEMPLATES.TemplateResponse(
        request, template, context, headers=security_headers(DOCS_CSP)
    )


async def swagger_ui(request: Request) -> Response:
    """Swagger UI for the API (public, like FastAPI's default page: no data in it)."""
    return _docs_page(request, "docs_swagger.html")


async def redoc(request: Request) -> Response:
    """ReDoc for the API (public)."""
    return _docs_page(request, "docs_redoc.html")
