"""Stopping a running job so that its lock moves on only after its run has ended.

A running job's run belongs to the worker that claimed it, maybe in another process or on
another machine. Cancel and force-unlock therefore ask (``Job.stop_status``/``stop_reason``):
the owner notices within ``RKE2M_LOCK_CHECK_INTERVAL`` (at once in its own process), ends every
process of the run, and only then settles the job and passes the lock on. If the owner does not
answer in time, the caller ends the run itself when it is on this machine (found by its tag,
:mod:`rke2_manager.execution.procs`), and settles the job; a run on a machine it cannot reach is
left to the nodes, whose fences refuse it from the next job on.
"""

from __future__ import annotations

import logging
import os
import socket
import time

from rke2_manager.cluster_lock import lock_cluster_row
from rke2_manager.context import AppContext
from rke2_manager.execution.procs import RunNotEnded, end_run
from rke2_manager.execution.ssh import ControlDirError, master_title
from rke2_manager.jobs.settle import settle
from rke2_manager.models import Job, JobStatus, utcnow

log = logging.getLogger(__name__)

#: Added to the reason of a job ended without word from the worker that ran it.
UNCONFIRMED = "its run on worker {worker} did not confirm it ended; nodes refuse it by their fence"


def _first_line(path: str) -> str:
    try:
        with open(path) as fh:
            return fh.read().strip().replace("-", "")[:12]
    except OSError:
        return ""


def machine_id() -> str:
    """This machine's id (``/etc/machine-id``), or "" when it has none."""
    return _first_line("/etc/machine-id")


def boot_id() -> str:
    """This boot's id: a worker id from another boot of this machine belongs to a dead worker."""
    return _first_line("/proc/sys/kernel/random/boot_id")


def machine_prefix() -> str:
    """The start of the ids of workers on this machine: ``host:machine:``."""
    return f"{socket.gethostname()}:{machine_id()}:"


def on_this_boot(worker_id: str | None) -> bool:
    """Whether ``worker_id`` names a worker of this machine since its last boot, so its run's
    processes, if any are left, are here to be found."""
    if not worker_id or not machine_id():
        return False
    return worker_id.startswith(f"{machine_prefix()}{boot_id()}:")


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def end_local_run(job: Job, grace: float) -> bool:
    """End the job's run if it is on this machine; True when none of its processes is left
    here (or none was ever here to look for), False when its worker is elsewhere."""
    if job.worker_id is None:
        return True  # never claimed: nothing ever ran
    if not on_this_boot(job.worker_id):
        # this machine before a reboot: nothing of the run can be left; else another machine
        return bool(machine_id()) and job.worker_id.startswith(machine_prefix())
    if job.run_tag is None:
        return True  # its run had not begun (and cannot now: the worker's writes are fenced)
    try:
        title = master_title(job.cluster_id, job.run_tag)
    except ControlDirError:
        title = None
    try:
        ended = end_run(job.run_tag, grace, title=title)
    except RunNotEnded:
        log.error("job %s: processes of its run survive SIGKILL", job.id)
        return False
    if ended:
        log.warning("job %s: ended %d orphaned process(es) of its run", job.id, ended)
    return True


def request_stop(job: Job, status: JobStatus, reason: str) -> None:
    """Ask the worker running ``job`` to end its run, then settle with ``status``/``reason``.

    In the caller's write transaction, which holds the cluster row.
    """
    if job.stop_status is None:
        job.stop_status, job.stop_reason, job.stop_requested_at = status, reason, utcnow()


def await_end(ctx: AppContext, job_id: int, timeout: float) -> Job:
    """Wait until the job has ended (or ``timeout`` passes); the job as last read."""
    deadline = time.monotonic() + timeout
    while True:
        with ctx.db.read_session() as session:
            job = session.get(Job, job_id)
            assert job is not None
        if JobStatus(job.status).is_final or time.monotonic() >= deadline:
            return job
        time.sleep(0.1)


def end_stopped(ctx: AppContext, asked: Job) -> Job:
    """After a stop request (``asked``: the job as the request's transaction left it): wait for
    the owner to settle the job; if it does not, end the run here when it is local, and settle
    the job with the requested status and reason.

    Returns the job as it ended.
    """
    job_id = asked.id
    if asked.stop_status is not None:  # at once if it runs in this process
        ctx.stop_job(job_id, asked.stop_reason or "stopped", JobStatus(asked.stop_status))
    job = await_end(ctx, job_id, ctx.settings.stop_timeout)
    if JobStatus(job.status).is_final:
        return job
    confirmed = end_local_run(job, ctx.settings.kill_grace)
    with ctx.db.transaction() as session:
        lock_cluster_row(session, job.cluster_id, with_nodes=False)
        job = session.get(Job, job_id, populate_existing=True)  # type: ignore[assignment]
        assert job is not None
        if JobStatus(job.status).is_final:
            return job
        reason = job.stop_reason or "stopped"
        if not confirmed:
            reason += "; " + UNCONFIRMED.format(worker=job.worker_id)
        log.warning("job %s: its worker did not end it; settling it here", job_id)
        settle(session, ctx.settings, job, JobStatus(job.stop_status or JobStatus.FAILED), reason)
        return job
