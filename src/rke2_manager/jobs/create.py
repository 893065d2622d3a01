"""Starting operations: the seed's install, scale/add and scale/remove, behind lock and guardrails.

Each ``start_*`` function runs inside one write transaction that holds the cluster row: the busy
check comes first (409, or with ``on_busy="queue"`` a queued job), then the guardrails (400),
then the job rows and the lock are written together. Nothing commits here; the caller does.

A queued job passes the guardrails twice: now, where a G1 or G2 refusal resting on nodes that
the running job or a job queued ahead changes becomes a warning (SPEC §4.3), and in full when
it starts (``dispatch.begin``), where every refusal ends it ``failed`` with the exact message.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass, field, replace
from typing import Literal

from rke2_manager import audit
from rke2_manager.cluster_lock import acquire_cluster_lock, ensure_idle, lock_cluster_row
from rke2_manager.clusters.views import snapshot
from rke2_manager.config import Settings
from rke2_manager.db import ReadOnlySession, WriteSession
from rke2_manager.guardrails import NewNode, ProbeResult, check_identity, split_by_role
from rke2_manager.guardrails import supervisor_target as _supervisor_target
from rke2_manager.jobs.plan_preview import planning
from rke2_manager.jobs.plans import (
    AddRequest,
    InstallRequest,
    NodeRefSpec,
    OpRequest,
    RemoveRequest,
    check_request,
    pending_jobs,
)
from rke2_manager.jobs.queue import queue_position, queued_jobs
from rke2_manager.jobs.upgrade import UpgradeRequest, checked_artifact_dir
from rke2_manager.models import Cluster, Job, JobStatus, LockStatus, NodeStatus, Operation
from rke2_manager.validation import NodeIn, NodeRef

Prober = Callable[[str], ProbeResult]
OnBusy = Literal["reject", "queue"]


@dataclass
class Accepted:
    """What a job-starting call did: the first job, any job waiting on it, the queue position."""

    job: Job
    waiting: list[Job] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    position: int | None = None

    @property
    def sequenced(self) -> bool:
        return bool(self.waiting)

    @property
    def workers_pending(self) -> int:
        return sum(len(j.targets) for j in self.waiting)


def probe_target(cluster: Cluster, settings: Settings) -> str | None:
    """The supervisor address G1 probes for ``cluster``, or None when there is nothing to probe."""
    if settings.probe_policy == "off":
        return None
    view = snapshot(cluster)
    master = view.initial_master
    if master is None or master.status != NodeStatus.ACTIVE:
        return None
    return _supervisor_target(view)


def start_jobs(
    session: WriteSession,
    settings: Settings,
    cluster: Cluster,
    requests: Sequence[OpRequest],
    actor: str,
    on_busy: OnBusy,
    probe: ProbeResult | None,
) -> Accepted:
    """Check ``requests`` (one, or servers then agents for G3) and start or queue their jobs.

    With a dry run's session (:mod:`rke2_manager.jobs.plan_preview`) everything up to the
    decision runs the same, then the jobs are returned unwritten: no job row, no lock, no audit.
    """
    busy = cluster.operation_status != LockStatus.IDLE
    if busy and on_busy == "reject":
        ensure_idle(cluster)
    # Queued: a G1/G2 refusal the jobs ahead may lift becomes a warning (checked again at start).
    ahead = pending_jobs(session, cluster) if busy else []
    warnings: list[str] = []
    for request in requests:
        warnings += [
            w
            for w in check_request(cluster, request, probe, settings.probe_policy, ahead)
            if w not in warnings
        ]
    if planning(session):
        return _planned(session, cluster, requests, warnings, busy)
    jobs: list[Job] = []
    for request in requests:
        job = Job(
            cluster_id=cluster.id,
            operation=request.operation,
            status=JobStatus.QUEUED,
            targets=request.planned_targets(cluster),
            params=request.params(),
            warnings=list(warnings),
            requested_by=actor,
            predecessor_id=jobs[-1].id if jobs else None,
        )
        session.add(job)
        session.flush()
        jobs.append(job)
    first = jobs[0]
    accepted = Accepted(job=first, waiting=jobs[1:], warnings=warnings)
    if busy:
        accepted.position = queue_position(session, first)
    else:
        requests[0].apply(session, cluster, first)
        acquire_cluster_lock(session, cluster, first, settings.lock_ttl)
    audit.record(
        session,
        actor,
        f"job.{first.operation}",
        cluster.id,
        first.id,
        queued=busy,
        jobs=[j.id for j in jobs],
        nodes=[t["hostname"] for j in jobs for t in j.targets],
    )
    return accepted


def _planned(
    session: WriteSession,
    cluster: Cluster,
    requests: Sequence[OpRequest],
    warnings: list[str],
    busy: bool,
) -> Accepted:
    """A dry run's answer: the jobs ``start_jobs`` would create, as transient rows (no ids, never
    added to the session), with the queue position the first one would get. Their targets
    are the planned ones (nodes an add creates have no id yet)."""
    jobs = [
        Job(
            cluster_id=cluster.id,
            operation=request.operation,
            status=JobStatus.QUEUED if busy or i else JobStatus.RUNNING,
            targets=request.planned_targets(cluster),
            params=request.params(),
            warnings=list(warnings),
        )
        for i, request in enumerate(requests)
    ]
    if not busy:
        # The real call now applies the first request (nodes, the job's targets and
        # parameters): decided the same way here, so a refusal raised there is the plan's too;
        # the changes it would write are refused by the plan session and dropped.
        with session.no_autoflush, suppress(ReadOnlySession):
            requests[0].apply(session, cluster, jobs[0])
    position = len(queued_jobs(session, cluster.id)) + 1 if busy else None
    return Accepted(job=jobs[0], waiting=jobs[1:], warnings=warnings, position=position)


def locked_cluster(session: WriteSession, cluster_id: int, on_busy: OnBusy) -> Cluster:
    """The cluster's row, locked for this transaction (with its nodes); NotFound, or
    ClusterBusy (409) when another job holds its lock and the caller would not queue — before
    any other check, so a busy cluster answers 409 whatever else is wrong."""
    cluster = lock_cluster_row(session, cluster_id)
    if cluster.operation_status != LockStatus.IDLE and on_busy == "reject":
        ensure_idle(cluster)
    return cluster


def start_install(
    session: WriteSession,
    settings: Settings,
    cluster_id: int,
    actor: str,
    on_busy: OnBusy = "reject",
    skip_preflight: Sequence[str] = (),
) -> Accepted:
    """Install (or re-run the install of) every node of the cluster; its preflight checks
    run first, and a failed one not named in ``skip_preflight`` stops it before any change.

    Raises NotFound, ClusterBusy (409, unless queued), GuardrailViolation without initial master.
    """
    cluster = lock_cluster_row(session, cluster_id)
    request = InstallRequest(tuple(skip_preflight))
    return start_jobs(session, settings, cluster, [request], actor, on_busy, None)


def start_scale_add(
    session: WriteSession,
    settings: Settings,
    cluster_id: int,
    nodes: Sequence[NodeIn],
    actor: str,
    probe: ProbeResult | None,
    prober: Prober,
    on_busy: OnBusy = "reject",
    skip_preflight: Sequence[str] = (),
) -> Accepted:
    """Add nodes: G1 (bootstrap), G4 (identity), G3 (servers' job first, agents' job waits).

    The new nodes' preflight checks run first (``skip_preflight`` as for install).
    ``probe`` is the supervisor probe done before the transaction (so no network wait happens
    while the row is locked); it is redone with ``prober`` only if the target changed meanwhile.
    Raises NotFound, ClusterBusy (409), GuardrailViolation (400).
    """
    cluster = locked_cluster(session, cluster_id, on_busy)
    target = probe_target(cluster, settings)
    if target is not None and (probe is None or probe.address != target):
        probe = prober(target)
    new = [NewNode(n.hostname, n.ip, n.role) for n in nodes]
    check_identity(snapshot(cluster), new)
    servers, agents = split_by_role(new)
    requests = [
        AddRequest(operation, tuple(group), tuple(skip_preflight))
        for operation, group in (
            (Operation.SCALE_ADD_MASTERS, servers),
            (Operation.SCALE_ADD_WORKERS, agents),
        )
        if group
    ]
    return start_jobs(session, settings, cluster, requests, actor, on_busy, probe)


def start_scale_remove(
    session: WriteSession,
    settings: Settings,
    cluster_id: int,
    refs: Sequence[NodeRef],
    confirm_master_removal: bool,
    actor: str,
    on_busy: OnBusy = "reject",
) -> Accepted:
    """Remove nodes; servers pass G2 (last server, quorum, even-count warning, confirmation).

    Raises NotFound, ClusterBusy (409), GuardrailViolation (400), DomainError (400) when the
    request mixes servers and agents or names a node with the wrong IP or role.
    """
    cluster = locked_cluster(session, cluster_id, on_busy)
    specs = tuple(NodeRefSpec(r.hostname, r.ip, r.role) for r in refs)
    request = RemoveRequest.for_cluster(cluster, specs, confirm_master_removal)
    return start_jobs(session, settings, cluster, [request], actor, on_busy, None)


def start_upgrade(
    session: WriteSession,
    settings: Settings,
    cluster_id: int,
    request: UpgradeRequest,
    actor: str,
    on_busy: OnBusy = "reject",
) -> Accepted:
    """Upgrade every node not in ``request.skip`` (G5); the artifact directory must lie under
    the artifact root and exist.

    Raises NotFound, ClusterBusy (409), InvalidRequest (422, artifact_dir), GuardrailViolation.
    """
    request = replace(
        request, artifact_dir=checked_artifact_dir(request.artifact_dir, settings.artifact_root_dir)
    )
    cluster = locked_cluster(session, cluster_id, on_busy)
    return start_jobs(session, settings, cluster, [request], actor, on_busy, None)
