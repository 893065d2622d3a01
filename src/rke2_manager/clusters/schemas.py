"""Request and response bodies of the cluster endpoints."""

from __future__ import annotations

import re
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from sqlalchemy.orm import object_session

from rke2_manager.clusters.rke2config import (
    KEY_PATTERN,
    MAX_CONFIG_KEYS,
    MAX_CONFIG_LIST,
    MAX_CONFIG_STRING,
    RESERVED_CONFIG_KEYS,
    SECRET_KEY_PATTERN,
    check_config,
    render_config,
    secret_key_names,
)
from rke2_manager.clusters.views import snapshot
from rke2_manager.db import session_box
from rke2_manager.errors import NotFound
from rke2_manager.guardrails import supervisor_target
from rke2_manager.paths import MAX_PATH
from rke2_manager.validation import (
    MAX_NODES_PER_REQUEST,
    Address,
    NodeIn,
    StrictModel,
)

if TYPE_CHECKING:
    from rke2_manager.models import Cluster, Node
    from rke2_manager.vault import SecretBox

ClusterName = Annotated[str, Field(pattern=r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")]
MAX_PRIVATE_KEY = 16_384

CONFIG_DESCRIPTION = (
    f"Extra config.yaml keys. Keys: RKE2 option names ({KEY_PATTERN}), at most "
    f"{MAX_CONFIG_KEYS}; values: a string (at most {MAX_CONFIG_STRING} characters, no NUL), "
    f"an integer, a finite number, a boolean, or a list of at most {MAX_CONFIG_LIST} of those; "
    "null means not set. token, agent-token, server, node-name, node-ip and token-file are "
    "set by the manager and refused. Keys holding secrets (token, agent-token, "
    "etcd-s3-access-key, etcd-s3-secret-key, etcd-s3-session-token, datastore-endpoint, and "
    f"any key matching {SECRET_KEY_PATTERN}) are stored encrypted and write-only: responses "
    "name them in secret_config_keys. In a PATCH, plain keys replace the stored plain keys; "
    "secret keys given are set, secret keys not mentioned are kept, a secret key given as "
    "null is removed."
)

_SCALAR: list[Any] = [
    {"type": "string", "maxLength": MAX_CONFIG_STRING, "pattern": "^[^\\u0000]*$"},
    {"type": "integer", "minimum": -(2**63), "maximum": 2**63 - 1},
    {"type": "number"},
    {"type": "boolean"},
]
CONFIG_SCHEMA: dict[str, Any] = {
    "maxProperties": MAX_CONFIG_KEYS,
    "propertyNames": {"pattern": KEY_PATTERN, "not": {"enum": sorted(RESERVED_CONFIG_KEYS)}},
    "additionalProperties": {
        "anyOf": [
            *_SCALAR,
            {"type": "array", "maxItems": MAX_CONFIG_LIST, "items": {"anyOf": _SCALAR}},
            {"type": "null"},
        ]
    },
}
"""The rules above as JSON Schema, for the OpenAPI document (the validator enforces them)."""


class SSHIn(StrictModel):
    user: Annotated[str, Field(pattern=r"^[a-z_][a-z0-9_-]{0,31}$")] = "root"
    port: Annotated[int, Field(ge=1, le=65535)] = 22
    private_key: Annotated[SecretStr, Field(max_length=MAX_PRIVATE_KEY)] | None = None
    """Write-only. Generated (ed25519) when absent; its public key is then shown."""
    host_key_checking: bool = Field(
        True,
        description="Pin each node's SSH host key on first contact and refuse a changed one. "
        "Turn off only for throwaway labs whose hosts are rebuilt with new keys.",
    )


class RKE2In(StrictModel):
    version: Annotated[str, Field(max_length=64, pattern=r"^v1\.\d+\.\d+\+rke2r\d+$")] | None = None
    channel: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9.-]{0,31}$")] = "stable"
    artifact_dir: Annotated[str, Field(max_length=MAX_PATH, pattern=r"^/")] | None = Field(
        None,
        description="An air-gap artifact directory: a normalised absolute path under the "
        "artifact root (RKE2M_ARTIFACT_ROOT, default <data dir>/artifacts).",
    )
    config: dict[str, Any] = Field(
        default_factory=dict, description=CONFIG_DESCRIPTION, json_schema_extra=CONFIG_SCHEMA
    )

    @field_validator("config")
    @classmethod
    def _follows_the_rules(cls, value: dict[str, Any]) -> dict[str, Any]:
        return check_config(value)


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
    host_key: str | None = Field(
        description="SSH host key pinned on first contact (`<type> <base64>`), null until then"
    )
    host_key_pinned_at: datetime | None
    host_key_offered: str | None = Field(
        description="Fingerprint of a different key the node offered; accept it with "
        "POST /api/clusters/{id}/nodes/{hostname}/accept-host-key (admin)"
    )
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
    host_key_checking: bool


class RKE2Out(BaseModel):
    version: str | None
    channel: str
    artifact_dir: str | None
    config: dict[str, Any]
    """The plain keys only; a stored value that breaks the rules shows as a JSON string."""
    secret_config_keys: list[str]
    """Names of the secret keys set (their values are never shown)."""


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


def lock_out(cluster: Cluster) -> LockOut:
    return LockOut(
        operation_status=cluster.operation_status,
        current_job_id=cluster.current_job_id,
        operation_started_at=cluster.operation_started_at,
        operation_locked_by=cluster.operation_locked_by,
        lock_expires_at=cluster.lock_expires_at,
        fencing_token=cluster.lock_token,
    )


def node_out(node: Node) -> NodeOut:
    return NodeOut.model_validate(node, from_attributes=True)


def cluster_out(cluster: Cluster, box: SecretBox | None = None) -> ClusterOut:
    """The response body of a cluster (loaded with its nodes); never raises on stored values.

    Secret config keys are named, never shown; their names are read with ``box``, by default
    the one attached to the cluster's session (``Database.attach_redaction``).
    """
    config, clear_secrets = render_config(cluster.rke2_config)
    box = box or session_box(object_session(cluster))
    secret_names = sorted({*clear_secrets, *secret_key_names(cluster, box)})
    return ClusterOut(
        **lock_out(cluster).model_dump(),
        id=cluster.id,
        name=cluster.name,
        stage=cluster.stage,
        rke2=RKE2Out(
            version=cluster.rke2_version,
            channel=cluster.rke2_channel,
            artifact_dir=cluster.rke2_artifact_dir,
            config=config,
            secret_config_keys=secret_names,
        ),
        ssh=SSHOut(
            user=cluster.ssh_user,
            port=cluster.ssh_port,
            public_key=cluster.ssh_public_key,
            host_key_checking=cluster.ssh_host_key_checking,
        ),
        registration_address=cluster.registration_address,
        kubeconfig_available=cluster.kubeconfig_enc is not None,
        nodes=[node_out(n) for n in cluster.nodes],
        created_at=cluster.created_at,
        updated_at=cluster.updated_at,
    )


def kubeconfig_out(cluster: Cluster, box: SecretBox) -> str:
    """The admin kubeconfig, its server pointed at the cluster's current address (the fixed
    registration address, else the current initial master — which moves when it is removed).

    Raises NotFound before the install has fetched one.
    """
    if cluster.kubeconfig_enc is None:
        raise NotFound(f"Cluster {cluster.id} has no kubeconfig yet; run the install first")
    address = supervisor_target(snapshot(cluster)) or ""
    return reachable_kubeconfig(box.decrypt(cluster.kubeconfig_enc), address)


def reachable_kubeconfig(text: str, address: str) -> str:
    """RKE2 writes ``server: https://127.0.0.1:6443``; point it at ``address`` instead."""
    if not address:
        return text
    host = f"[{address}]" if ":" in address else address
    return re.sub(
        r"(server:\s*https://)(127\.0\.0\.1|localhost|\[::1\])(:\d+)", rf"\g<1>{host}\g<3>", text
    )
