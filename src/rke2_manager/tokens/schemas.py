"""Request and response bodies of the token endpoints."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, Field

from rke2_manager.models import ApiRole, ApiToken
from rke2_manager.validation import StrictModel

TokenName = Annotated[
    str,
    Field(
        pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$",
        description="Who holds the token; recorded as the actor in the audit log",
        examples=["ci-deployer"],
    ),
]


_AT = "2026-12-02T10:00:00Z"


class TokenCreate(StrictModel):
    """A new API token."""

    name: TokenName
    role: ApiRole = Field(
        description="viewer: read; operator: start and cancel; admin: all", examples=["operator"]
    )


class TokenOut(BaseModel):
    """An API token (never the token itself)."""

    id: int = Field(description="The token's id", examples=[3])
    name: str = Field(description="Who holds the token", examples=["ci-deployer"])
    role: str = Field(description="viewer, operator or admin", examples=["operator"])
    prefix: str = Field(
        description="The token's first characters, to recognise it", examples=["rke2m_3fQ9x2"]
    )
    created_by: str = Field(description="Who created the token", examples=["admin"])
    created_at: datetime = Field(description="When it was created", examples=[_AT])
    last_used_at: datetime | None = Field(
        description="When it was last used; null if never", examples=[_AT]
    )
    revoked_at: datetime | None = Field(
        description="When it was revoked; null while it works", examples=[None]
    )


class TokenCreated(TokenOut):
    """A token just created, with the token itself."""

    token: str = Field(
        description="The bearer token. Shown this once; only its hash is kept",
        examples=["rke2m_3fQ9x2Lr8KcVd0Jm5tY7wZ1pA4sE6gHbN2uXq0oIeWf8Rk"],
    )


def token_out(row: ApiToken) -> TokenOut:
    return TokenOut.model_validate(row, from_attributes=True)
