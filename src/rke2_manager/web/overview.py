"""The cluster list's rows, read with three aggregate queries whatever the number of clusters
(loading every cluster with its nodes, as the API's list does, took ~180 ms for 50 clusters of
20 nodes on SQLite; see bench/dashboard_pages.py)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from rke2_manager.models import Cluster, Job, JobStatus, Node


@dataclass(frozen=True)
class ClusterRow:
    id: int
    name: str
    stage: str
    operation_status: str
    locked_by: str | None
    current_job_id: int | None
    queued: int
    nodes: int
    active: int


def cluster_rows(session: Session) -> list[ClusterRow]:
    """Every cluster with its node counts and queue length, by id."""
    nodes = {
        cluster_id: (int(total), int(active or 0))
        for cluster_id, total, active in session.execute(
            select(
                Node.cluster_id,
                func.count(),
                func.sum(case((Node.status == "ACTIVE", 1), else_=0)),
            ).group_by(Node.cluster_id)
        )
    }
    # the queue as jobs.queue.queued_jobs defines it: queued, waiting for the lock (a G3 job
    # waiting for its predecessor is not in it)
    queued = {
        cluster_id: int(count)
        for cluster_id, count in session.execute(
            select(Job.cluster_id, func.count())
            .where(Job.status == JobStatus.QUEUED, Job.predecessor_id.is_(None))
            .group_by(Job.cluster_id)
        )
    }
    clusters = session.execute(
        select(
            Cluster.id,
            Cluster.name,
            Cluster.stage,
            Cluster.operation_status,
            Cluster.operation_locked_by,
            Cluster.current_job_id,
        ).order_by(Cluster.id)
    )
    return [
        ClusterRow(
            id=c.id,
            name=c.name,
            stage=c.stage,
            operation_status=c.operation_status,
            locked_by=c.operation_locked_by,
            current_job_id=c.current_job_id,
            queued=queued.get(c.id, 0),
            nodes=nodes.get(c.id, (0, 0))[0],
            active=nodes.get(c.id, (0, 0))[1],
        )
        for c in clusters
    ]
