"""What each operation asks for, checked against the guardrails and applied to the cluster.

A request is checked when it is made and checked again when its job starts (a queued job, or
a G3 agents job when the servers' job hands it the lock), because the cluster may have changed
in between. ``check`` never writes; ``apply`` writes the nodes and the job's targets.

When a job is queued, a G1 or G2 refusal that rests on nodes the jobs ahead of it change (the
initial master being installed, a server being added or removed) becomes a warning instead
(SPEC §4.3); the check when the job starts is always the full, strict one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeAlias

from sqlalchemy import select
from sqlalchemy.orm import Session

from rke2_manager.clusters.views import snapshot
from rke2_manager.db import WriteSession
from rke2_manager.errors import DomainError, GuardrailViolation, NotFound
from rke2_manager.guardrails import (
    ClusterView,
    NewNode,
    PendingJob,
    ProbePolicy,
    ProbeResult,
    check_bootstrap,
    check_identity,
    check_master_removal,
    deferred_warning,
    project,
)
from rke2_manager.jobs.upgrade import UpgradeRequest
from rke2_manager.models import Cluster, Job, JobStatus, Node, NodeRole, Operation

if TYPE_CHECKING:  # they build on this module
    from rke2_manager.jobs.preflight import PreflightRequest
    from rke2_manager.jobs.restore import RestoreRequest
    from rke2_manager.jobs.snapshots import SnapshotDeleteRequest, SnapshotSaveRequest


def targets_of(nodes: list[Node]) -> list[dict[str, Any]]:
    return [{"id": n.id, "hostname": n.hostname, "ip": n.ip, "role": n.role} for n in nodes]


@dataclass(frozen=True)
class InstallRequest:
    """Install every node; ``skip_preflight``: failed preflight checks that do not stop it."""

    skip_preflight: tuple[str, ...] = ()
    operation = Operation.INSTALL

    def params(self) -> dict[str, Any]:
        return {"skip_preflight": list(self.skip_preflight)} if self.skip_preflight else {}

    def planned_targets(self, cluster: Cluster) -> list[dict[str, Any]]:
        return targets_of(cluster.nodes)

    def check(self, view: ClusterView, probe: ProbeResult | None, policy: ProbePolicy) -> list[str]:
        if view.initial_master is None:
            raise GuardrailViolation("G1", "Cluster has no initial master. Cannot install.")
        return []

    def apply(self, session: WriteSession, cluster: Cluster, job: Job) -> None:
        job.targets = targets_of(cluster.nodes)


@dataclass(frozen=True)
class AddRequest:
    """Nodes of one role to add (G3 splits a mixed request into two of these)."""

    operation: Operation
    nodes: tuple[NewNode, ...]
    skip_preflight: tuple[str, ...] = ()

    def params(self) -> dict[str, Any]:
        nodes = [{"hostname": n.hostname, "ip": n.ip, "role": n.role} for n in self.nodes]
        skip = {"skip_preflight": list(self.skip_preflight)} if self.skip_preflight else {}
        return {"nodes": nodes, **skip}

    def planned_targets(self, cluster: Cluster) -> list[dict[str, Any]]:
        return [
            {"id": None, "hostname": n.hostname, "ip": n.ip, "role": n.role} for n in self.nodes
        ]

    def check(self, view: ClusterView, probe: ProbeResult | None, policy: ProbePolicy) -> list[str]:
        warnings = check_bootstrap(view, probe, policy)
        check_identity(view, self.nodes)
        return warnings

    def apply(self, session: WriteSession, cluster: Cluster, job: Job) -> None:
        created = [Node(hostname=n.hostname, ip=n.ip, role=n.role) for n in self.nodes]
        cluster.nodes.extend(created)
        session.flush()
        job.targets = targets_of(created)


@dataclass(frozen=True)
class NodeRefSpec:
    hostname: str
    ip: str | None = None
    role: str | None = None


@dataclass(frozen=True)
class RemoveRequest:
    """Nodes to remove, by hostname; build it with :meth:`for_cluster` to get the operation."""

    operation: Operation
    refs: tuple[NodeRefSpec, ...]
    confirm_master_removal: bool

    @classmethod
    def for_cluster(
        cls, cluster: Cluster, refs: tuple[NodeRefSpec, ...], confirm: bool
    ) -> RemoveRequest:
        """Resolve ``refs`` in ``cluster`` (raising as :meth:`resolve`) to pick the operation."""
        probe = cls(Operation.SCALE_REMOVE_WORKERS, refs, confirm)
        role = probe.resolve(cluster)[0].role
        operation = (
            Operation.SCALE_REMOVE_MASTERS
            if role == NodeRole.SERVER
            else Operation.SCALE_REMOVE_WORKERS
        )
        return cls(operation, refs, confirm)

    def params(self) -> dict[str, Any]:
        return {
            "nodes": [{"hostname": r.hostname, "ip": r.ip, "role": r.role} for r in self.refs],
            "confirm_master_removal": self.confirm_master_removal,
        }

    def resolve(self, cluster: Cluster) -> list[Node]:
        """The nodes named; NotFound, or 400 on a wrong IP/role, a repeat, or mixed roles."""
        by_name = {n.hostname: n for n in cluster.nodes}
        seen: set[str] = set()
        found: list[Node] = []
        for ref in self.refs:
            if ref.hostname in seen:
                raise GuardrailViolation(
                    "G4",
                    f"Node with hostname '{ref.hostname}' appears more than once in the request",
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
        if len({n.role for n in found}) > 1:
            raise DomainError("Remove servers and agents in separate requests.")
        return found

    def planned_targets(self, cluster: Cluster) -> list[dict[str, Any]]:
        return targets_of(self.resolve(cluster))

    def check_cluster(self, cluster: Cluster) -> tuple[list[Node], list[str], str | None]:
        """Resolve and run G2; return the nodes, warnings and the new initial master's name."""
        nodes = self.resolve(cluster)
        view = snapshot(cluster)
        names = {n.hostname for n in nodes}
        plan = check_master_removal(
            view, [v for v in view.nodes if v.hostname in names], self.confirm_master_removal
        )
        successor = plan.new_initial_master.hostname if plan.new_initial_master else None
        return nodes, plan.warnings, successor

    def apply(self, session: WriteSession, cluster: Cluster, job: Job) -> None:
        nodes, _, successor = self.check_cluster(cluster)
        if successor is not None:
            for node in cluster.nodes:
                node.is_initial_master = node.hostname == successor
        job.targets = targets_of(nodes)


