"""Saving and deleting etcd snapshots: operations under the cluster lock like every other.

A save runs ``rke2 etcd-snapshot save --name <name>`` on one server — the initial master when
it is ACTIVE, else the first ACTIVE server — (a snapshot holds the whole cluster), then lists
the snapshots of every installed server. A delete runs ``rke2 etcd-snapshot delete`` on each
server whose last list holds the snapshot, then lists them again. Both record the lists
(:mod:`.snapshot_records`); the save records the snapshot's full name on its job.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rke2_manager.clusters.views import snapshot
from rke2_manager.config import Settings
from rke2_manager.db import WriteSession
from rke2_manager.errors import DomainError, NotFound
from rke2_manager.guardrails import ClusterView, NodeView, ProbePolicy, ProbeResult
from rke2_manager.jobs.create import Accepted, OnBusy, locked_cluster, start_jobs
from rke2_manager.jobs.snapshot_records import holders
from rke2_manager.models import Cluster, Job, NodeStatus, Operation

NO_ACTIVE_SERVER = "No ACTIVE server to save the snapshot on."


def installed_servers(view: ClusterView) -> list[NodeView]:
    """The servers that are etcd members (installed: not PENDING), initial master first."""
    servers = [s for s in view.servers if s.status != NodeStatus.PENDING]
    return sorted(servers, key=lambda s: not s.is_initial_master)


def save_server(view: ClusterView) -> NodeView:
    """Where a snapshot is saved: the initial master if ACTIVE, else the first ACTIVE server.
    Raises DomainError (400) when no server is ACTIVE."""
    for server in installed_servers(view):
        if server.status == NodeStatus.ACTIVE:
            return server
    raise DomainError(NO_ACTIVE_SERVER)


def not_found(cluster: Cluster, name: str) -> NotFound:
    return NotFound(
        f"Snapshot '{name}' not found in cluster '{cluster.name}' "
        f"(GET /api/clusters/{cluster.id}/snapshots lists the known ones)"
    )


@dataclass(frozen=True)
class _NamedSnapshot:
    """A request about one snapshot by name; it changes no node's status (no targets)."""

    name: str

    def params(self) -> dict[str, Any]:
        return {"name": self.name}

    def planned_targets(self, cluster: Cluster) -> list[dict[str, Any]]:
        return []


@dataclass(frozen=True)
class SnapshotSaveRequest(_NamedSnapshot):
    """Save a snapshot named ``name`` (validated by the API: a-z, 0-9, inner '-')."""

    operation = Operation.SNAPSHOT_SAVE

    def check(self, view: ClusterView, probe: ProbeResult | None, policy: ProbePolicy) -> list[str]:
        save_server(view)
        return []

    def apply(self, session: WriteSession, cluster: Cluster, job: Job) -> None:
        view = snapshot(cluster)
        job.targets = []
        job.params = {
            **self.params(),
            "on": save_server(view).hostname,
            "servers": [s.hostname for s in installed_servers(view)],
        }


@dataclass(frozen=True)
class SnapshotDeleteRequest(_NamedSnapshot):
    """Delete the snapshot ``name`` (its full name, as listed) from every server holding it."""

    operation = Operation.SNAPSHOT_DELETE

    def check(self, view: ClusterView, probe: ProbeResult | None, policy: ProbePolicy) -> list[str]:
        return []

    def apply(self, session: WriteSession, cluster: Cluster, job: Job) -> None:
        held = holders(session, cluster.id, self.name)
        if not held:
            raise not_found(cluster, self.name)
        job.targets = []
        job.params = {**self.params(), "on": [node.hostname for node, _ in held]}


def start_snapshot_save(
    session: WriteSession,
    settings: Settings,
    cluster_id: int,
    name: str,
    actor: str,
    on_busy: OnBusy = "reject",
) -> Accepted:
    """Save a snapshot. Raises NotFound, ClusterBusy (409), DomainError (400: no ACTIVE
    server)."""
    cluster = locked_cluster(session, cluster_id, on_busy)
    return start_jobs(session, settings, cluster, [SnapshotSaveRequest(name)], actor, on_busy, None)


def start_snapshot_delete(
    session: WriteSession,
    settings: Settings,
    cluster_id: int,
    name: str,
    actor: str,
    on_busy: OnBusy = "reject",
) -> Accepted:
    """Delete a snapshot by its full name. Raises NotFound (cluster, or a snapshot no server's
    last list holds), ClusterBusy (409)."""
    cluster = locked_cluster(session, cluster_id, on_busy)
    if not holders(session, cluster.id, name):
        raise not_found(cluster, name)
    return start_jobs(
        session, settings, cluster, [SnapshotDeleteRequest(name)], actor, on_busy, None
    )
