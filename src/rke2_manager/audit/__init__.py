"""The audit log: one row per mutating call, written in the call's own transaction."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from rke2_manager.models import AuditEntry


def record(
    session: Session,
    actor: str,
    action: str,
    cluster_id: int | None = None,
    job_id: int | None = None,
    **detail: Any,
) -> None:
    """Add an audit entry; it commits with the change it describes, or not at all."""
    session.add(
        AuditEntry(actor=actor, action=action, cluster_id=cluster_id, job_id=job_id, detail=detail)
    )
