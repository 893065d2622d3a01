"""The audit log: one row per mutating call — who, with which role, what, and what came of it.

Changes are recorded by the services in the call's own transaction (they commit with the
change, or not at all); refused calls are recorded afterwards by the API's error handlers
(:func:`record_refusal`). Rows are only ever added.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from rke2_manager.db import WriteSession
from rke2_manager.models import ApiRole, ApiToken, AuditEntry

#: Actors that act with every role: protected mode (``local``), ``--insecure-no-auth``, the
#: server's CLI. Token names can take none of these forms.
_ADMIN_ACTOR = "local"
_ADMIN_PREFIXES = ("insecure-no-auth@", "cli:")


def role_of(session: WriteSession, actor: str) -> str | None:
    """The role ``actor`` acts with: its token's (a token's role never changes), or None."""
    if actor == _ADMIN_ACTOR or actor.startswith(_ADMIN_PREFIXES):
        return ApiRole.ADMIN.value
    return session.scalar(select(ApiToken.role).where(ApiToken.name == actor))


def record(
    session: WriteSession,
    actor: str,
    action: str,
    cluster_id: int | None = None,
    job_id: int | None = None,
    *,
    result: str = "ok",
    **detail: Any,
) -> None:
    """Add an audit entry; it commits with the change it describes, or not at all."""
    with session.no_autoflush:
        role = role_of(session, actor)
    session.add(
        AuditEntry(
            actor=actor,
            role=role,
            action=action[:64],
            cluster_id=cluster_id,
            job_id=job_id,
            result=result[:1000],
            detail=detail,
        )
    )