OpRequest: TypeAlias = (
    "InstallRequest | AddRequest | RemoveRequest | UpgradeRequest"
    " | SnapshotSaveRequest | SnapshotDeleteRequest | RestoreRequest | PreflightRequest"
)


def check_request(
    cluster: Cluster,
    request: OpRequest,
    probe: ProbeResult | None,
    policy: ProbePolicy,
    ahead: Sequence[PendingJob] = (),
) -> list[str]:
    """Run the request's guardrails against the cluster as it is now; returns warnings.

    ``ahead`` is given only when the job is being queued: the jobs that run before it
    (:func:`pending_jobs`). Then a G1 or G2 refusal is checked again against the cluster as
    those jobs leave it if they succeed; if it passes there, the refusal becomes the first
    warning (:func:`~rke2_manager.guardrails.deferred_warning`). Whatever still refuses there
    raises at once, as do G4 and bad node references. Raises GuardrailViolation, NotFound,
    DomainError.
    """
    try:
        if isinstance(request, RemoveRequest):
            return request.check_cluster(cluster)[1]
        if isinstance(request, UpgradeRequest):
            return request.check_cluster(cluster)
        return request.check(snapshot(cluster), probe, policy)
    except GuardrailViolation as refusal:
        if not ahead or refusal.guardrail not in ("G1", "G2"):
            raise
        if not isinstance(request, AddRequest | RemoveRequest):
            raise  # only an add or a removal waits on what jobs ahead change
        return _check_after_jobs_ahead(cluster, request, refusal, ahead, policy)


