"""Node statuses follow the run: per-host facts as they happen, final statuses when it ends."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from rke2_manager.db import WriteSession, unavailable
from rke2_manager.execution.events import HostEvent
from rke2_manager.jobs.runner.fencing import Fence
from rke2_manager.models import Node, NodeStatus, Operation, utcnow
from rke2_manager.versions import try_version

log = logging.getLogger(__name__)


@dataclass
class Progress:
    """What is known of each target host while the run goes on."""

    operation: Operation
    before: dict[str, str]
    kubeconfig: str | None = None
    touched: set[str] = field(default_factory=set)
    done: set[str] = field(default_factory=set)
    failed: dict[str, str] = field(default_factory=dict)
    host_key_changed: dict[str, str] = field(default_factory=dict)
    """Targets whose SSH host key no longer matched the pinned one: hostname -> reason."""
    host_keys: dict[str, str] = field(default_factory=dict)
    """Keys learned on first contact, to pin when the job ends: hostname -> key."""
    versions: dict[str, str] = field(default_factory=dict)
    """The RKE2 version each target reported running (upgrade), recorded when the job ends."""
    upgrading: set[str] = field(default_factory=set)
    """Targets an upgrade reached (marked UPGRADING): a failure after that fails the node."""
    current: dict[str, str] = field(default_factory=dict)
    """The task each host of the run (target or not) has started and not yet ended:
    hostname -> task name. What is left here when the run ends was cut off mid-task."""

    hosts: dict[str, dict[str, str | None]] = field(default_factory=dict)
    """What the job shows of each host while it runs (``Job.progress``): the task it is in
    (None between tasks), the last task it finished, and since when — a host stuck in a task
    stands out by its old ``since``."""
    changed: bool = False
    """:attr:`hosts` changed since it was last stored."""
    reports: list[HostEvent] = field(default_factory=list)
    """What the run reported for the manager to record when the job ends (snapshots saved,
    snapshot lists), from any host, in order; kept also after a stop (it happened)."""
    others_failed: dict[str, str] = field(default_factory=dict)
    """Hosts that are not targets and failed in a play of their own (e.g. the server that
    saves the snapshot before a removal): hostname -> reason, for the job's reason."""

    def follow(self, fact: HostEvent) -> None:
        """Keep :attr:`current`, :attr:`hosts` and :attr:`reports` up to date with ``fact``
        (any host's)."""
        if fact.kind == "report":
            self.reports.append(fact)
        elif fact.kind in ("failed", "unreachable") and fact.host not in self.before:
            self.others_failed.setdefault(fact.host, fact.reason or fact.kind)
        entry = self.hosts.setdefault(fact.host, {"task": None, "last": None, "since": None})
        if fact.kind == "started":
            self.current[fact.host] = fact.task or ""
            entry["task"] = fact.task or ""
        else:
            self.current.pop(fact.host, None)
            if entry["task"] is not None:
                entry["last"] = entry["task"]
            entry["task"] = None
        entry["since"] = utcnow().isoformat()
        self.changed = True


def _nodes(session: Session, cluster_id: int, names: set[str]) -> list[Node]:
    return list(
        session.scalars(select(Node).where(Node.cluster_id == cluster_id, Node.hostname.in_(names)))
    )


def accept_hint(cluster_id: int, hostname: str) -> str:
    return (
        "; if the node was reinstalled, accept its new key with "
        f"POST /api/clusters/{cluster_id}/nodes/{hostname}/accept-host-key and run again"
    )


#: The first task of every play (tasks/fence.yml, also on a delegate): bookkeeping only.
FENCE_TASK = "Raise the fence"


def _bookkeeping(progress: Progress, fact: HostEvent) -> bool:
    """Whether ``fact`` is the start or the result of raising the fence, which changes nothing
    on a node: a target whose run got no further was not attempted (e.g. a restore that
    ended because another server was out of reach), not left half-changed."""
    if fact.kind == "started":
        return fact.task == FENCE_TASK
    return fact.kind == "touched" and progress.hosts.get(fact.host, {}).get("last") == FENCE_TASK


