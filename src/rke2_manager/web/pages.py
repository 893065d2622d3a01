"""The dashboard's pages (viewer role): clusters, a cluster, a job, the new-cluster form.

Pages show what the API's read endpoints show, built by the same response builders; every
change is made by the page's scripts through the JSON API itself (``static/ops.js``), so the
API's roles, guardrails, messages and audit apply unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from rke2_manager.api.deps import ClusterId, CtxDep, JobId, ReadSessionDep
from rke2_manager.clusters import service as clusters
from rke2_manager.clusters.responses import cluster_out
from rke2_manager.jobs import service as jobs
from rke2_manager.jobs.preflight import CHECKS
from rke2_manager.jobs.queue import queued_jobs
from rke2_manager.jobs.schemas import job_out
from rke2_manager.models import JobStatus
from rke2_manager.web.access import AdminCallerDep, CallerDep
from rke2_manager.web.overview import cluster_rows
from rke2_manager.web.render import page

router = APIRouter()
RECENT_JOBS = 25
#: Operations the dashboard has forms for, each shown once the API serves its route (the
#: day-2 ones came later), with a "Preview" button where the route takes ``dry_run``.
API_ROUTES = {
    "install": ("POST", "/api/jobs/install/{cluster_id}"),
    "add": ("POST", "/api/clusters/{cluster_id}/scale/add"),
    "remove": ("POST", "/api/clusters/{cluster_id}/scale/remove"),
    "upgrade": ("POST", "/api/clusters/{cluster_id}/upgrade"),
    "snapshots": ("GET", "/api/clusters/{cluster_id}/snapshots"),
    "snapshot": ("POST", "/api/clusters/{cluster_id}/snapshots"),
    "restore": ("POST", "/api/clusters/{cluster_id}/restore"),
    "forget": ("DELETE", "/api/clusters/{cluster_id}/nodes/{hostname}"),
    "edit-node": ("PATCH", "/api/clusters/{cluster_id}/nodes/{hostname}"),
    "preflight": ("POST", "/api/clusters/{cluster_id}/preflight"),
    "preflight-results": ("GET", "/api/jobs/{job_id}/preflight"),
    "events": ("GET", "/api/jobs/{job_id}/events"),
}
#: The jobs that run preflight checks (GET /api/jobs/{id}/preflight answers 404 for others).
PREFLIGHT_OPERATIONS = ("preflight", "install", "scale_add_masters", "scale_add_workers")


@dataclass(frozen=True)
class Features:
    """Which of :data:`API_ROUTES` the API serves, and which of them take ``dry_run``."""

    served: frozenset[str]
    previews: frozenset[str]

    def __contains__(self, name: object) -> bool:
        return name in self.served


def api_features(request: Request) -> Features:
    """What the API of the app the dashboard is in offers (from its OpenAPI document, which
    FastAPI builds once and caches)."""
    paths = request.app.state.main.openapi()["paths"]
    served, previews = set(), set()
    for name, (method, path) in API_ROUTES.items():
        operation = paths.get(path, {}).get(method.lower())
        if operation is None:
            continue
        served.add(name)
        if any(p.get("name") == "dry_run" for p in operation.get("parameters", [])):
            previews.add(name)
    return Features(frozenset(served), frozenset(previews))


@router.get("/", response_class=HTMLResponse)
def clusters_page(request: Request, caller: CallerDep, session: ReadSessionDep) -> HTMLResponse:
    rows = cluster_rows(session)
    return page(request, "clusters.html", caller=caller, csrf=caller.csrf, clusters=rows)


@router.get("/clusters/new", response_class=HTMLResponse)
def new_cluster_page(request: Request, caller: CallerDep) -> HTMLResponse:
    return page(request, "new_cluster.html", caller=caller, csrf=caller.csrf)


@router.get("/clusters/{cluster_id}", response_class=HTMLResponse)
def cluster_page(
    request: Request,
    cluster_id: ClusterId,
    caller: CallerDep,
    session: ReadSessionDep,
    ctx: CtxDep,
) -> HTMLResponse:
    cluster = cluster_out(clusters.get_cluster(session, cluster_id), ctx.box)
    queue = [job_out(j) for j in queued_jobs(session, cluster_id)]
    recent = [job_out(j) for j in jobs.list_jobs(session, cluster_id, None, RECENT_JOBS, 0)]
    return page(
        request,
        "cluster.html",
        caller=caller,
        csrf=caller.csrf,
        cluster=cluster,
        queue=queue,
        jobs=recent,
        features=api_features(request),
        servers=[n.hostname for n in cluster.nodes if n.role == "server"],
        checks=CHECKS,
    )


@router.get("/jobs/{job_id}", response_class=HTMLResponse)
def job_page(
    request: Request,
    job_id: JobId,
    caller: CallerDep,
    session: ReadSessionDep,
) -> HTMLResponse:
    job = job_out(jobs.get_job(session, job_id))
    features = api_features(request)
    cluster = clusters.get_cluster(session, job.cluster_id)
    statuses = {n.hostname: n.status for n in cluster.nodes}
    hosts: list[dict[str, Any]] = []
    for node in job.nodes:
        progress = job.progress.get(node.hostname)
        hosts.append(
            {
                "hostname": node.hostname,
                "role": node.role,
                "status": statuses.get(node.hostname, "gone"),
                "task": progress.task if progress else None,
                "last": progress.last if progress else None,
                "since": progress.since if progress else None,
            }
        )
    return page(
        request,
        "job.html",
        caller=caller,
        csrf=caller.csrf,
        job=job,
        cluster_name=cluster.name,
        hosts=hosts,
        final=JobStatus(job.status).is_final,
        events="events" in features,
        preflight="preflight-results" in features and job.operation in PREFLIGHT_OPERATIONS,
    )


@router.get("/admin", response_class=HTMLResponse)
def admin_page(request: Request, caller: AdminCallerDep) -> HTMLResponse:
    """API tokens and the audit log (admin): the page's script reads and changes them through
    ``/api/tokens`` and ``/api/audit``."""
    return page(request, "admin.html", caller=caller, csrf=caller.csrf)


def home(_: Request) -> RedirectResponse:
    """``/``: the dashboard."""
    return RedirectResponse("/ui/", status_code=307)
