"""The seed's job-starting endpoints [routers/jobs.py, routers/clusters.py]: 202 with the job.

``on_busy=reject`` (default) answers 409 while another operation holds the cluster's lock;
``on_busy=queue`` accepts the job as ``queued`` with its position instead. ``dry_run=true``
answers 200 with the plan instead and changes nothing (:mod:`rke2_manager.operations.plan`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, BackgroundTasks, Query
from fastapi.responses import JSONResponse

from rke2_manager.api import problems
from rke2_manager.api.auth import OperatorActor
from rke2_manager.api.deps import ClusterId, CtxDep, ReadSessionDep
from rke2_manager.cluster_lock import ensure_idle
from rke2_manager.clusters.service import get_cluster
from rke2_manager.context import AppContext
from rke2_manager.db import ReadSession, WriteSession
from rke2_manager.guardrails import NewNode, ProbeResult
from rke2_manager.jobs import create as service
from rke2_manager.jobs.create import Accepted, OnBusy
from rke2_manager.jobs.preflight import CHECKS, CheckName
from rke2_manager.jobs.schemas import OperationAccepted, accepted_out
from rke2_manager.operations import plan
from rke2_manager.operations.plan import DryRunQuery
from rke2_manager.validation import NodeRefsIn, NodesIn

router = APIRouter(tags=["operations"])
ACCEPTED: dict[int | str, dict[str, Any]] = (
    problems.responses(
        400,
        401,
        403,
        404,
        409,
        413,
        422,
        s400="A guardrail refused (type urn:rke2-manager:guardrail, which one in guardrail; the "
        "exact messages are in docs/guardrails.md), or the Host or Content-Length header is not "
        "acceptable",
        s409="The cluster is busy (with on_busy=reject; type urn:rke2-manager:cluster-busy, with "
        "operation and job_id)",
    )
    | plan.PLAN_RESPONSE
)
OnBusyQuery = Annotated[
    OnBusy,
    Query(
        description="reject: 409 while the cluster is busy; queue: wait in line",
        examples=["reject"],
    ),
]

SkipPreflightQuery = Annotated[
    list[CheckName],
    Query(
        max_length=len(CHECKS),
        description="A preflight check whose failure must not stop the job (repeat for more): "
        "its result is still reported, marked skipped. Checks: " + ", ".join(CHECKS),
        examples=[["swap"]],
    ),
]


def _fail_fast_if_busy(read: ReadSessionDep, cluster_id: int, on_busy: OnBusy) -> None:
    """Answer 409 for a busy cluster from a plain read, without queueing on its row lock.

    Only a shortcut: the authoritative check runs again under the row lock before acquiring.
    """
    if on_busy == "reject":
        ensure_idle(get_cluster(read, cluster_id, with_nodes=False))
    read.rollback()


def start_job(
    ctx: AppContext,
    read: ReadSession,
    tasks: BackgroundTasks,
    cluster_id: int,
    on_busy: OnBusy,
    dry_run: bool,
    start: Callable[[WriteSession], Accepted],
    verdicts: plan.Verdicts | None = None,
) -> OperationAccepted | JSONResponse:
    """How every job-starting route answers: a dry run's plan (200); else the busy shortcut
    (409), then ``start`` — the operation's service call, which checks everything again under
    the row lock — in one transaction (202), and the workers woken."""
    if dry_run:
        return plan.answer_plan(ctx, cluster_id, start, verdicts)
    _fail_fast_if_busy(read, cluster_id, on_busy)
    with ctx.db.transaction() as session:
        accepted = accepted_out(start(session))
    tasks.add_task(ctx.wake_workers)
    return accepted


@router.post(
    "/api/jobs/install/{cluster_id}",
    status_code=202,
    response_model=OperationAccepted,
    responses=ACCEPTED,
)
def install(
    cluster_id: ClusterId,
    read: ReadSessionDep,
    ctx: CtxDep,
    actor: OperatorActor,
    tasks: BackgroundTasks,
    on_busy: OnBusyQuery = "reject",
    dry_run: DryRunQuery = False,
    skip_preflight: SkipPreflightQuery = [],  # noqa: B006 (FastAPI copies defaults)
) -> OperationAccepted | JSONResponse:
    """Start the install job for a cluster (409 if another operation holds its lock). Its
    preflight checks run first: a failed one (not in skip_preflight) stops it before any
    node is touched."""
    return start_job(
        ctx,
        read,
        tasks,
        cluster_id,
        on_busy,
        dry_run,
        lambda s: service.start_install(
            s, ctx.settings, cluster_id, actor, on_busy, skip_preflight
        ),
        plan.install_verdicts,
    )


@router.post(
    "/api/clusters/{cluster_id}/scale/add",
    status_code=202,
    response_model=OperationAccepted,
    responses=ACCEPTED,
)
def scale_add(
    cluster_id: ClusterId,
    body: NodesIn,
    read: ReadSessionDep,
    ctx: CtxDep,
    actor: OperatorActor,
    tasks: BackgroundTasks,
    on_busy: OnBusyQuery = "reject",
    dry_run: DryRunQuery = False,
    skip_preflight: SkipPreflightQuery = [],  # noqa: B006 (FastAPI copies defaults)
) -> OperationAccepted | JSONResponse:
    """Add nodes. Servers and agents together: the servers' job first (G3, ``sequenced``).
    The new nodes' preflight checks run first (skip_preflight as for install)."""
    if not dry_run:
        _fail_fast_if_busy(read, cluster_id, on_busy)
    # Probe the supervisor before taking the row lock, so no network wait happens under it.
    target = service.probe_target(get_cluster(read, cluster_id), ctx.settings)
    read.rollback()
    probe: ProbeResult | None = ctx.prober(target) if target is not None else None
    if dry_run:
        new = [NewNode(n.hostname, n.ip, n.role) for n in body.nodes]
        return plan.answer_plan(
            ctx,
            cluster_id,
            lambda s: service.start_scale_add(
                s,
                ctx.settings,
                cluster_id,
                body.nodes,
                actor,
                probe,
                ctx.prober,
                on_busy,
                skip_preflight,
            ),
            plan.add_verdicts(new, probe, ctx.settings.probe_policy),
        )
    with ctx.db.transaction() as session:
        accepted = accepted_out(
            service.start_scale_add(
                session,
                ctx.settings,
                cluster_id,
                body.nodes,
                actor,
                probe,
                ctx.prober,
                on_busy,
                skip_preflight,
            )
        )
    tasks.add_task(ctx.wake_workers)
    return accepted


@router.post(
    "/api/clusters/{cluster_id}/scale/remove",
    status_code=202,
    response_model=OperationAccepted,
    responses=ACCEPTED,
)
def scale_remove(
    cluster_id: ClusterId,
    body: NodeRefsIn,
    read: ReadSessionDep,
    ctx: CtxDep,
    actor: OperatorActor,
    tasks: BackgroundTasks,
    confirm_master_removal: Annotated[
        bool,
        Query(description="Must be true to remove servers (control-plane nodes)", examples=[False]),
    ] = False,
    on_busy: OnBusyQuery = "reject",
    dry_run: DryRunQuery = False,
) -> OperationAccepted | JSONResponse:
    """Remove nodes; removing servers needs ``confirm_master_removal=true`` and keeps quorum."""
    return start_job(
        ctx,
        read,
        tasks,
        cluster_id,
        on_busy,
        dry_run,
        lambda s: service.start_scale_remove(
            s, ctx.settings, cluster_id, body.nodes, confirm_master_removal, actor, on_busy
        ),
        plan.remove_verdicts([n.hostname for n in body.nodes], confirm_master_removal),
    )
