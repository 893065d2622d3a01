"""Clusters and their nodes: create, read, edit, delete. Services flush; the caller commits."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from rke2_manager import audit
from rke2_manager.cluster_lock import ensure_idle, lock_cluster_row
from rke2_manager.clusters.rke2config import patch_config, split_config, store_config
from rke2_manager.clusters.schemas import ClusterCreate, ClusterUpdate
from rke2_manager.db import WriteSession
from rke2_manager.errors import Conflict, InvalidRequest, NotFound
from rke2_manager.guardrails import (
    ClusterView,
    NewNode,
    check_identity,
)
from rke2_manager.models import Cluster, Node
from rke2_manager.paths import PathNotAllowed, check_artifact_dir
from rke2_manager.vault import SecretBox, new_cluster_token, new_ssh_keypair, public_key_of


def get_cluster(session: Session, cluster_id: int, with_nodes: bool = True) -> Cluster:
    """The cluster (with its nodes unless told otherwise); NotFound if absent."""
    stmt = select(Cluster).where(Cluster.id == cluster_id)
    if with_nodes:
        stmt = stmt.options(selectinload(Cluster.nodes))
    cluster = session.scalars(stmt).one_or_none()
    if cluster is None:
        raise NotFound(f"Cluster {cluster_id} not found")
    return cluster


def list_clusters(session: Session) -> Sequence[Cluster]:
    return session.scalars(
        select(Cluster).options(selectinload(Cluster.nodes)).order_by(Cluster.id)
    ).all()


def _ensure_name_free(session: Session, name: str, but: int | None = None) -> None:
    existing = session.scalar(select(Cluster.id).where(Cluster.name == name))
    if existing is not None and existing != but:
        raise Conflict(f"Cluster named '{name}' already exists", cluster_id=existing)


def _public_key(private: str) -> str:
    try:
        return public_key_of(private)
    except ValueError:
        raise InvalidRequest(
            "ssh.private_key is not an unencrypted OpenSSH or PEM private key"
        ) from None


def _artifact_dir(value: str | None, root: Path) -> str | None:
    """``value`` checked to lie under the artifact ``root``; InvalidRequest (422) otherwise."""
    if value is None:
        return None
    try:
        return str(check_artifact_dir(value, root))
    except PathNotAllowed as exc:
        raise InvalidRequest(str(exc)) from None


def create_cluster(
    session: WriteSession, box: SecretBox, body: ClusterCreate, actor: str, *, artifact_root: Path
) -> Cluster:
    """Create a cluster and its first nodes (PENDING); the first server is the initial master.

    Secret ``rke2.config`` keys are stored encrypted. Raises InvalidRequest (422) for an
    ``rke2.artifact_dir`` outside ``artifact_root``, Conflict if the name is taken,
    GuardrailViolation (G4) on duplicate nodes.
    """
    artifact_dir = _artifact_dir(body.rke2.artifact_dir, artifact_root)
    _ensure_name_free(session, body.name)
    new = [NewNode(n.hostname, n.ip, n.role) for n in body.nodes]
    check_identity(ClusterView(nodes=()), new)
    if body.ssh.private_key is not None:
        private = body.ssh.private_key.get_secret_value()
        public = _public_key(private)
    else:
        private, public = new_ssh_keypair(f"rke2-manager@{body.name}")
    cluster = Cluster(
        name=body.name,
        rke2_version=body.rke2.version,
        rke2_channel=body.rke2.channel,
        rke2_artifact_dir=artifact_dir,
        ssh_user=body.ssh.user,
        ssh_port=body.ssh.port,
        ssh_host_key_checking=body.ssh.host_key_checking,
        ssh_private_key_enc=box.encrypt(private),
        ssh_public_key=public,
        token_enc=box.encrypt(new_cluster_token()),
        registration_address=body.registration_address,
    )
    store_config(cluster, box, *split_config(body.rke2.config))
    first_server = next(n for n in body.nodes if n.role == "server")
    cluster.nodes = [
        Node(hostname=n.hostname, ip=n.ip, role=n.role, is_initial_master=n is first_server)
        for n in body.nodes
    ]
    session.add(cluster)
    session.flush()
    audit.record(
        session,
        actor,
        "cluster.create",
        cluster.id,
        name=cluster.name,
        nodes=[n.hostname for n in cluster.nodes],
    )
    return cluster


def update_cluster(
    session: WriteSession,
    box: SecretBox,
    cluster_id: int,
    body: ClusterUpdate,
    actor: str,
    *,
    artifact_root: Path,
) -> Cluster:
    """Edit settings of an idle cluster; ClusterBusy (409) while a job holds its lock.

    ``rke2`` replaces version, channel, artifact directory and the plain config keys; secret
    config keys given are set, those not mentioned kept, those given as null removed.
    Raises InvalidRequest (422) for an artifact directory outside ``artifact_root``; the
    caller's transaction is rolled back on any error, so nothing changes then.
    """
    artifact_dir = _artifact_dir(body.rke2.artifact_dir if body.rke2 else None, artifact_root)
    cluster = lock_cluster_row(session, cluster_id)
    ensure_idle(cluster)
    changed = sorted(body.model_fields_set)
    if body.name is not None and body.name != cluster.name:
        _ensure_name_free(session, body.name, but=cluster.id)
        cluster.name = body.name
    if "registration_address" in body.model_fields_set:
        cluster.registration_address = body.registration_address
    if body.rke2 is not None:
        cluster.rke2_version = body.rke2.version
        cluster.rke2_channel = body.rke2.channel
        cluster.rke2_artifact_dir = artifact_dir
        patch_config(cluster, box, body.rke2.config)
    if body.ssh is not None:
        cluster.ssh_user = body.ssh.user
        cluster.ssh_port = body.ssh.port
        cluster.ssh_host_key_checking = body.ssh.host_key_checking
        if body.ssh.private_key is not None:
            private = body.ssh.private_key.get_secret_value()
            cluster.ssh_public_key = _public_key(private)
            cluster.ssh_private_key_enc = box.encrypt(private)
    session.flush()
    audit.record(session, actor, "cluster.update", cluster.id, fields=changed)
    return cluster


def delete_cluster(session: WriteSession, cluster_id: int, actor: str) -> None:
    """Delete an idle cluster with its nodes and job history; ClusterBusy (409) while locked.

    The machines are left as they are: deleting the record does not uninstall RKE2.
    """
    cluster = lock_cluster_row(session, cluster_id, with_nodes=False)
    ensure_idle(cluster)
    audit.record(session, actor, "cluster.delete", cluster.id, name=cluster.name)
    session.delete(cluster)
    session.flush()
