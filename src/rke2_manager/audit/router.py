"""The audit log (admin): every mutating call, who made it and what came of it."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field
from sqlalchemy import select

from rke2_manager.api import problems
from rke2_manager.api.auth import AdminActor
from rke2_manager.api.deps import MAX_ID, CtxDep
from rke2_manager.errors import InvalidRequest
from rke2_manager.models import AuditEntry

router = APIRouter(prefix="/api/audit", tags=["audit"])


class AuditOut(BaseModel):
    """One audited call."""

    id: int = Field(description="The entry's id (page with after_id)", examples=[1201])
    at: datetime = Field(description="When the call was made", examples=["2026-12-02T10:00:00Z"])
    actor: str = Field(description="Who made it (token name)", examples=["ci-deployer"])
    role: str | None = Field(
        description="The caller's role then; null if no token has the name", examples=["operator"]
    )
    action: str = Field(
        description="What was done (or tried, for a refusal)", examples=["cluster.update"]
    )
    cluster_id: int | None = Field(description="The cluster concerned, if any", examples=[1])
    job_id: int | None = Field(description="The job concerned, if any", examples=[None])
    result: str = Field(
        description="What came of it: ok, or a refusal's status and detail",
        examples=["ok", "409 Cluster is busy with operation 'install' (job 42). Please wait."],
    )
    detail: dict[str, Any] = Field(
        description="What else is known (e.g. the fields changed)",
        examples=[{"fields": ["registration_address"]}],
    )


@router.get("", response_model=list[AuditOut], responses=problems.responses(400, 401, 403, 422))
def list_audit(
    ctx: CtxDep,
    actor: AdminActor,
    cluster_id: Annotated[
        int | None, Query(ge=1, le=MAX_ID, description="only this cluster", examples=[1])
    ] = None,
    by: Annotated[
        str | None,
        Query(
            alias="actor", max_length=128, description="only this actor", examples=["ci-deployer"]
        ),
    ] = None,
    since: Annotated[
        datetime | None,
        Query(description="ISO 8601, with a time zone", examples=["2026-12-02T10:00:00Z"]),
    ] = None,
    after_id: Annotated[
        int, Query(ge=0, le=MAX_ID, description="page after this id", examples=[0])
    ] = 0,
    limit: Annotated[
        int, Query(ge=1, le=1000, description="at most this many entries", examples=[100])
    ] = 100,
) -> list[AuditOut]:
    """Audit entries, oldest first, filtered by cluster, actor and time; page with after_id."""
    stmt = select(AuditEntry).where(AuditEntry.id > after_id)
    if cluster_id is not None:
        stmt = stmt.where(AuditEntry.cluster_id == cluster_id)
    if by is not None:
        stmt = stmt.where(AuditEntry.actor == by)
    if since is not None:
        if since.tzinfo is None:
            raise InvalidRequest("since: give a time zone, e.g. 2026-12-02T10:00:00Z")
        stmt = stmt.where(AuditEntry.at >= since)
    with ctx.db.read_session() as session:
        rows = session.scalars(stmt.order_by(AuditEntry.id).limit(limit)).all()
        return [AuditOut.model_validate(r, from_attributes=True) for r in rows]
