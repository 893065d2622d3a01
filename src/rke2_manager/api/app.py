"""The FastAPI application: routers, error handlers, health, metrics, and the embedded worker."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from rke2_manager import __version__, migrate
from rke2_manager.api import problems
from rke2_manager.api.auth import PUBLIC, VIEWER
from rke2_manager.api.deps import CtxDep
from rke2_manager.api.guards import RequestGuards
from rke2_manager.api.middleware import DefaultJSONBody
from rke2_manager.audit.refusals import RefusalLog
from rke2_manager.audit.router import router as audit_router
from rke2_manager.clusters.router import router as clusters_router
from rke2_manager.config import Settings, get_settings
from rke2_manager.context import AppContext
from rke2_manager.datadir import prepare_data_dir
from rke2_manager.db import Database
from rke2_manager.jobs.create import Prober
from rke2_manager.jobs.router import router as jobs_router
from rke2_manager.jobs.runner.worker import Worker
from rke2_manager.jobs.sse import router as job_events_router
from rke2_manager.metrics import registry_for
from rke2_manager.operations.admin import router as admin_router
from rke2_manager.operations.preflight import router as preflight_router
from rke2_manager.operations.router import router as operations_router
from rke2_manager.operations.snapshots import router as snapshots_router
from rke2_manager.operations.upgrade import router as upgrade_router
from rke2_manager.probe import make_prober
from rke2_manager.tokens.router import router as tokens_router
from rke2_manager.vault import SecretBox
from rke2_manager.web import install as install_dashboard
from rke2_manager.web.session import BrowserSession

log = logging.getLogger(__name__)


def create_app(
    settings: Settings | None = None,
    *,
    prober: Prober | None = None,
    run_migrations: bool = True,
    start_worker: bool | None = None,
) -> FastAPI:
    """Build the app. ``prober`` replaces G1's network probe (tests inject one)."""
    settings = settings or get_settings()
    pool = (
        {}
        if settings.is_sqlite
        else {"pool_size": settings.db_pool_size, "max_overflow": settings.db_max_overflow}
    )
    prepare_data_dir(settings, umask=False)  # before the database or the key file is opened
    box = SecretBox.from_settings(settings)
    db = Database(settings.database_url, box=box, **pool)  # redacts secrets before each flush
    ctx = AppContext(
        settings=settings,
        db=db,
        box=box,
        prober=prober or make_prober(settings),
    )
    with_worker = settings.worker_enabled if start_worker is None else start_worker

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if run_migrations:
            migrate.upgrade(db.engine)
        worker = Worker(ctx) if with_worker else None
        if worker is not None:
            ctx.wakers.append(worker)
            worker.start()
            app.state.worker = worker
        try:
            yield
        finally:
            if worker is not None:
                worker.stop()
                ctx.wakers.remove(worker)
            app.state.refusals.close()  # before the database goes
            db.dispose()

    app = FastAPI(
        title="rke2-manager",
        version=__version__,
        lifespan=lifespan,
        description="Install and scale RKE2 clusters over SSH, one safe operation at a time.",
        docs_url=None,  # FastAPI's pages load from a CDN; the dashboard serves local ones
        redoc_url=None,
    )
    app.state.ctx = ctx
    app.state.refusals = RefusalLog(db)
    registry = registry_for(db)
    app.add_middleware(DefaultJSONBody)
    app.add_middleware(BrowserSession)  # the dashboard's session cookie as a bearer token
    app.add_middleware(RequestGuards, settings=settings)  # added last: runs first
    problems.install(app)
    app.include_router(clusters_router)
    app.include_router(operations_router)
    app.include_router(preflight_router)
    app.include_router(snapshots_router)
    app.include_router(upgrade_router)
    app.include_router(jobs_router)
    app.include_router(job_events_router)
    app.include_router(admin_router)
    app.include_router(tokens_router)
    app.include_router(audit_router)
    install_dashboard(app)  # /ui, /, /docs, /redoc

    @app.get("/healthz", tags=["health"], dependencies=[PUBLIC])
    def healthz() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"], dependencies=[PUBLIC])
    def readyz(ctx: CtxDep) -> Response:
        """Readiness: the database answers."""
        try:
            with ctx.db.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except Exception as exc:
            log.warning("not ready: %s", exc)
            return Response('{"status":"unavailable"}', 503, media_type="application/json")
        return Response('{"status":"ok"}', media_type="application/json")

    @app.get("/metrics", tags=["health"], dependencies=[VIEWER])
    def metrics() -> Response:
        """Prometheus metrics: this process's counters and histograms, and job gauges read
        from the database (see docs/operations.md)."""
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return app
