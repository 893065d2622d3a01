"""API tokens: create (shown once), authenticate (by hash), list, revoke. Services only flush."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from datetime import timedelta

from sqlalchemy import exists, select, update
from sqlalchemy.orm import Session

from rke2_manager import audit
from rke2_manager.db import WriteSession
from rke2_manager.errors import Conflict, InvalidRequest, NotFound
from rke2_manager.models import ApiRole, ApiToken, utcnow

TOKEN_PREFIX = "rke2m_"
#: The audit log's actor for protected mode: no token may carry it.
RESERVED_NAME = "local"
#: ``last_used_at`` is refreshed at most this often, so reads stay reads.
TOUCH_EVERY = timedelta(minutes=1)


def hash_token(token: str) -> str:
    """SHA-256 of the token: tokens are 256-bit random, so a plain hash cannot be reversed."""
    return hashlib.sha256(token.encode()).hexdigest()


def any_active(session: Session) -> bool:
    """Whether any unrevoked token exists (if not, the service is in protected mode)."""
    return bool(session.scalar(select(exists().where(ApiToken.revoked_at.is_(None)))))


def create_token(
    session: WriteSession, name: str, role: ApiRole, actor: str
) -> tuple[ApiToken, str]:
    """A new token for ``name``; returns the row and the token, which is never stored.

    Raises Conflict if the name was ever used (names stay unique after revocation, so the
    audit log's actors stay unambiguous).
    """
    if name == RESERVED_NAME:
        raise InvalidRequest(f"The token name '{name}' is reserved for the protected-mode caller")
    if session.scalar(select(ApiToken.id).where(ApiToken.name == name)) is not None:
        raise Conflict(f"A token named '{name}' already exists")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = ApiToken(
        name=name,
        role=role.value,
        token_hash=hash_token(token),
        prefix=token[: len(TOKEN_PREFIX) + 6],
        created_by=actor,
    )
    session.add(row)
    session.flush()
    audit.record(session, actor, "token.create", token_id=row.id, name=name, role=role.value)
    return row, token


def authenticate(session: Session, token: str) -> ApiToken | None:
    """The active token row for ``token``, or None (unknown or revoked)."""
    if not token.startswith(TOKEN_PREFIX) or len(token) > 128:
        return None
    return session.scalars(
        select(ApiToken).where(
            ApiToken.token_hash == hash_token(token), ApiToken.revoked_at.is_(None)
        )
    ).one_or_none()


def touch(session: WriteSession, token_id: int) -> None:
    """Record that the token was used now (skipped if it was within ``TOUCH_EVERY``)."""
    now = utcnow()
    session.execute(
        update(ApiToken)
        .where(
            ApiToken.id == token_id,
            (ApiToken.last_used_at.is_(None)) | (ApiToken.last_used_at < now - TOUCH_EVERY),
        )
        .values(last_used_at=now)
    )


def list_tokens(session: Session) -> Sequence[ApiToken]:
    return session.scalars(select(ApiToken).order_by(ApiToken.id)).all()


def find_token(session: WriteSession, ref: str) -> ApiToken:
    """A token by id or name; NotFound otherwise."""
    stmt = select(ApiToken).where(
        ApiToken.id == int(ref) if ref.isdigit() and len(ref) < 10 else ApiToken.name == ref
    )
    row = session.scalars(stmt).one_or_none()
    if row is None:
        raise NotFound(f"Token '{ref}' not found")
    return row


def revoke_token(session: WriteSession, ref: str, actor: str) -> ApiToken:
    """Revoke a token by id or name; revoking a revoked token changes nothing."""
    row = find_token(session, ref)
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        session.flush()
        audit.record(session, actor, "token.revoke", token_id=row.id, name=row.name)
    return row
