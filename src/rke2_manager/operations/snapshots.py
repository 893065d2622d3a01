"""Day-2 endpoints: etcd snapshots (save, list, delete), restore, and forgetting a node.

Every change is a job under the cluster's lock (202 with the job; 409 while busy unless
``on_busy=queue``). The list is answered from what the jobs recorded (see
:mod:`rke2_manager.jobs.snapshot_records`): it never runs anything on the nodes.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, Path, Query
from fastapi.responses import JSONResponse

from rke2_manager.api import problems
from rke2_manager.api.auth import VIEWER, OperatorActor
from rke2_manager.api.deps import ClusterId, CtxDep, ReadSessionDep
from rke2_manager.clusters.router import HostnamePath
from rke2_manager.clusters.service import get_cluster
from rke2_manager.jobs.forget import start_forget
from rke2_manager.jobs.restore import start_restore
from rke2_manager.jobs.schemas import OperationAccepted
from rke2_manager.jobs.snapshot_records import listing
from rke2_manager.jobs.snapshots import start_snapshot_delete, start_snapshot_save
from rke2_manager.models import NodeRole, NodeStatus
from rke2_manager.operations.plan import DryRunQuery
from rke2_manager.operations.router import ACCEPTED, OnBusyQuery, start_job
from rke2_manager.operations.snapshot_schemas import (
    FULL_NAME_PATTERN,
    RestoreIn,
    SnapshotIn,
    SnapshotsOut,
    snapshots_out,
)

router = APIRouter(tags=["snapshots"])


@router.post(
    "/api/clusters/{cluster_id}/snapshots",
    status_code=202,
    response_model=OperationAccepted,
    responses=ACCEPTED,
)
def save_snapshot(
    cluster_id: ClusterId,
    body: SnapshotIn,
    read: ReadSessionDep,
    ctx: CtxDep,
    actor: OperatorActor,
    tasks: BackgroundTasks,
    on_busy: OnBusyQuery = "reject",
    dry_run: DryRunQuery = False,
) -> OperationAccepted | JSONResponse:
    """Save an etcd snapshot on one server (the initial master when ACTIVE); the job records
    its full name (``snapshot``) and every server's list."""
    return start_job(
        ctx,
        read,
        tasks,
        cluster_id,
        on_busy,
        dry_run,
        lambda s: start_snapshot_save(s, ctx.settings, cluster_id, body.name, actor, on_busy),
    )


@router.get(
    "/api/clusters/{cluster_id}/snapshots",
    response_model=SnapshotsOut,
    dependencies=[VIEWER],
    responses=problems.responses(400, 401, 403, 404, 422),
)
def list_snapshots(cluster_id: ClusterId, session: ReadSessionDep) -> SnapshotsOut:
    """Every server's snapshots, as last listed, and when each server was listed."""
    cluster = get_cluster(session, cluster_id)
    rows, lists = listing(session, cluster.id)
    servers = [
        n for n in cluster.nodes if n.role == NodeRole.SERVER and n.status != NodeStatus.PENDING
    ]
    return snapshots_out(servers, rows, lists)


@router.delete(
    "/api/clusters/{cluster_id}/snapshots/{name}",
    status_code=202,
    response_model=OperationAccepted,
    responses=ACCEPTED,
)
def delete_snapshot(
    cluster_id: ClusterId,
    name: Annotated[
        str,
        Path(
            max_length=255,
            pattern=FULL_NAME_PATTERN,
            description="The snapshot's full name, as GET …/snapshots lists it",
            examples=["before-change-m1-1764680000"],
        ),
    ],
    read: ReadSessionDep,
    ctx: CtxDep,
    actor: OperatorActor,
    tasks: BackgroundTasks,
    on_busy: OnBusyQuery = "reject",
    dry_run: DryRunQuery = False,
) -> OperationAccepted | JSONResponse:
    """Delete a snapshot (full name, as listed) from every server whose list holds it."""
    return start_job(
        ctx,
        read,
        tasks,
        cluster_id,
        on_busy,
        dry_run,
        lambda s: start_snapshot_delete(s, ctx.settings, cluster_id, name, actor, on_busy),
    )


@router.post(
    "/api/clusters/{cluster_id}/restore",
    status_code=202,
    response_model=OperationAccepted,
    responses=ACCEPTED,
)
def restore(
    cluster_id: ClusterId,
    body: RestoreIn,
    read: ReadSessionDep,
    ctx: CtxDep,
    actor: OperatorActor,
    tasks: BackgroundTasks,
    confirm_restore: Annotated[
        bool,
        Query(
            description="Must be true: a restore rolls the whole cluster back to the snapshot",
            examples=[False],
        ),
    ] = False,
    on_busy: OnBusyQuery = "reject",
    dry_run: DryRunQuery = False,
) -> OperationAccepted | JSONResponse:
    """Restore an etcd snapshot onto the cluster's servers (RKE2's cluster reset); every
    installed node restarts; a new kubeconfig is fetched."""
    return start_job(
        ctx,
        read,
        tasks,
        cluster_id,
        on_busy,
        dry_run,
        lambda s: start_restore(
            s, ctx.settings, cluster_id, body.snapshot, confirm_restore, actor, on_busy
        ),
    )


@router.delete(
    "/api/clusters/{cluster_id}/nodes/{hostname}",
    status_code=202,
    response_model=OperationAccepted,
    responses=ACCEPTED,
)
def forget_node(
    cluster_id: ClusterId,
    hostname: HostnamePath,
    read: ReadSessionDep,
    ctx: CtxDep,
    actor: OperatorActor,
    tasks: BackgroundTasks,
    confirm_master_removal: Annotated[
        bool,
        Query(description="Must be true to forget an installed server", examples=[False]),
    ] = False,
    on_busy: OnBusyQuery = "reject",
    dry_run: DryRunQuery = False,
) -> OperationAccepted | JSONResponse:
    """Forget a node without contacting it: a PENDING node just goes; an installed one is
    removed from Kubernetes (and, a server, from etcd) through a live server. G2 for servers."""
    return start_job(
        ctx,
        read,
        tasks,
        cluster_id,
        on_busy,
        dry_run,
        lambda s: start_forget(
            s, ctx.settings, cluster_id, hostname, confirm_master_removal, actor, on_busy
        ),
    )