def on_host(fence: Fence, progress: Progress, fact: HostEvent) -> tuple[str, str | None] | None:
    """Follow a host fact: failures and milestones are written at once (fenced).

    Returns the target's new status and reason if the fact changed them (``REMOVED``: its
    node was deleted), else None.
    """
    progress.follow(fact)
    if fact.host not in progress.before:
        return None
    if not _bookkeeping(progress, fact):
        progress.touched.add(fact.host)
    offered = None
    if fact.kind == "host_key_changed" and fact.host not in progress.failed:
        reason = (fact.reason or "host key changed") + accept_hint(
            fence.claim.cluster_id, fact.host
        )
        progress.failed[fact.host] = progress.host_key_changed[fact.host] = reason
        status, offered = NodeStatus.FAILED, fact.fingerprint or "unknown"
    elif fact.kind in ("failed", "unreachable") and fact.host not in progress.failed:
        progress.failed[fact.host] = reason = fact.reason or fact.kind
        status = NodeStatus.FAILED
    elif fact.kind == "version":
        if try_version(fact.reason) is not None:
            progress.versions[fact.host] = str(fact.reason)
        return None
    elif fact.kind == "upgrading" and fact.host not in progress.failed:
        progress.upgrading.add(fact.host)
        status, reason = NodeStatus.UPGRADING, None
    elif fact.kind in ("ready", "removed") and fact.host not in progress.done:
        progress.done.add(fact.host)
        status, reason = NodeStatus.ACTIVE, None
    else:
        return None
    try:
        with fence.session() as session:
            for node in _nodes(session, fence.claim.cluster_id, {fact.host}):
                if fact.kind == "removed":
                    session.delete(node)
                    continue
                node.status, node.status_reason = status, reason
                if offered is not None:
                    node.host_key_offered = offered[:128]
    except Exception as exc:
        if not unavailable(exc):
            raise
        # the run goes on; the job's end writes every target's status from ``progress``
        log.warning(
            "job %s: node %s is %s, not stored yet (%s)",
            fence.claim.job_id,
            fact.host,
            status,
            type(exc).__name__,
        )
    return ("REMOVED" if fact.kind == "removed" else status), reason


def pin_host_keys(session: WriteSession, cluster_id: int, learned: dict[str, str]) -> list[str]:
    """Pin the keys learned on first contact on nodes that have none pinned; their names."""
    pinned = []
    for node in _nodes(session, cluster_id, set(learned)):
        if node.host_key is None:
            node.host_key, node.host_key_pinned_at = learned[node.hostname], utcnow()
            node.host_key_offered = None
            pinned.append(node.hostname)
    return pinned


def settle_nodes(
    session: WriteSession,
    cluster_id: int,
    job_id: int,
    progress: Progress,
    succeeded: bool,
    stopped: str | None = None,
) -> None:
    """Give every target its final status once the run has ended; pin learned host keys.

    ``stopped``: why the run was ended from outside (cancel, force-unlock, shutdown); a target
    it had begun to change is then ``state unknown: <why>``, with the task it was cut off in.
    """
    pin_host_keys(session, cluster_id, progress.host_keys)
    for node in _nodes(session, cluster_id, set(progress.versions)):
        node.rke2_version = progress.versions[node.hostname]
    if progress.operation == Operation.UPGRADE:
        _settle_upgraded(session, cluster_id, job_id, progress, stopped)
        return
    removes = progress.operation.removes
    for node in _nodes(session, cluster_id, set(progress.before)):
        name = node.hostname
        if name in progress.failed:
            continue
        if succeeded or name in progress.done:
            if removes:
                session.delete(node)
            else:
                node.status, node.status_reason = NodeStatus.ACTIVE, None
        elif name in progress.touched:
            verb = "removal" if removes else "install"
            during = f" during task '{progress.current[name]}'" if name in progress.current else ""
            node.status = NodeStatus.FAILED
            if stopped is not None:
                node.status_reason = f"state unknown: {stopped}{during}"
            else:
                node.status_reason = f"{verb} did not complete: job {job_id} failed{during}"
        else:
            node.status = progress.before[name]
            node.status_reason = f"not attempted: job {job_id} failed"


def _settle_upgraded(
    session: WriteSession,
    cluster_id: int,
    job_id: int,
    progress: Progress,
    stopped: str | None,
) -> None:
    """An upgrade's targets at its end: ``ACTIVE`` once past their
    gates, ``FAILED`` where a step or gate failed or the run ended mid-upgrade; the rest as they
    were (a rollout that stopped leaves the nodes after the failed one untouched, and a node
    that failed before its turn — the survey, G5 on the node — was not changed: the job's
    reason says why)."""
    for node in _nodes(session, cluster_id, set(progress.before)):
        name = node.hostname
        if name in progress.failed and name in progress.upgrading:
            node.status, node.status_reason = NodeStatus.FAILED, progress.failed[name]
        elif name in progress.failed:
            node.status, node.status_reason = progress.before[name], None
        elif name in progress.done:
            node.status, node.status_reason = NodeStatus.ACTIVE, None
        elif node.status == NodeStatus.UPGRADING:
            during = f" during task '{progress.current[name]}'" if name in progress.current else ""
            node.status = NodeStatus.FAILED
            node.status_reason = (
                f"state unknown: {stopped}{during}"
                if stopped is not None
                else f"upgrade did not complete: job {job_id} failed{during}"
            )
