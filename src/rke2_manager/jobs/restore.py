"""Restoring an etcd snapshot onto the cluster's own servers (RKE2's cluster reset).

Needs ``confirm_restore=true``. The server whose last list holds the snapshot becomes the
initial master (the others rejoin through it); every installed node is a target: RKE2 stops
on every server, ``rke2 server --cluster-reset --cluster-reset-restore-path=<file>`` runs on
that server, which then starts alone on the snapshot's state; the other servers' etcd data is
wiped (their snapshots are kept) and they start and rejoin one at a time; the agents restart.
The admin kubeconfig is fetched again, and every server's snapshot list recorded.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from rke2_manager.clusters.views import snapshot
from rke2_manager.config import Settings
from rke2_manager.db import WriteSession
from rke2_manager.errors import DomainError, GuardrailViolation
from rke2_manager.guardrails import ClusterView, ProbePolicy, ProbeResult
from rke2_manager.jobs.create import Accepted, OnBusy, locked_cluster, start_jobs
from rke2_manager.jobs.plans import targets_of
from rke2_manager.jobs.snapshot_records import holders
from rke2_manager.jobs.snapshots import installed_servers, not_found
from rke2_manager.models import Cluster, Job, Node, NodeStatus, Operation, Snapshot

CONFIRM_RESTORE = "Restoring a snapshot requires explicit confirmation."
NO_SERVER = "The cluster has no installed server to restore onto."
_PATH = re.compile(r"^/[A-Za-z0-9._/-]{1,4000}$")


def local_path(node: Node, snap: Snapshot) -> str:
    """The snapshot's file on ``node``; DomainError (400) unless it is a plain local file."""
    location = snap.location
    path = location.removeprefix("file://")
    if path == location or not _PATH.fullmatch(path) or "/../" in f"{path}/":
        raise DomainError(
            f"Snapshot '{snap.name}' on {node.hostname} is at {location[:200]}, not in a local "
            "file: only a snapshot file on a server can be restored."
        )
    return path


@dataclass(frozen=True)
class RestoreRequest:
    """Restore ``snapshot`` (its full name, as listed); ``confirm_restore`` must be true."""

    snapshot: str
    confirm_restore: bool
    operation = Operation.RESTORE

    def params(self) -> dict[str, Any]:
        return {"snapshot": self.snapshot, "confirm_restore": self.confirm_restore}

    def planned_targets(self, cluster: Cluster) -> list[dict[str, Any]]:
        return targets_of([n for n in cluster.nodes if n.status != NodeStatus.PENDING])

    def check(self, view: ClusterView, probe: ProbeResult | None, policy: ProbePolicy) -> list[str]:
        if not self.confirm_restore:
            raise GuardrailViolation("restore", CONFIRM_RESTORE)
        if not installed_servers(view):
            raise DomainError(NO_SERVER)
        return []

    def source(self, session: WriteSession, cluster: Cluster) -> tuple[Node, str]:
        """The installed server holding the snapshot and the file's path there; raises
        NotFound or DomainError (400)."""
        held = holders(session, cluster.id, self.snapshot)
        installed = [(n, s) for n, s in held if n.status != NodeStatus.PENDING]
        if not installed:
            raise not_found(cluster, self.snapshot)
        node, snap = installed[0]
        return node, local_path(node, snap)

    def apply(self, session: WriteSession, cluster: Cluster, job: Job) -> None:
        holder, path = self.source(session, cluster)
        # The holder bootstraps the restored cluster: the others rejoin through it.
        for node in cluster.nodes:
            node.is_initial_master = node.id == holder.id
        servers = [s.hostname for s in installed_servers(snapshot(cluster))]
        job.targets = self.planned_targets(cluster)
        job.snapshot = self.snapshot
        job.params = {**self.params(), "on": holder.hostname, "path": path, "servers": servers}


def start_restore(
    session: WriteSession,
    settings: Settings,
    cluster_id: int,
    name: str,
    confirm_restore: bool,
    actor: str,
    on_busy: OnBusy = "reject",
) -> Accepted:
    """Restore a snapshot. Checked in this order: cluster (404), busy (409), confirmation
    (400, :data:`CONFIRM_RESTORE`), an installed server (400), the snapshot (404, or 400 when
    it is not a local file)."""
    cluster = locked_cluster(session, cluster_id, on_busy)
    request = RestoreRequest(name, confirm_restore)
    request.check(snapshot(cluster), None, "off")
    request.source(session, cluster)
    return start_jobs(session, settings, cluster, [request], actor, on_busy, None)
