"""The dashboard: server-rendered pages under ``/ui/`` and the API docs pages, every file
served by this process (nothing from the internet). See docs/dashboard.md.

:func:`install` mounts it on the API's app: ``/ui`` (a sub-application with its own HTML error
pages, its routes each declaring a role like the API's), ``/`` (redirects to ``/ui/``),
``/docs`` and ``/redoc``. The browser's token travels in a cookie: see :mod:`.session`, whose
middleware the app adds with the API's other middleware.
"""

from __future__ import annotations

from fastapi import FastAPI
from starlette.staticfiles import StaticFiles

from rke2_manager.web import access, docs, pages
from rke2_manager.web.render import HERE, install_error_pages

__all__ = ["install"]


def dashboard(main: FastAPI) -> FastAPI:
    """The ``/ui`` application (shares the main app's context)."""
    ui = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
    ui.state.ctx = main.state.ctx
    ui.state.main = main
    install_error_pages(ui)
    ui.add_exception_handler(access.LoginRequired, access.on_login_required)  # type: ignore[arg-type]
    ui.include_router(access.router)
    ui.include_router(pages.router)
    ui.include_router(docs.assets)
    ui.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    return ui


def install(app: FastAPI) -> None:
    """Serve the dashboard and the docs pages from ``app`` (built with ``docs_url=None`` and
    ``redoc_url=None``, so FastAPI's CDN-loading pages are not there)."""
    app.mount("/ui", dashboard(app), name="ui")
    app.add_route("/", pages.home, include_in_schema=False)
    app.add_route("/docs", docs.swagger_ui, include_in_schema=False)
    app.add_route("/redoc", docs.redoc, include_in_schema=False)
