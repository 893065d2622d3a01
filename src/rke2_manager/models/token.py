"""API bearer tokens (only their hashes)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, String
from sqlalchemy.orm import Mapped, mapped_column

from rke2_manager.models.base import Base, one_of, utcnow
from rke2_manager.models.enums import ApiRole


class ApiToken(Base):
    """An API bearer token: only its SHA-256 is stored; the token is shown once, at creation."""

    __tablename__ = "api_tokens"
    __table_args__ = (
        CheckConstraint(one_of("role", ApiRole), name="role"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    """The token's first characters, to recognise it in a list."""
    created_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]
