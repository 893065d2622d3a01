"""The one way a running job ends: its row, its G3 successor, its nodes, the stage, the lock.

Every path that ends a job that held its cluster's lock goes through :func:`settle`: the
worker's ``finish``, the fallback when that fails, cancel, force-unlock, the lease reaper and
start-up recovery. So none of them can leave a G3 agents job ``queued`` forever, a node
``INSTALLING``/``REMOVING`` without a reason, or a stage ``installing`` under an idle lock
(SPEC §11).
"""

from __future__ import annotations

from sqlalchemy import select

from rke2_manager import metrics
from rke2_manager.cluster_lock import release_cluster_lock
from rke2_manager.config import Settings
from rke2_manager.db import WriteSession
from rke2_manager.jobs import events
from rke2_manager.jobs.queue import cancel_successors, pass_on
from rke2_manager.jobs.runner.nodestatus import Progress, settle_nodes
from rke2_manager.jobs.upgrade import record_versions
from rke2_manager.models import (
    Cluster,
    ClusterStage,
    Job,
    JobStatus,
    Node,
    NodeStatus,
    Operation,
    utcnow,
)

#: Appended to the reason of a job whose worker could not record its end the normal way.
NOT_RECORDED = "the job's end could not be fully recorded"


def settle(
    session: WriteSession,
    settings: Settings,
    job: Job,
    status: JobStatus,
    reason: str | None,
    progress: Progress | None = None,
    *,
    pass_lock: bool = True,
    stopped_run: bool = False,
) -> Job | None:
    """End ``job``, which ran under its cluster's lock, with ``status`` and ``reason``.

    In the caller's write transaction, which must already hold the cluster row (a request's
    ``lock_cluster_row``, the reaper's ``FOR UPDATE``, the worker's :class:`~.fencing.Fence`):

    - the job row gets its status, reason and end time;
    - its target nodes: with the run's ``progress`` each gets its final status; any still
      ``INSTALLING``/``REMOVING`` after that becomes ``FAILED``, ``state unknown: <reason>``;
    - an install leaves the cluster's stage ``ready`` on success, ``failed`` otherwise;
    - the lock: on success it goes to the job's G3 successor; otherwise the successor is
      canceled (``servers job N failed``), the lock released and given to the next queued job.
      With ``pass_lock=False`` (the last resort when passing on itself failed) the lock is only
      released; the maintenance sweep starts the queue.

    ``stopped_run``: the run was ended from outside (shutdown, cancel, force-unlock): targets
    it had begun to change are ``state unknown: <reason> during task '<task>'``.

    Lock columns change only if ``job`` still holds the lock with its fencing token. The rest is
    written regardless, so a worker must check its fence before calling this (a job that lost
    its lock writes nothing). Returns the job that holds the lock afterwards, if any.
    """
    targets = events.node_statuses(session, job.cluster_id, [t["hostname"] for t in job.targets])
    job.status, job.reason, job.finished_at = status, reason, utcnow()
    metrics.job_ended(session, job)
    succeeded = status == JobStatus.SUCCEEDED
    if progress is not None:
        stopped = reason if job.stop_status is not None or stopped_run else None
        settle_nodes(session, job.cluster_id, job.id, progress, succeeded, stopped)
    _explain_mid_change(session, job, reason)
    events.record_node_changes(session, job, targets)
    if job.operation == Operation.UPGRADE:
        record_versions(session, job)
    if job.operation == Operation.INSTALL:
        cluster = session.get(Cluster, job.cluster_id)
        assert cluster is not None
        cluster.stage = ClusterStage.READY if succeeded else ClusterStage.FAILED
    holder = None
    token = job.fencing_token
    if token is not None and pass_lock:
        holder = pass_on(session, settings, job.cluster_id, job, token, succeeded=succeeded)
    elif token is not None:
        release_cluster_lock(session, job.cluster_id, job.id, token)
    # whatever happened to the lock, a successor still queued now would wait forever
    cancel_successors(session, job)
    return holder


def _explain_mid_change(session: WriteSession, job: Job, reason: str | None) -> None:
    """Targets the run left mid-change: their real state is unknown, and the reason says so."""
    names = [t["hostname"] for t in job.targets]
    for node in session.scalars(
        select(Node).where(
            Node.cluster_id == job.cluster_id,
            Node.hostname.in_(names),
            Node.status.in_([NodeStatus.INSTALLING, NodeStatus.REMOVING, NodeStatus.UPGRADING]),
        )
    ):
        node.status = NodeStatus.FAILED
        node.status_reason = f"state unknown: {reason or f'job {job.id} ended'}"
