"""What a job's run gets: its targets marked, and the :class:`RunSpec` built from the database.

Everything the run needs is read here, in one fenced transaction, and handed to
:mod:`rke2_manager.execution` (which writes it, marked unsafe, into the run's private files).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from sqlalchemy import select

from rke2_manager.context import AppContext
from rke2_manager.db import unavailable
from rke2_manager.execution.ansible_service import HostSpec, RunSpec, runs_dir
from rke2_manager.execution.procs import RunProcess, new_tag
from rke2_manager.jobs import events
from rke2_manager.jobs.runner.fencing import Fence
from rke2_manager.jobs.runner.nodestatus import Progress
from rke2_manager.jobs.upgrade import run_vars as upgrade_vars
from rke2_manager.models import Cluster, ClusterStage, Job, Node, NodeStatus, Operation
from rke2_manager.paths import check_artifact_dir

log = logging.getLogger(__name__)


def _artifact_dir(ctx: AppContext, cluster: Cluster) -> str:
    """The cluster's artifact directory, checked again now (symlinks resolved): it may have
    changed on disk, or in the database, since it was validated. Raises PathNotAllowed."""
    if not cluster.rke2_artifact_dir:
        return ""
    root = ctx.settings.artifact_root_dir
    path = check_artifact_dir(cluster.rke2_artifact_dir, root, must_exist=True)
    # Ansible reads the resolved path: a link swapped after this check cannot lead it out
    return str(path.resolve())


def _secret_config(ctx: AppContext, cluster: Cluster) -> dict[str, Any]:
    if cluster.rke2_config_secrets_enc is None:
        return {}
    value = json.loads(ctx.box.decrypt(cluster.rke2_config_secrets_enc))
    if not isinstance(value, dict):
        raise ValueError("the cluster's secret config keys are not a JSON object")
    return value


def _secret_strings(value: Any) -> list[str]:
    """The strings in a secret config value, to redact from the output."""
    if isinstance(value, dict):
        return [s for v in value.values() for s in _secret_strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _secret_strings(v)]
    return [value] if isinstance(value, str) and value else []


def prepare(ctx: AppContext, fence: Fence) -> tuple[RunSpec, Progress]:
    """Mark the targets INSTALLING or REMOVING and build the run; fenced.

    Raises PathNotAllowed (writing nothing) when the artifact directory is not allowed.
    """
    with fence.session() as session:
        job = session.get(Job, fence.claim.job_id)
        cluster = session.get(Cluster, fence.claim.cluster_id)
        assert job is not None and cluster is not None
        artifact_dir = _artifact_dir(ctx, cluster)
        operation = Operation(job.operation)
        all_nodes = list(session.scalars(select(Node).where(Node.cluster_id == cluster.id)))
        names = {t["hostname"] for t in job.targets}
        progress = Progress(
            operation, {n.hostname: n.status for n in all_nodes if n.hostname in names}
        )
        master = next((n for n in all_nodes if n.is_initial_master), None)
        registration = cluster.registration_address or (master.ip if master else None)
        mark = NodeStatus.REMOVING if operation.removes else NodeStatus.INSTALLING
        for node in all_nodes:
            # an upgrade marks each node UPGRADING only when the run reaches it
            if node.hostname in names and operation != Operation.UPGRADE:
                node.status, node.status_reason = mark, None
        events.record_node_changes(session, job, dict(progress.before))
        if operation == Operation.INSTALL:
            cluster.stage = ClusterStage.INSTALLING
        # recorded before anything starts: whoever finds this job orphaned ends its processes
        job.run_tag = new_tag(job.id)
        token = ctx.box.decrypt(cluster.token_enc)
        secret_config = _secret_config(ctx, cluster)
        spec = RunSpec(
            playbook=ctx.settings.playbook_dir / f"{operation.value}.yml",
            hosts=[
                HostSpec(
                    n.hostname,
                    n.ip,
                    n.role,
                    n.hostname in names,
                    n.is_initial_master,
                    n.host_key if cluster.ssh_host_key_checking else None,
                )
                for n in all_nodes
            ],
            run_root=runs_dir(ctx.settings.data_dir),
            cluster_id=cluster.id,
            ssh_user=cluster.ssh_user,
            ssh_port=cluster.ssh_port,
            ssh_key=ctx.box.decrypt(cluster.ssh_private_key_enc),
            host_key_checking=cluster.ssh_host_key_checking,
            # all of it reaches Ansible marked unsafe, in a 0600 file (run_inputs)
            extravars={
                **ctx.settings.ansible_extra_vars,
                "rke2m_cluster": cluster.name,
                "rke2m_operation": operation.value,
                # what the job was asked and decided at its start (a snapshot's name, the
                # server to act on, ...): the day-2 playbooks read it
                "rke2m_params": job.params or {},
                "rke2_version": cluster.rke2_version or "",
                "rke2_channel": cluster.rke2_channel,
                "rke2_artifact_dir": artifact_dir,
                "rke2_config": cluster.rke2_config,
                "rke2_config_secrets": secret_config,
                "rke2_registration_address": registration or "",
                "rke2_fixed_registration_address": cluster.registration_address or "",
                "rke2_supervisor_port": ctx.settings.supervisor_port,
                "rke2m_token": token,
                # node-side fencing (playbooks/tasks/fence.yml): the cluster's lock token at
                # this job's claim grows with every job, so a node can refuse an older run
                "rke2m_cluster_id": cluster.id,
                "rke2m_job_id": job.id,
                "rke2m_fence_token": fence.claim.token,
                **(
                    upgrade_vars(job, ctx.settings.artifact_root_dir)
                    if operation == Operation.UPGRADE
                    else {}
                ),
            },
            secret_values=[token, *_secret_strings(secret_config)],
            timeout=ctx.settings.job_timeout,
            task_timeout=ctx.settings.task_timeout,
            allowed_networks=ctx.settings.allowed_networks,
            run_tag=job.run_tag,
            kill_grace=ctx.settings.kill_grace,
        )
    return spec, progress


def record_start(fence: Fence, found: RunProcess) -> None:
    """Record the run's ansible-playbook process on the job (fenced). For operators only
    (the run is found by its tag, recorded before it started): skipped while the database is
    unavailable."""
    try:
        with fence.session() as session:
            job = session.get(Job, fence.claim.job_id)
            assert job is not None
            job.run_pid, job.run_pgid = found.pid, found.pgid
            job.run_start_ticks = found.start_ticks
    except Exception as exc:
        if not unavailable(exc):
            raise
        log.warning("job %s: its run's pid is not recorded (%s)", fence.claim.job_id, exc)
