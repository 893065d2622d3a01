"""Starting operations: the seed's install, scale/add and scale/remove, behind lock and guardrails.

Each ``start_*`` function runs inside one write transaction that holds the cluster row: the busy
check (409) comes first, then the guardrails (400), then the job rows and the lock are written
together. Nothing commits here; the request's session does.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from sqlalchemy.orm import Session

from rke2_manager import audit
from rke2_manager.cluster_lock import acquire_cluster_lock, ensure_idle, lock_cluster_row
from rke2_manager.clusters.service import snapshot
from rke2_manager.config import Settings
from rke2_manager.errors import DomainError, GuardrailViolation, NotFound
from rke2_manager.guardrails import (
    NewNode,
    ProbeResult,
    check_bootstrap,
    check_identity,
    check_master_removal,
    split_by_role,
    supervisor_target,
)
from rke2_manager.models import Cluster, Job, JobStatus, Node, NodeRole, Operation
from rke2_manager.validation import NodeIn, NodeRef

Prober = Callable[[str], ProbeResult]


@dataclass
class Accepted:
    """What a job-starting call did: the job that holds the lock, and any job waiting on it."""

    job: Job
    waiting: list[Job] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def sequenced(self) -> bool:
        return bool(self.waiting)

    @property
    def workers_pending(self) -> int:
        return sum(len(j.targets) for j in self.waiting)


def _targets(nodes: Sequence[Node]) -> list[dict[str, object]]:
    return [{"id": n.id, "hostname": n.hostname, "ip": n.ip, "role": n.role} for n in nodes]


def _new_job(
    cluster: Cluster,
    operation: Operation,
    nodes: Sequence[Node],
    actor: str,
    warnings: list[str],
    predecessor: Job | None = None,
) -> Job:
    return Job(
        cluster_id=cluster.id,
        operation=operation,
        status=JobStatus.QUEUED,
        targets=_targets(nodes),
        warnings=list(warnings),
        requested_by=actor,
        predecessor_id=predecessor.id if predecessor else None,
    )


def probe_target(cluster: Cluster, settings: Settings) -> str | None:
    """The supervisor address G1 probes for ``cluster``, or None when there is nothing to probe."""
    if settings.probe_policy == "off":
        return None
    return supervisor_target(snapshot(cluster))


def start_install(session: Session, settings: Settings, cluster_id: int, actor: str) -> Accepted:
    """Install (or re-run the install of) every node of an idle cluster.

    Raises NotFound, ClusterBusy (409), GuardrailViolation if there is no initial master.
    """
    cluster = lock_cluster_row(session, cluster_id)
    ensure_idle(cluster)
    if snapshot(cluster).initial_master is None:
        raise GuardrailViolation("G1", "Cluster has no initial master. Cannot install.")
    job = _new_job(cluster, Operation.INSTALL, cluster.nodes, actor, [])
    session.add(job)
    acquire_cluster_lock(session, cluster, job, settings.lock_ttl)
    audit.record(session, actor, "job.install", cluster.id, job.id)
    return Accepted(job=job)


def start_scale_add(
    session: Session,
    settings: Settings,
    cluster_id: int,
    nodes: Sequence[NodeIn],
    actor: str,
    probe: ProbeResult | None,
    prober: Prober,
) -> Accepted:
    """Add nodes: G1 (bootstrap), G4 (identity), then G3 (servers' job first).

    ``probe`` is the supervisor probe done before the transaction (so no network wait happens
    while the row is locked); it is redone with ``prober`` only if the target changed meanwhile.
    Raises NotFound, ClusterBusy (409), GuardrailViolation (400).
    """
    cluster = lock_cluster_row(session, cluster_id)
    ensure_idle(cluster)
    view = snapshot(cluster)
    target = probe_target(cluster, settings)
    if (
        target is not None
        and view.initial_master is not None
        and view.initial_master.status == "ACTIVE"
        and (probe is None or probe.address != target)
    ):
        probe = prober(target)
    warnings = check_bootstrap(view, probe, settings.probe_policy)
    new = [NewNode(n.hostname, n.ip, n.role) for n in nodes]
    check_identity(view, new)
    servers, agents = split_by_role(new)
    created = {n.hostname: Node(hostname=n.hostname, ip=n.ip, role=n.role) for n in new}
    cluster.nodes.extend(created.values())
    session.flush()

    def nodes_of(group: list[NewNode]) -> list[Node]:
        return [created[n.hostname] for n in group]

    if servers:
        first = _new_job(cluster, Operation.SCALE_ADD_MASTERS, nodes_of(servers), actor, warnings)
    else:
        first = _new_job(cluster, Operation.SCALE_ADD_WORKERS, nodes_of(agents), actor, warnings)
    session.add(first)
    acquire_cluster_lock(session, cluster, first, settings.lock_ttl)
    accepted = Accepted(job=first, warnings=warnings)
    if servers and agents:
        # G3: the agents wait for the servers' job; the worker hands them the lock on success.
        pending = _new_job(
            cluster, Operation.SCALE_ADD_WORKERS, nodes_of(agents), actor, warnings, first
        )
        session.add(pending)
        session.flush()
        accepted.waiting.append(pending)
    audit.record(
        session,
        actor,
        "job.scale_add",
        cluster.id,
        first.id,
        nodes=[n.hostname for n in new],
        sequenced=accepted.sequenced,
    )
    return accepted


def _resolve(cluster: Cluster, refs: Sequence[NodeRef]) -> list[Node]:
    by_name = {n.hostname: n for n in cluster.nodes}
    seen: set[str] = set()
    found: list[Node] = []
    for ref in refs:
        if ref.hostname in seen:
            raise GuardrailViolation(
                "G4", f"Node with hostname '{ref.hostname}' appears more than once in the request"
            )
        seen.add(ref.hostname)
        node = by_name.get(ref.hostname)
        if node is None:
            raise NotFound(f"Node '{ref.hostname}' not found in cluster '{cluster.name}'")
        if ref.ip is not None and ref.ip != node.ip:
            raise DomainError(f"Node '{node.hostname}' has IP '{node.ip}', not '{ref.ip}'")
        if ref.role is not None and ref.role != node.role:
            raise DomainError(f"Node '{node.hostname}' is a {node.role}, not a {ref.role}")
        found.append(node)
    return found


def start_scale_remove(
    session: Session,
    settings: Settings,
    cluster_id: int,
    refs: Sequence[NodeRef],
    confirm_master_removal: bool,
    actor: str,
) -> Accepted:
    """Remove nodes; servers pass G2 (last server, quorum, even-count warning, confirmation).

    Raises NotFound, ClusterBusy (409), GuardrailViolation (400), DomainError (400) when the
    request mixes servers and agents or names a node with the wrong IP or role.
    """
    cluster = lock_cluster_row(session, cluster_id)
    ensure_idle(cluster)
    nodes = _resolve(cluster, refs)
    roles = {n.role for n in nodes}
    if len(roles) > 1:
        raise DomainError("Remove servers and agents in separate requests.")
    view = snapshot(cluster)
    removing = [v for v in view.nodes if v.hostname in {n.hostname for n in nodes}]
    plan = check_master_removal(view, removing, confirm_master_removal)
    if plan.new_initial_master is not None:
        for node in cluster.nodes:
            node.is_initial_master = node.hostname == plan.new_initial_master.hostname
    operation = (
        Operation.SCALE_REMOVE_MASTERS
        if NodeRole.SERVER in roles
        else Operation.SCALE_REMOVE_WORKERS
    )
    job = _new_job(cluster, operation, nodes, actor, plan.warnings)
    session.add(job)
    acquire_cluster_lock(session, cluster, job, settings.lock_ttl)
    audit.record(
        session,
        actor,
        "job.scale_remove",
        cluster.id,
        job.id,
        nodes=[n.hostname for n in nodes],
        confirmed=confirm_master_removal,
        new_initial_master=plan.new_initial_master.hostname if plan.new_initial_master else None,
    )
    return Accepted(job=job, warnings=plan.warnings)
