"""Cluster and node endpoints [routers/clusters.py]."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Response

from rke2_manager.api import problems
from rke2_manager.api.auth import VIEWER, AdminActor, OperatorActor
from rke2_manager.api.deps import ClusterId, CtxDep, ReadSessionDep
from rke2_manager.clusters import service
from rke2_manager.clusters.hostkeys import accept_host_key as accept_host_key_
from rke2_manager.clusters.nodes_edit import NodeUpdate
from rke2_manager.clusters.nodes_edit import update_node as update_node_
from rke2_manager.clusters.responses import (
    ClusterOut,
    LockOut,
    NodeOut,
    cluster_out,
    kubeconfig_out,
    lock_out,
    node_out,
)
from rke2_manager.clusters.schemas import ClusterCreate, ClusterUpdate
from rke2_manager.jobs.queue import queued_jobs
from rke2_manager.jobs.schemas import QueuedJob, job_out

router = APIRouter(prefix="/api/clusters", tags=["clusters"])
HostnamePath = Annotated[
    str,
    Path(
        max_length=253,
        pattern=r"^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$",
        description="the node's hostname",
        examples=["w1"],
    ),
]


@router.post(
    "",
    status_code=201,
    response_model=ClusterOut,
    responses=problems.responses(400, 401, 403, 409, 413, 422),
)
def create_cluster(body: ClusterCreate, ctx: CtxDep, actor: OperatorActor) -> ClusterOut:
    """Create a cluster with its first nodes (PENDING); the first server is the initial master."""
    with ctx.db.transaction() as session:
        cluster = service.create_cluster(
            session, ctx.box, body, actor, artifact_root=ctx.settings.artifact_root_dir
        )
        return cluster_out(cluster, ctx.box)


@router.get(
    "",
    response_model=list[ClusterOut],
    dependencies=[VIEWER],
    responses=problems.responses(400, 401, 403),
)
def list_clusters(session: ReadSessionDep) -> list[ClusterOut]:
    return [cluster_out(c) for c in service.list_clusters(session)]


@router.get(
    "/{cluster_id}",
    response_model=ClusterOut,
    dependencies=[VIEWER],
    responses=problems.responses(400, 401, 403, 404, 422),
)
def get_cluster(cluster_id: ClusterId, session: ReadSessionDep) -> ClusterOut:
    """The cluster with its nodes and its lock."""
    return cluster_out(service.get_cluster(session, cluster_id))


@router.patch(
    "/{cluster_id}",
    response_model=ClusterOut,
    responses=problems.responses(400, 401, 403, 404, 409, 413, 422),
)
def update_cluster(
    cluster_id: ClusterId, body: ClusterUpdate, ctx: CtxDep, actor: OperatorActor
) -> ClusterOut:
    """Edit an idle cluster's settings; 409 while an operation holds its lock."""
    with ctx.db.transaction() as session:
        cluster = service.update_cluster(
            session, ctx.box, cluster_id, body, actor, artifact_root=ctx.settings.artifact_root_dir
        )
        return cluster_out(cluster, ctx.box)


@router.delete(
    "/{cluster_id}",
    status_code=204,
    responses=problems.responses(400, 401, 403, 404, 409, 413, 422),
)
def delete_cluster(cluster_id: ClusterId, ctx: CtxDep, actor: AdminActor) -> Response:
    """Forget an idle cluster (its machines are left untouched); 409 while it is locked."""
    with ctx.db.transaction() as session:
        service.delete_cluster(session, cluster_id, actor)
    return Response(status_code=204)


@router.get(
    "/{cluster_id}/nodes",
    response_model=list[NodeOut],
    dependencies=[VIEWER],
    responses=problems.responses(400, 401, 403, 404, 422),
)
def list_nodes(cluster_id: ClusterId, session: ReadSessionDep) -> list[NodeOut]:
    return [node_out(n) for n in service.get_cluster(session, cluster_id).nodes]


@router.patch(
    "/{cluster_id}/nodes/{hostname}",
    response_model=NodeOut,
    responses=problems.responses(
        400,
        401,
        403,
        404,
        409,
        413,
        422,
        s400="G4: the new hostname or IP belongs to another node of the cluster (type "
        "urn:rke2-manager:guardrail), or the Host or Content-Length header is not acceptable",
        s409="The node is not PENDING, or a running or queued job works on it",
    ),
)
def update_node(
    cluster_id: ClusterId,
    hostname: HostnamePath,
    body: NodeUpdate,
    ctx: CtxDep,
    actor: OperatorActor,
) -> NodeOut:
    """Fix a PENDING node's hostname or IP (a typo before the install): G4 applies, and a new
    IP forgets any host key pinned for the old one. 409 for a node that is not PENDING or that
    a running or queued job works on."""
    with ctx.db.transaction() as session:
        return node_out(update_node_(session, cluster_id, hostname, body, actor))


@router.post(
    "/{cluster_id}/nodes/{hostname}/accept-host-key",
    response_model=NodeOut,
    responses=problems.responses(400, 401, 403, 404, 409, 413, 422),
)
def accept_host_key(
    cluster_id: ClusterId, hostname: HostnamePath, ctx: CtxDep, actor: AdminActor
) -> NodeOut:
    """Forget the node's pinned SSH host key (after it changed on purpose, e.g. a reinstall):
    the next job pins the key the node offers then. Check the offered fingerprint out of band
    first. 409 while a job holds the cluster's lock."""
    with ctx.db.transaction() as session:
        return node_out(accept_host_key_(session, cluster_id, hostname, actor))


@router.get(
    "/{cluster_id}/lock",
    response_model=LockOut,
    dependencies=[VIEWER],
    responses=problems.responses(400, 401, 403, 404, 422),
)
def get_lock(cluster_id: ClusterId, session: ReadSessionDep) -> LockOut:
    """Who holds the cluster's operation lock, since when, until when."""
    return lock_out(service.get_cluster(session, cluster_id))


@router.get(
    "/{cluster_id}/queue",
    response_model=list[QueuedJob],
    dependencies=[VIEWER],
    responses=problems.responses(400, 401, 403, 404, 422),
)
def get_queue(cluster_id: ClusterId, session: ReadSessionDep) -> list[QueuedJob]:
    """Jobs waiting for the cluster's lock, first to start first (G3 waiting jobs excluded)."""
    service.get_cluster(session, cluster_id, with_nodes=False)
    return [
        QueuedJob(position=i, job=job_out(job))
        for i, job in enumerate(queued_jobs(session, cluster_id), start=1)
    ]


@router.get(
    "/{cluster_id}/kubeconfig",
    response_class=Response,
    responses={
        200: {
            "description": "The kubeconfig (YAML)",
            "content": {"application/yaml": {"schema": {"type": "string"}}},
        },
        **problems.responses(400, 401, 403, 404, 422),
    },
)
def get_kubeconfig(
    cluster_id: ClusterId, session: ReadSessionDep, ctx: CtxDep, actor: AdminActor
) -> Response:
    """The admin kubeconfig, once the install has fetched it; 404 before. Admin only: it
    grants cluster-admin on the cluster."""
    cluster = service.get_cluster(session, cluster_id)
    return Response(kubeconfig_out(cluster, ctx.box), media_type="application/yaml")
