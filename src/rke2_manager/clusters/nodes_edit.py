"""Editing a node that is not installed yet: fix a typo'd IP or hostname of a PENDING node.

Only a ``PENDING`` node can change: it has never run RKE2, so nothing on any machine knows
it by its old name or address. The new values pass G4 (unique hostname and IP in the cluster,
with its exact messages). A node that a job of the cluster works on, or is queued to, cannot
change under it: 409 (the job would reach a host it was not asked to, or miss the node).
A new IP is a new machine: a host key pinned for the old address is forgotten, so the next
job pins the key the new address offers.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, model_validator
from sqlalchemy import select

from rke2_manager import audit
from rke2_manager.cluster_lock import lock_cluster_row
from rke2_manager.clusters.hostkeys import fingerprint
from rke2_manager.clusters.views import snapshot
from rke2_manager.db import WriteSession
from rke2_manager.errors import Conflict, NotFound
from rke2_manager.guardrails import ClusterView, NewNode, check_identity
from rke2_manager.models import Cluster, Job, JobStatus, Node, NodeStatus
from rke2_manager.validation import Hostname, IPAddress, StrictModel


class NodeUpdate(StrictModel):
    """What to change on a PENDING node: its hostname, its IP, or both (at least one)."""

    hostname: Hostname | None = Field(
        None, description="The node's new name (unique in the cluster)", examples=["worker-02"]
    )
    ip: IPAddress | None = Field(
        None, description="The node's new address (unique in the cluster)", examples=["10.0.0.6"]
    )

    @model_validator(mode="after")
    def _something(self) -> NodeUpdate:
        if self.hostname is None and self.ip is None:
            raise ValueError("give hostname, ip or both")
        return self


def _names(job: Job, node: Node) -> bool:
    """Whether ``job`` works on ``node`` (its targets) or was asked to (its parameters)."""
    for target in job.targets or []:
        if target.get("id") == node.id or target.get("hostname") == node.hostname:
            return True
    params: dict[str, Any] = job.params or {}
    return any(
        isinstance(n, dict) and n.get("hostname") == node.hostname for n in params.get("nodes", [])
    )


def _ensure_no_job_on(session: WriteSession, cluster: Cluster, node: Node) -> None:
    jobs = session.scalars(
        select(Job)
        .where(
            Job.cluster_id == cluster.id,
            Job.status.in_([JobStatus.RUNNING, JobStatus.QUEUED]),
        )
        .order_by(Job.id)
    ).all()
    for job in jobs:
        if not _names(job, node):
            continue
        if job.id == cluster.current_job_id:
            raise Conflict(
                f"Node '{node.hostname}' is a target of job {job.id} ({job.operation}), which "
                "holds the cluster's lock. Please wait.",
                job_id=job.id,
                operation=job.operation,
            )
        raise Conflict(
            f"Node '{node.hostname}' is a target of job {job.id} ({job.operation}), queued for "
            "the cluster's lock. Cancel that job or wait.",
            job_id=job.id,
            operation=job.operation,
        )


def _others(view: ClusterView, node: Node) -> ClusterView:
    return ClusterView(tuple(n for n in view.nodes if n.id != node.id), view.registration_address)


def update_node(
    session: WriteSession, cluster_id: int, hostname: str, change: NodeUpdate, actor: str
) -> Node:
    """Change a PENDING node's hostname and/or IP; audited; flushes only.

    Raises NotFound (404: cluster or node), Conflict (409: the node is not PENDING, or a
    running or queued job works on it), GuardrailViolation (400, G4: the new hostname or IP
    belongs to another node of the cluster).
    """
    cluster = lock_cluster_row(session, cluster_id)
    node = next((n for n in cluster.nodes if n.hostname == hostname), None)
    if node is None:
        raise NotFound(f"Node '{hostname}' not found in cluster {cluster_id}")
    if node.status != NodeStatus.PENDING:
        raise Conflict(
            f"Node '{node.hostname}' is {node.status}: only a PENDING node can be edited "
            "(remove it and add it again instead)."
        )
    _ensure_no_job_on(session, cluster, node)
    new_name = change.hostname if change.hostname is not None else node.hostname
    new_ip = change.ip if change.ip is not None else node.ip
    check_identity(_others(snapshot(cluster), node), [NewNode(new_name, new_ip, node.role)])
    before = {"hostname": node.hostname, "ip": node.ip}
    forgot_key = None
    if new_ip != node.ip and node.host_key is not None:
        forgot_key = fingerprint(node.host_key)
        node.host_key = node.host_key_pinned_at = None
    if new_ip != node.ip:
        node.host_key_offered = None
    node.hostname, node.ip = new_name, new_ip
    audit.record(
        session,
        actor,
        "node.update",
        cluster_id,
        before=before,
        after={"hostname": new_name, "ip": new_ip},
        forgot_host_key=forgot_key,
    )
    session.flush()
    return node
