"""Request bodies of the cluster endpoints (responses: :mod:`.responses`)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, SecretStr, field_validator, model_validator

from rke2_manager.clusters.rke2config import (
    KEY_PATTERN,
    MAX_CONFIG_KEYS,
    MAX_CONFIG_LIST,
    MAX_CONFIG_STRING,
    RESERVED_CONFIG_KEYS,
    SECRET_KEY_PATTERN,
    check_config,
)
from rke2_manager.paths import MAX_PATH
from rke2_manager.validation import (
    MAX_NODES_PER_REQUEST,
    Address,
    NodeIn,
    StrictModel,
)

ClusterName = Annotated[
    str,
    Field(
        pattern=r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$",
        description="The cluster's name, unique: lowercase letters, digits and inner hyphens, "
        "at most 63 characters",
        examples=["prod"],
    ),
]
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
    """How the manager reaches the nodes over SSH."""

    user: Annotated[str, Field(pattern=r"^[a-z_][a-z0-9_-]{0,31}$")] = Field(
        "root",
        description="The SSH user on every node; a user other than root uses sudo",
        examples=["root", "ubuntu"],
    )
    port: Annotated[int, Field(ge=1, le=65535)] = Field(
        22, description="The nodes' SSH port", examples=[22]
    )
    private_key: Annotated[SecretStr, Field(max_length=MAX_PRIVATE_KEY)] | None = Field(
        None,
        description="Write-only: the SSH private key (OpenSSH or PEM). Generated (ed25519) when "
        "absent; its public key is then shown as ssh.public_key",
        examples=["-----BEGIN OPENSSH PRIVATE KEY-----\n...\n-----END OPENSSH PRIVATE KEY-----\n"],
    )
    host_key_checking: bool = Field(
        True,
        description="Pin each node's SSH host key on first contact and refuse a changed one. "
        "Turn off only for throwaway labs whose hosts are rebuilt with new keys.",
        examples=[True],
    )


class RKE2In(StrictModel):
    """Which RKE2 to install, from where, and with what config.yaml."""

    version: Annotated[str, Field(max_length=64, pattern=r"^v1\.\d+\.\d+\+rke2r\d+$")] | None = (
        Field(
            None,
            description="The RKE2 release to install; null: the channel's current one",
            examples=["v1.31.4+rke2r1"],
        )
    )
    channel: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9.-]{0,31}$")] = Field(
        "stable",
        description="The release channel, used when version is null",
        examples=["stable", "latest", "v1.31"],
    )
    artifact_dir: Annotated[str, Field(max_length=MAX_PATH, pattern=r"^/")] | None = Field(
        None,
        description="An air-gap artifact directory: a normalised absolute path under the "
        "artifact root (RKE2M_ARTIFACT_ROOT, default <data dir>/artifacts). When set, nodes "
        "are installed from it instead of the online install script.",
        examples=["/srv/rke2-artifacts/v1.31.4"],
    )
    config: dict[str, Any] = Field(
        default_factory=dict,
        description=CONFIG_DESCRIPTION,
        examples=[{"cni": "canal", "tls-san": ["k8s.example.com"]}],
        json_schema_extra=CONFIG_SCHEMA,
    )

    @field_validator("config")
    @classmethod
    def _follows_the_rules(cls, value: dict[str, Any]) -> dict[str, Any]:
        return check_config(value)


_NODES_EXAMPLE = [
    {"hostname": "m1", "ip": "10.0.0.1", "role": "server"},
    {"hostname": "w1", "ip": "10.0.0.21", "role": "agent"},
]
_SSH_EXAMPLE = {"user": "root", "port": 22, "host_key_checking": True}
_RKE2_EXAMPLE = {"version": "v1.31.4+rke2r1", "channel": "stable", "config": {"cni": "canal"}}
_REGISTRATION_DOC = (
    "A fixed address (load balancer or DNS name) in front of the servers, which nodes join "
    "through and the kubeconfig points at; null: the current initial master"
)


class ClusterCreate(StrictModel):
    """A new cluster: only name and nodes are required."""

    name: ClusterName
    nodes: Annotated[
        list[NodeIn],
        Field(
            min_length=1,
            max_length=MAX_NODES_PER_REQUEST,
            description=f"The first nodes (1 to {MAX_NODES_PER_REQUEST}), all PENDING; at least "
            "one server, and the first server is the initial master",
            examples=[_NODES_EXAMPLE],
        ),
    ]
    ssh: SSHIn = Field(
        default_factory=SSHIn, description="SSH access to the nodes", examples=[_SSH_EXAMPLE]
    )
    rke2: RKE2In = Field(
        default_factory=RKE2In, description="What RKE2 to install", examples=[_RKE2_EXAMPLE]
    )
    registration_address: Address | None = Field(
        None, description=_REGISTRATION_DOC, examples=["k8s.example.com", None]
    )

    @model_validator(mode="after")
    def _needs_a_server(self) -> ClusterCreate:
        if not any(n.role == "server" for n in self.nodes):
            raise ValueError(
                "a cluster needs at least one server (the first is the initial master)"
            )
        return self


class ClusterUpdate(StrictModel):
    """Editable settings; nodes change only through scale/add and scale/remove."""

    name: ClusterName | None = Field(
        None, description="A new name (unique); null or absent: unchanged", examples=["prod-eu"]
    )
    registration_address: Address | None = Field(
        None,
        description=_REGISTRATION_DOC + "; null: cleared; absent: unchanged",
        examples=["k8s.example.com"],
    )
    rke2: RKE2In | None = Field(
        None,
        description="New RKE2 settings, replacing the stored ones (see config for how secret "
        "keys are kept); null or absent: unchanged",
        examples=[_RKE2_EXAMPLE],
    )
    ssh: SSHIn | None = Field(
        None,
        description="New SSH settings, replacing the stored ones (a private_key not given keeps "
        "the stored key); null or absent: unchanged",
        examples=[_SSH_EXAMPLE],
    )
