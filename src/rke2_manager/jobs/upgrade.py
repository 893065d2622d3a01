"""The upgrade operation: its request (checked by G5), what its run gets, how its end is recorded.

An upgrade job targets the nodes it upgrades (every node not named in ``skip``). Its nodes stay
``ACTIVE`` until the run reaches them: the playbook marks each one ``UPGRADING`` while it is
cordoned, drained, reinstalled and restarted, ``ACTIVE`` again once it passed its gates, and
``FAILED`` (with the gate) where it stopped. The cluster's ``rke2_version`` (and its artifact
directory, so later joins install the same release) changes only when every node runs the new
version.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import object_session

from rke2_manager.db import WriteSession
from rke2_manager.errors import InvalidRequest, NotFound
from rke2_manager.models import Cluster, Job, JobStatus, Node, NodeStatus, Operation
from rke2_manager.paths import PathNotAllowed, check_artifact_dir
from rke2_manager.skew import UpgradePlan, VersionedNode, check_version_skew
from rke2_manager.versions import try_version


def checked_artifact_dir(value: str | None, root: Path) -> str | None:
    """The upgrade's ``artifact_dir``, under the artifact root and existing (symlinks resolved);
    InvalidRequest (422) otherwise. None: install with the online script."""
    if value is None:
        return None
    try:
        path = check_artifact_dir(value, root, must_exist=True)
    except PathNotAllowed as exc:
        raise InvalidRequest(str(exc).replace("rke2.artifact_dir", "artifact_dir", 1)) from None
    return str(path)


def _last_job(cluster: Cluster) -> Job | None:
    session = object_session(cluster)
    assert session is not None, "the cluster must be loaded in a session"
    return session.scalars(
        select(Job)
        .where(
            Job.cluster_id == cluster.id,
            Job.status.in_([JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELED]),
        )
        .order_by(Job.id.desc())
        .limit(1)
    ).first()


@dataclass(frozen=True)
class UpgradeRequest:
    """Upgrade every node not in ``skip`` to ``version`` (from ``artifact_dir`` if given)."""

    version: str
    artifact_dir: str | None = None
    drain: bool = True
    agent_concurrency: int = 1
    skip: tuple[str, ...] = ()
    operation = Operation.UPGRADE

    def params(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "artifact_dir": self.artifact_dir,
            "drain": self.drain,
            "agent_concurrency": self.agent_concurrency,
            "skip": list(self.skip),
        }

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> UpgradeRequest:
        return cls(
            str(params["version"]),
            params.get("artifact_dir"),
            bool(params.get("drain", True)),
            int(params.get("agent_concurrency", 1)),
            tuple(params.get("skip", [])),
        )

    def plan(self, cluster: Cluster) -> UpgradePlan:
        """G5 over the cluster as it is now. Raises NotFound for a ``skip`` naming no node,
        GuardrailViolation (G5)."""
        names = {n.hostname for n in cluster.nodes}
        for name in self.skip:
            if name not in names:
                raise NotFound(f"Node '{name}' (in skip) not found in cluster '{cluster.name}'")
        last = _last_job(cluster)
        # A re-run right after an upgrade to this version stopped (failed, or was canceled: a node
        # it cut off mid-upgrade is FAILED, state unknown) retries the nodes it left FAILED.
        retried = (
            {t["hostname"] for t in last.targets}
            if last is not None
            and last.operation == Operation.UPGRADE
            and last.status in (JobStatus.FAILED, JobStatus.CANCELED)
            and (last.params or {}).get("version") == self.version
            else set()
        )
        nodes = [
            VersionedNode(
                n.hostname,
                n.role,
                n.status,
                n.rke2_version,
                retry=n.hostname in retried and n.status == NodeStatus.FAILED,
            )
            for n in cluster.nodes
        ]
        return check_version_skew(nodes, self.version, self.skip, cluster.rke2_version)

    def planned_targets(self, cluster: Cluster) -> list[dict[str, Any]]:
        return _targets(cluster, self.plan(cluster))

    def check_cluster(self, cluster: Cluster) -> list[str]:
        return self.plan(cluster).warnings

    def apply(self, session: WriteSession, cluster: Cluster, job: Job) -> None:
        job.targets = _targets(cluster, self.plan(cluster))


def _targets(cluster: Cluster, plan: UpgradePlan) -> list[dict[str, Any]]:
    names = {n.hostname for n in plan.nodes}
    return [
        {"id": n.id, "hostname": n.hostname, "ip": n.ip, "role": n.role}
        for n in cluster.nodes
        if n.hostname in names
    ]


def run_vars(job: Job, root: Path) -> dict[str, Any]:
    """The upgrade's extra vars for its run; the artifact directory is checked again now (it
    may have changed on disk since the request). Raises PathNotAllowed."""
    request = UpgradeRequest.from_params(job.params or {})
    artifact_dir = ""
    if request.artifact_dir is not None:
        path = check_artifact_dir(request.artifact_dir, root, must_exist=True)
        artifact_dir = str(path.resolve())  # a link swapped after this check cannot lead out
    return {
        "rke2_version": request.version,
        "rke2_artifact_dir": artifact_dir,
        "rke2m_upgrade_version": request.version,
        "rke2m_upgrade_drain": request.drain,
        "rke2m_upgrade_agent_concurrency": request.agent_concurrency,
    }


def record_versions(session: WriteSession, job: Job) -> None:
    """At the end of an upgrade job: if every node now runs its target version, that becomes
    the cluster's version (and the upgrade's artifact directory the cluster's)."""
    request = UpgradeRequest.from_params(job.params or {})
    cluster = session.get(Cluster, job.cluster_id)
    assert cluster is not None
    nodes = session.scalars(select(Node).where(Node.cluster_id == cluster.id)).all()
    wanted = try_version(request.version)
    if nodes and wanted is not None and all(try_version(n.rke2_version) == wanted for n in nodes):
        cluster.rke2_version = request.version
        # later joins install the release the cluster runs (None: the online script, pinned)
        cluster.rke2_artifact_dir = request.artifact_dir
