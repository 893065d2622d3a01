"""Request and response bodies of the cluster endpoints."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator

from rke2_manager.validation import (
    MAX_NODES_PER_REQUEST,
    Address,
    NodeIn,
    StrictModel,
)

ClusterName = Annotated[str, Field(pattern=r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")]
RESERVED_CONFIG_KEYS = {"token", "agent-token", "server", "node-name", "node-ip", "token-file"}


class SSHIn(StrictModel):
    user: Annotated[str, Field(pattern=r"^[a-z_][a-z0-9_-]{0,31}$")] = "root"
    port: Annotated[int, Field(ge=1, le=65535)] = 22
    private_key: SecretStr | None = None
    """Write-only. Generated (ed25519) when absent; its public key is then shown."""


class RKE2In(StrictModel):
    version: Annotated[str, Field(pattern=r"^v1\.\d+\.\d+\+rke2r\d+$")] | None = None
    channel: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9.-]{0,31}$")] = "stable"
    artifact_dir: Annotated[str, Field(max_length=4096, pattern=r"^/")] | None = None
    config: dict[str, Any] = Field(default_factory=dict)

    @field_validator("config")
    @classmethod
    def _no_reserved_keys(cls, value: dict[str, Any]) -> dict[str, Any]:
        reserved = sorted(RESERVED_CONFIG_KEYS & value.keys())
        if reserved:
            raise ValueError(
                f"rke2.config may not set {', '.join(reserved)}: the manager sets them"
            )
        for key in value:
            if not re.match(r"^[a-z0-9][a-z0-9-]*$", key):
                raise ValueError(f"rke2.config key '{key}' is not an RKE2 option name")
        return value


class ClusterCreate(StrictModel):
    name: ClusterName
    nodes: Annotated[list[NodeIn], Field(min_length=1, max_length=MAX_NODES_PER_REQUEST)]
    ssh: SSHIn = Field(default_factory=SSHIn)
    rke2: RKE2In = Field(default_factory=RKE2In)
    registration_address: Address | None = None

    @model_validator(mode="after")
    def _needs_a_server(self) -> ClusterCreate:
        if not any(n.role == "server" for n in self.nodes):
            raise ValueError(
                "a cluster needs at least one server (the first is the initial master)"
            )
        return self


class ClusterUpdate(StrictModel):
    """Editable settings; nodes change only through scale/add and scale/remove."""

    name: ClusterName | None = None
    registration_address: Address | None = None
    rke2: RKE2In | None = None
    ssh: SSHIn | None = None


class NodeOut(BaseModel):
    id: int
    hostname: str
    ip: str
    role: str
    status: str
    status_reason: str | None
    is_initial_master: bool
    created_at: datetime
    updated_at: datetime


class LockOut(BaseModel):
    operation_status: str
    current_job_id: int | None
    operation_started_at: datetime | None
    operation_locked_by: str | None
    lock_expires_at: datetime | None
    fencing_token: int


class SSHOut(BaseModel):
    user: str
    port: int
    public_key: str | None


class RKE2Out(BaseModel):
    version: str | None
    channel: str
    artifact_dir: str | None
    config: dict[str, Any]


class ClusterOut(LockOut):
    id: int
    name: str
    stage: str
    rke2: RKE2Out
    ssh: SSHOut
    registration_address: str | None
    kubeconfig_available: bool
    nodes: list[NodeOut]
    created_at: datetime
    updated_at: datetime
