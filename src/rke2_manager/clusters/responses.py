"""Response bodies of the cluster endpoints, and the functions that build them."""

from __future__ import annotations

import re
from datetime import datetime
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field
from sqlalchemy.orm import object_session

from rke2_manager.clusters.rke2config import render_config, secret_key_names
from rke2_manager.clusters.views import snapshot
from rke2_manager.db import session_box
from rke2_manager.errors import NotFound
from rke2_manager.guardrails import supervisor_target
from rke2_manager.validation import example_of

if TYPE_CHECKING:
    from rke2_manager.models import Cluster, Node
    from rke2_manager.vault import SecretBox

_AT = "2026-12-02T10:00:00Z"


class NodeOut(BaseModel):
    """A node of a cluster."""

    id: int = Field(description="The node's id", examples=[7])
    hostname: str = Field(description="The node's name (RFC 1123, lowercase)", examples=["w1"])
    ip: str = Field(description="The address the manager reaches it at", examples=["10.0.0.21"])
    role: str = Field(description="server or agent", examples=["agent"])
    status: str = Field(
        description="PENDING (not installed yet), INSTALLING, ACTIVE, FAILED, REMOVING or "
        "UPGRADING",
        examples=["ACTIVE"],
    )
    rke2_version: str | None = Field(
        description="The RKE2 release the node was last seen running (recorded by the jobs "
        "that start or upgrade it); null: not known",
        examples=["v1.32.1+rke2r1"],
    )
    status_reason: str | None = Field(
        description="Why the node is in its status (e.g. the failed task), if known",
        examples=[None, "Task 'Start rke2-server' failed: timed out after 600 s"],
    )
    is_initial_master: bool = Field(
        description="The server other nodes join through (when no registration address is set)",
        examples=[False],
    )
    host_key: str | None = Field(
        description="SSH host key pinned on first contact (`<type> <base64>`), null until then",
        examples=["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMx..."],
    )
    host_key_pinned_at: datetime | None = Field(
        description="When the host key was pinned", examples=[_AT]
    )
    host_key_offered: str | None = Field(
        description="Fingerprint of a different key the node offered; accept it with "
        "POST /api/clusters/{id}/nodes/{hostname}/accept-host-key (admin)",
        examples=[None, "SHA256:uNiVztksCsDhcc0u9e8BujQXVUpKZIDTMczCvj3tD2s"],
    )
    created_at: datetime = Field(description="When the node was added", examples=[_AT])
    updated_at: datetime = Field(description="When the node last changed", examples=[_AT])


class LockOut(BaseModel):
    """A cluster's operation lock: at most one job changes a cluster at a time."""

    operation_status: str = Field(
        description="idle, or running while a job holds the lock", examples=["running"]
    )
    current_job_id: int | None = Field(
        description="The job holding the lock; null when idle", examples=[42]
    )
    operation_started_at: datetime | None = Field(
        description="When the lock was taken", examples=[_AT]
    )
    operation_locked_by: str | None = Field(
        description="The operation holding the lock; null when idle",
        examples=["scale_add_masters"],
    )
    lock_expires_at: datetime | None = Field(
        description="When the lock's lease runs out unless its worker renews it", examples=[_AT]
    )
    fencing_token: int = Field(
        description="Increases each time the lock is taken; the nodes refuse a run holding an "
        "older one",
        examples=[12],
    )


class SSHOut(BaseModel):
    """SSH access to the nodes (the private key is never shown)."""

    user: str = Field(description="The SSH user on every node", examples=["root"])
    port: int = Field(description="The nodes' SSH port", examples=[22])
    public_key: str | None = Field(
        description="The public half of the cluster's SSH key, to put in authorized_keys",
        examples=["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJ... rke2-manager@prod"],
    )
    host_key_checking: bool = Field(
        description="Whether nodes' SSH host keys are pinned and checked", examples=[True]
    )


class RKE2Out(BaseModel):
    """What RKE2 is installed, from where, with what config.yaml (secrets only named)."""

    version: str | None = Field(
        description="The RKE2 release; null: the channel's current one",
        examples=["v1.31.4+rke2r1"],
    )
    channel: str = Field(description="The release channel", examples=["stable"])
    artifact_dir: str | None = Field(
        description="The air-gap artifact directory, if nodes are installed from one",
        examples=[None, "/srv/rke2-artifacts/v1.31.4"],
    )
    config: dict[str, Any] = Field(
        description="The plain extra config.yaml keys; a stored value that breaks the rules "
        "shows as a JSON string",
        examples=[{"cni": "canal"}],
    )
    secret_config_keys: list[str] = Field(
        description="Names of the secret keys set (their values are never shown)",
        examples=[["etcd-s3-secret-key"]],
    )


class ClusterOut(LockOut):
    """A cluster with its settings, its nodes and its lock."""

    id: int = Field(description="The cluster's id", examples=[1])
    name: str = Field(description="The cluster's unique name", examples=["prod"])
    stage: str = Field(
        description="new (not installed yet), installing, ready or failed (the install failed)",
        examples=["ready"],
    )
    rke2: RKE2Out = Field(description="RKE2 settings", examples=[example_of(RKE2Out)])
    ssh: SSHOut = Field(description="SSH settings", examples=[example_of(SSHOut)])
    registration_address: str | None = Field(
        description="The fixed address nodes join through, if set", examples=[None]
    )
    kubeconfig_available: bool = Field(
        description="Whether GET /api/clusters/{id}/kubeconfig has one to give", examples=[True]
    )
    nodes: list[NodeOut] = Field(
        description="The cluster's nodes", examples=[[example_of(NodeOut)]]
    )
    created_at: datetime = Field(description="When the cluster was created", examples=[_AT])
    updated_at: datetime = Field(description="When the cluster last changed", examples=[_AT])


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