def _check_after_jobs_ahead(
    cluster: Cluster,
    request: AddRequest | RemoveRequest,
    refusal: GuardrailViolation,
    ahead: Sequence[PendingJob],
    policy: ProbePolicy,
) -> list[str]:
    """Queue time: ``refusal`` holds now; check the cluster the jobs ahead leave behind."""
    now = snapshot(cluster)
    after = project(now, ahead)
    if isinstance(request, AddRequest):
        check_identity(now, request.nodes)
        warnings = check_bootstrap(after.view, None, policy)
        watched = [m.hostname for m in (now.initial_master,) if m is not None]
    else:
        names = {n.hostname for n in request.resolve(cluster)}
        removing = [v for v in after.view.nodes if v.hostname in names]
        if len(removing) != len(names):
            raise refusal  # a job ahead removes one of them first
        plan = check_master_removal(after.view, removing, request.confirm_master_removal)
        warnings = plan.warnings
        watched = [s.hostname for s in (*now.servers, *after.view.servers)]
    note = deferred_warning(refusal, after, watched)
    if note is None:
        raise refusal
    return [note, *warnings]


def pending_jobs(session: Session, cluster: Cluster) -> list[PendingJob]:
    """The jobs that run before a job queued now, in the order they run: the lock holder first,
    then every queued job (G3 agents jobs right after their servers job, as ids are in order).
    """
    jobs = session.scalars(
        select(Job).where(
            Job.cluster_id == cluster.id, Job.status.in_([JobStatus.QUEUED, JobStatus.RUNNING])
        )
    ).all()
    ordered = sorted(jobs, key=lambda j: (j.id != cluster.current_job_id, j.id))
    return [_pending(job, job.id == cluster.current_job_id) for job in ordered]


def _pending(job: Job, started: bool) -> PendingJob:
    nodes = tuple(NewNode(t["hostname"], t.get("ip", ""), t.get("role", "")) for t in job.targets)
    if job.operation == Operation.INSTALL:
        return PendingJob(job.id, "install")
    if job.operation in (Operation.SCALE_ADD_MASTERS, Operation.SCALE_ADD_WORKERS):
        return PendingJob(job.id, "add", nodes, started)
    if job.operation in (Operation.SCALE_REMOVE_MASTERS, Operation.SCALE_REMOVE_WORKERS):
        return PendingJob(job.id, "remove", nodes, started)
    return PendingJob(job.id, "other")


def request_of(job: Job) -> OpRequest:
    """Rebuild the request a job was created for (from its stored parameters)."""
    params = job.params or {}
    operation = Operation(job.operation)
    skip = tuple(str(s) for s in params.get("skip_preflight") or ())
    if operation == Operation.INSTALL:
        return InstallRequest(skip)
    day2 = _day2_request(operation, params)
    if day2 is not None:
        return day2
    if operation == Operation.UPGRADE:
        return UpgradeRequest.from_params(params)
    if operation.removes:
        return RemoveRequest(
            operation,
            tuple(NodeRefSpec(**n) for n in params.get("nodes", [])),
            bool(params.get("confirm_master_removal", False)),
        )
    return AddRequest(operation, tuple(NewNode(**n) for n in params.get("nodes", [])), skip)


def _day2_request(operation: Operation, params: dict[str, Any]) -> OpRequest | None:
    """Snapshots, restore and forget (their modules build on this one: imported here)."""
    from rke2_manager.jobs.forget import ForgetRequest
    from rke2_manager.jobs.preflight import PreflightRequest
    from rke2_manager.jobs.restore import RestoreRequest
    from rke2_manager.jobs.snapshots import SnapshotDeleteRequest, SnapshotSaveRequest

    if operation == Operation.PREFLIGHT:
        return PreflightRequest.from_params(params)
    if operation == Operation.SNAPSHOT_SAVE:
        return SnapshotSaveRequest(str(params.get("name", "")))
    if operation == Operation.SNAPSHOT_DELETE:
        return SnapshotDeleteRequest(str(params.get("name", "")))
    if operation == Operation.RESTORE:
        return RestoreRequest(
            str(params.get("snapshot", "")), bool(params.get("confirm_restore", False))
        )
    if operation == Operation.FORGET_NODE:
        nodes = params.get("nodes") or [{}]
        status = params.get("status")
        return ForgetRequest.of(
            str(nodes[0].get("hostname", "")),
            bool(params.get("confirm_master_removal", False)),
            str(status) if status is not None else None,
        )
    return None
