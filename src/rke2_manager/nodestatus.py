"""Node statuses follow the run: per-host facts as they happen, final statuses when it ends."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from rke2_manager.execution.events import HostEvent
from rke2_manager.fencing import Claim, Fence
from rke2_manager.models import Node, NodeStatus, Operation


@dataclass
class Progress:
    """What is known of each target host while the run goes on."""

    operation: Operation
    before: dict[str, str]
    kubeconfig: str | None = None
    touched: set[str] = field(default_factory=set)
    done: set[str] = field(default_factory=set)
    failed: dict[str, str] = field(default_factory=dict)


def _nodes(session: Session, cluster_id: int, names: set[str]) -> list[Node]:
    return list(
        session.scalars(select(Node).where(Node.cluster_id == cluster_id, Node.hostname.in_(names)))
    )


def on_host(fence: Fence, progress: Progress, fact: HostEvent) -> None:
    """Follow a host fact: failures and milestones are written at once (fenced)."""
    if fact.host not in progress.before:
        return
    progress.touched.add(fact.host)
    if fact.kind in ("failed", "unreachable") and fact.host not in progress.failed:
        progress.failed[fact.host] = fact.reason or fact.kind
        status, reason = NodeStatus.FAILED, fact.reason
    elif fact.kind in ("ready", "removed") and fact.host not in progress.done:
        progress.done.add(fact.host)
        status, reason = NodeStatus.ACTIVE, None
    else:
        return
    with fence.session() as session:
        for node in _nodes(session, fence.claim.cluster_id, {fact.host}):
            if fact.kind == "removed":
                session.delete(node)
            else:
                node.status, node.status_reason = status, reason


def settle_nodes(session: Session, claim: Claim, progress: Progress, succeeded: bool) -> None:
    """Give every target its final status once the run has ended."""
    removes = progress.operation.removes
    for node in _nodes(session, claim.cluster_id, set(progress.before)):
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
            node.status = NodeStatus.FAILED
            node.status_reason = f"{verb} did not complete: job {claim.job_id} failed"
        else:
            node.status = progress.before[name]
            node.status_reason = f"not attempted: job {claim.job_id} failed"
