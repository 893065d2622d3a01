"""``POST /api/clusters/{id}/upgrade``: a rolling upgrade, under the cluster's lock, behind G5."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, BackgroundTasks
from fastapi.responses import JSONResponse
from pydantic import Field

from rke2_manager.api.auth import OperatorActor
from rke2_manager.api.deps import ClusterId, CtxDep, ReadSessionDep
from rke2_manager.jobs import create as service
from rke2_manager.jobs.schemas import OperationAccepted
from rke2_manager.jobs.upgrade import UpgradeRequest
from rke2_manager.operations.plan import DryRunQuery
from rke2_manager.operations.router import ACCEPTED, OnBusyQuery, start_job
from rke2_manager.paths import MAX_PATH
from rke2_manager.validation import MAX_NODES_PER_REQUEST, Hostname, StrictModel
from rke2_manager.versions import VERSION_PATTERN

router = APIRouter(tags=["operations"])
MAX_AGENT_CONCURRENCY = 100


class UpgradeIn(StrictModel):
    """Upgrade the cluster's nodes to an RKE2 release: servers one at a time, then agents."""

    version: Annotated[str, Field(max_length=64, pattern=VERSION_PATTERN)] = Field(
        description="The RKE2 release to upgrade to: no downgrade, at most one minor version up "
        "from what every node runs (G5)",
        examples=["v1.32.1+rke2r1"],
    )
    artifact_dir: Annotated[str, Field(max_length=MAX_PATH, pattern=r"^/")] | None = Field(
        None,
        description="The new release's air-gap artifact directory: an existing, normalised "
        "absolute path under the artifact root (RKE2M_ARTIFACT_ROOT); null: the online install "
        "script, pinned to version",
        examples=["/srv/rke2-artifacts/v1.32.1"],
    )
    drain: bool = Field(
        True,
        description="Drain each node (bounded; a drain that does not finish fails the upgrade) "
        "after cordoning it",
        examples=[True],
    )
    agent_concurrency: int = Field(
        1,
        ge=1,
        le=MAX_AGENT_CONCURRENCY,
        description="How many agents are upgraded at once, after every server",
        examples=[1],
    )
    skip: Annotated[list[Hostname], Field(max_length=MAX_NODES_PER_REQUEST)] = Field(
        default_factory=list,
        description="Nodes to leave as they are (e.g. a FAILED node G5 would refuse otherwise)",
        examples=[[]],
    )


@router.post(
    "/api/clusters/{cluster_id}/upgrade",
    status_code=202,
    response_model=OperationAccepted,
    responses=ACCEPTED,
)
def upgrade(
    cluster_id: ClusterId,
    body: UpgradeIn,
    read: ReadSessionDep,
    ctx: CtxDep,
    actor: OperatorActor,
    tasks: BackgroundTasks,
    on_busy: OnBusyQuery = "reject",
    dry_run: DryRunQuery = False,
) -> OperationAccepted | JSONResponse:
    """Snapshot etcd, upgrade servers one at a time, then agents in batches; each node must be
    Ready on the new version (servers: every etcd member healthy too) before the next starts."""
    request = UpgradeRequest(
        body.version,
        body.artifact_dir,
        body.drain,
        body.agent_concurrency,
        tuple(dict.fromkeys(body.skip)),
    )
    return start_job(
        ctx,
        read,
        tasks,
        cluster_id,
        on_busy,
        dry_run,
        lambda s: service.start_upgrade(s, ctx.settings, cluster_id, request, actor, on_busy),
    )
