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


class TokenCreate(StrictModel):
    name: TokenName
    role: ApiRole = Field(description="viewer: read; operator: start and cancel; admin: all")


class TokenOut(BaseModel):
    id: int
    name: str
    role: str
    prefix: str = Field(description="The token's first characters, to recognise it")
    created_by: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class TokenCreated(TokenOut):
    token: str = Field(description="The bearer token. Shown this once; only its hash is kept")


def token_out(row: ApiToken) -> TokenOut:
    return TokenOut.model_validate(row, from_attributes=True)
