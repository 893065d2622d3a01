"""Guardrails G1–G4: pure functions over a snapshot of a cluster.

Nothing here does I/O. The only outside fact, whether the initial master's supervisor port
answers (G1), is passed in as a :class:`ProbeResult`. Every refusal raises
:class:`~rke2_manager.errors.GuardrailViolation` with the exact message of SPEC §3.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from rke2_manager.errors import GuardrailViolation
from rke2_manager.models import NodeRole, NodeStatus

ProbePolicy = Literal["off", "warn", "enforce"]


@dataclass(frozen=True)
class NodeView:
    hostname: str
    ip: str
    role: str
    status: str = NodeStatus.PENDING
    is_initial_master: bool = False
    id: int | None = None


@dataclass(frozen=True)
class ClusterView:
    nodes: tuple[NodeView, ...]
    registration_address: str | None = None

    @property
    def servers(self) -> list[NodeView]:
        return [n for n in self.nodes if n.role == NodeRole.SERVER]

    @property
    def initial_master(self) -> NodeView | None:
        return next((n for n in self.nodes if n.is_initial_master), None)


@dataclass(frozen=True)
class ProbeResult:
    address: str
    ok: bool
    error: str | None = None
    port: int = 9345


@dataclass(frozen=True)
class NewNode:
    hostname: str
    ip: str
    role: str


@dataclass
class RemovalPlan:
    warnings: list[str] = field(default_factory=list)
    new_initial_master: NodeView | None = None


def supervisor_target(cluster: ClusterView) -> str | None:
    """The host new nodes register through: the fixed address, else the initial master's IP."""
    if cluster.registration_address:
        return cluster.registration_address
    master = cluster.initial_master
    return master.ip if master else None


# G1 ---------------------------------------------------------------------------------------------
def check_bootstrap(
    cluster: ClusterView, probe: ProbeResult | None, policy: ProbePolicy
) -> list[str]:
    """G1: nodes may be added only once the initial master is ACTIVE and its supervisor answers.

    Returns warnings (a failed probe under ``warn``); raises under ``enforce``.
    """
    master = cluster.initial_master
    if master is None:
        raise GuardrailViolation("G1", "Cluster has no initial master. Cannot add nodes.")
    if master.status != NodeStatus.ACTIVE:
        raise GuardrailViolation(
            "G1",
            f"Initial master '{master.hostname}' is not active (status: {master.status}). "
            "Cannot add nodes.",
        )
    if policy == "off" or probe is None or probe.ok:
        return []
    problem = (
        f"Initial master '{master.hostname}' supervisor at {probe.address}:{probe.port} "
        f"did not answer ({probe.error or 'no reason given'})"
    )
    if policy == "enforce":
        raise GuardrailViolation("G1", f"{problem}. Cannot add nodes.")
    return [f"{problem}; continuing because the probe policy is 'warn'."]


# G2 ---------------------------------------------------------------------------------------------
def check_master_removal(
    cluster: ClusterView, removing: Sequence[NodeView], confirmed: bool
) -> RemovalPlan:
    """G2: refuse removals that leave no server or lose etcd quorum; demand confirmation.

    Checked in this order: last server, quorum (``remaining_active >= n // 2 + 1`` where ``n``
    counts etcd members, i.e. servers that are not PENDING), even-count warning, confirmation.
    Removing the initial master hands the role to the first ACTIVE server that stays.
    """
    plan = RemovalPlan()
    gone = {n.hostname for n in removing if n.role == NodeRole.SERVER}
    if not gone:
        return plan
    servers = cluster.servers
    remaining = [s for s in servers if s.hostname not in gone]
    if not remaining:
        raise GuardrailViolation(
            "G2", "Cannot remove all control-plane nodes. At least 1 required."
        )
    members = [s for s in servers if s.status != NodeStatus.PENDING]
    n = len(members)
    remaining_active = sum(1 for s in remaining if s.status == NodeStatus.ACTIVE)
    if n > 0 and remaining_active < n // 2 + 1:
        raise GuardrailViolation("G2", f"Removing {len(gone)} server(s) would break etcd quorum.")
    remaining_members = sum(1 for s in members if s.hostname not in gone)
    if remaining_members > 0 and remaining_members % 2 == 0:
        plan.warnings.append(
            f"After this removal the cluster has {remaining_members} etcd members; an even "
            "number tolerates no more failures than one fewer. Prefer an odd number of servers."
        )
    if not confirmed:
        raise GuardrailViolation(
            "G2", "Removing control-plane nodes requires explicit confirmation."
        )
    master = cluster.initial_master
    if master is not None and master.hostname in gone:
        active = [s for s in remaining if s.status == NodeStatus.ACTIVE]
        plan.new_initial_master = (active or remaining)[0]
    return plan


# G3 ---------------------------------------------------------------------------------------------
def split_by_role(nodes: Iterable[NewNode]) -> tuple[list[NewNode], list[NewNode]]:
    """G3: servers and agents of one request; the servers' job runs first when both are given."""
    nodes = list(nodes)
    return (
        [n for n in nodes if n.role == NodeRole.SERVER],
        [n for n in nodes if n.role == NodeRole.AGENT],
    )


# G4 ---------------------------------------------------------------------------------------------
def check_identity(cluster: ClusterView, new_nodes: Sequence[NewNode]) -> None:
    """G4: hostname and IP unique within the cluster and within the request."""
    seen_host: set[str] = set()
    seen_ip: set[str] = set()
    for node in new_nodes:
        if node.hostname in seen_host:
            raise GuardrailViolation(
                "G4", f"Node with hostname '{node.hostname}' appears more than once in the request"
            )
        if node.ip in seen_ip:
            raise GuardrailViolation(
                "G4", f"Node with IP '{node.ip}' appears more than once in the request"
            )
        seen_host.add(node.hostname)
        seen_ip.add(node.ip)
    hosts = {n.hostname for n in cluster.nodes}
    ips = {n.ip for n in cluster.nodes}
    for node in new_nodes:
        if node.hostname in hosts:
            raise GuardrailViolation(
                "G4", f"Node with hostname '{node.hostname}' already exists in cluster"
            )
        if node.ip in ips:
            raise GuardrailViolation("G4", f"Node with IP '{node.ip}' already exists in cluster")
