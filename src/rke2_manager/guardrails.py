"""Guardrails G1–G4: pure functions over a snapshot of a cluster.

Nothing here does I/O. The only outside fact, whether the initial master's supervisor port
answers (G1), is passed in as a :class:`ProbeResult`. Every refusal raises
:class:`~rke2_manager.errors.GuardrailViolation` with the exact message of SPEC §3.
For the queue (SPEC §4.3), :func:`project` gives the cluster as the jobs ahead of a queued one
will leave it, and :func:`deferred_warning` words a refusal that those jobs may lift.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
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


# The queue (SPEC §4.3) ----------------------------------------------------------------------------
@dataclass(frozen=True)
class PendingJob:
    """A job that runs before the one being queued: the running job or one queued ahead.

    What it does to the nodes if it succeeds: ``install`` makes every node ACTIVE; ``add``
    creates ``nodes`` ACTIVE (when ``started``, they exist already and become ACTIVE); ``remove``
    removes the nodes named in ``nodes``; ``other`` changes no node.
    """

    job_id: int
    kind: Literal["install", "add", "remove", "other"]
    nodes: tuple[NewNode, ...] = ()
    started: bool = False

    @property
    def verb(self) -> str:
        return {"install": "installs", "add": "adds", "remove": "removes"}.get(self.kind, "changes")


@dataclass(frozen=True)
class Projection:
    """The cluster once every pending job succeeded, and which job changed which node (in order)."""

    view: ClusterView
    changes: tuple[tuple[str, PendingJob], ...] = ()


def project(cluster: ClusterView, pending: Sequence[PendingJob]) -> Projection:
    """The cluster as ``pending`` (in the order they run) leave it if every one succeeds.

    A node counts as changed only if its status, or its presence, differs afterwards. An add of
    a hostname that exists already changes nothing (G4 refuses it when that job starts); a
    removal of the initial master hands the role on as G2 does.
    """
    nodes = list(cluster.nodes)
    changes: list[tuple[str, PendingJob]] = []

    def activate(i: int, job: PendingJob) -> None:
        if nodes[i].status != NodeStatus.ACTIVE:
            nodes[i] = replace(nodes[i], status=NodeStatus.ACTIVE)
            changes.append((nodes[i].hostname, job))

    for job in pending:
        names = {n.hostname for n in job.nodes}
        if job.kind == "install":
            for i in range(len(nodes)):
                activate(i, job)
        elif job.kind == "add":
            present = {n.hostname: i for i, n in enumerate(nodes)}
            for new in job.nodes:
                if new.hostname not in present:
                    nodes.append(NodeView(new.hostname, new.ip, new.role, NodeStatus.ACTIVE))
                    changes.append((new.hostname, job))
                elif job.started:
                    activate(present[new.hostname], job)
        elif job.kind == "remove":
            gone = [n for n in nodes if n.hostname in names]
            nodes = [n for n in nodes if n.hostname not in names]
            changes += [(n.hostname, job) for n in gone]
            if any(n.is_initial_master for n in gone):
                stay = [n for n in nodes if n.role == NodeRole.SERVER]
                heir = next((n for n in stay if n.status == NodeStatus.ACTIVE), None)
                heir = heir or (stay[0] if stay else None)
                nodes = [replace(n, is_initial_master=n is heir) for n in nodes]
    view = ClusterView(tuple(nodes), cluster.registration_address)
    return Projection(view, tuple(changes))


def _listed(items: Sequence[str]) -> str:
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


def deferred_warning(
    refusal: GuardrailViolation, projection: Projection, watched: Iterable[str]
) -> str | None:
    """The warning a queued job carries instead of ``refusal``, naming the jobs ahead that change
    the ``watched`` nodes the refusal rests on; None if none of them changes any.

    ``G1 refuses this now ("<refusal>"), but job 3 ahead of this one installs 'm1': G1 is
    checked again when this job starts.`` (several jobs: ``jobs 3 and 5 ahead of this one
    change 'm1' and 'm3'``).
    """
    watch = set(watched)
    relevant = [(h, j) for h, j in projection.changes if h in watch]
    if not relevant:
        return None
    hosts = list(dict.fromkeys(f"'{h}'" for h, _ in relevant))
    jobs = list(dict.fromkeys(j for _, j in relevant))
    if len(jobs) == 1:
        who = f"job {jobs[0].job_id} ahead of this one {jobs[0].verb} {_listed(hosts)}"
    else:
        ids = _listed([str(j.job_id) for j in jobs])
        who = f"jobs {ids} ahead of this one change {_listed(hosts)}"
    rule = refusal.guardrail
    return (
        f'{rule} refuses this now ("{refusal.detail}"), but {who}: '
        f"{rule} is checked again when this job starts."
    )
