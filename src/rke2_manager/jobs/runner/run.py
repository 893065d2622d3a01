"""One job's life in a worker: prepare, run the playbook, record the outcome, free the lock.

Every database write made for a job first checks that the job still holds the cluster lock with
its fencing token (:class:`Fence`); a job that lost its lock writes nothing more and stops its
run. Whatever happened, ``finally`` settles the job (:mod:`rke2_manager.jobs.settle`): its
nodes, its G3 successor, the cluster's stage, and the lock passed on.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from rke2_manager.context import AppContext
from rke2_manager.db import unavailable
from rke2_manager.errors import LockLost
from rke2_manager.execution.ansible_service import run_playbook
from rke2_manager.execution.events import HostEvent
from rke2_manager.jobs import events, preflight
from rke2_manager.jobs.runner.fencing import Claim, Fence, LogWriter, StopSignal
from rke2_manager.jobs.runner.nodestatus import Progress, on_host
from rke2_manager.jobs.runner.spec import prepare, record_start
from rke2_manager.jobs.settle import NOT_RECORDED, settle
from rke2_manager.jobs.snapshot_records import record_reports
from rke2_manager.metrics import JOBS_FINISHED
from rke2_manager.models import (
    Cluster,
    Job,
    JobStatus,
)
from rke2_manager.netpolicy import AddressNotAllowed
from rke2_manager.paths import PathNotAllowed

log = logging.getLogger(__name__)


def finish(
    ctx: AppContext,
    claim: Claim,
    progress: Progress | None,
    status: JobStatus,
    reason: str | None,
    stopped: bool = False,
) -> None:
    """Record the job's end (:func:`~rke2_manager.jobs.settle.settle`) with what the run learned.

    One transaction; raises LockLost (writing nothing) if the job no longer holds the lock.
    """
    with Fence(ctx, claim).session() as session:
        job = session.get(Job, claim.job_id)
        cluster = session.get(Cluster, claim.cluster_id)
        assert job is not None and cluster is not None
        if progress is not None and progress.kubeconfig:
            # stored as RKE2 wrote it; the API points it at the current address when read
            cluster.kubeconfig_enc = ctx.box.encrypt(progress.kubeconfig)
        if progress is not None and progress.reports:
            # before settle: a removal's settle deletes nodes, and their lists with them
            record_reports(session, job, progress.reports)
        if progress is not None and job.operation in preflight.RUN_BY:
            failures = {**progress.others_failed, **progress.failed}
            preflight.record(job, progress.reports, failures)
            reason = preflight.failure_reason(job, status, reason)
        settle(session, ctx.settings, job, status, reason, progress, stopped_run=stopped)


def _outcome_reason(status: str, rc: int | None, progress: Progress, timeout: int) -> str:
    """Why a run that did not succeed failed, naming hosts (and what they were doing)."""
    if progress.host_key_changed:
        # said first and as it is: an operator must see this before any knock-on failure
        return next(iter(progress.host_key_changed.values()))
    failed = ""
    # a target's failure first; else one of a host the run works through
    failures = progress.failed or progress.others_failed
    if failures:
        host, why = next(iter(failures.items()))
        more = len(failures) - 1
        failed = f"{host}: {why}" + (f" (and {more} more host(s) failed)" if more else "")
    if status == "timeout":
        reason = f"playbook did not finish within {timeout}s (RKE2M_JOB_TIMEOUT)"
        if progress.current:
            busy = ", ".join(f"{host}: task '{task}'" for host, task in progress.current.items())
            reason += f"; still running: {busy}"
        return reason + (f"; failed before: {failed}" if failed else "")
    if failed:
        return failed
    if status == "canceled":
        return "run stopped"
    return f"ansible-playbook ended with status {status} (rc {rc})"


def execute(ctx: AppContext, claim: Claim, stop: StopSignal) -> None:
    """Run the claimed job to its end. Never raises; always frees the lock it still holds.

    When ``stop`` is set (cancel, force-unlock, shutdown, lost lock) the run's processes are
    ended first; the job settles with the stop's status and reason only once none is left.
    """
    fence = Fence(ctx, claim)
    progress: Progress | None = None
    status: JobStatus = JobStatus.FAILED
    reason: str | None = "internal error"
    logw = LogWriter(fence)
    lost = False
    late: dict[str, str] = {}
    """Host failures after the stop: not the nodes' state (the kill's doing, or a node's fence
    refusing a run that lost its lock), but worth a line in the worker's log."""
    try:
        spec, progress = prepare(ctx, fence)
        logw.progress = tracked = progress

        def host_fact(fact: HostEvent) -> None:
            task_event(logw, tracked, fact)
            if stop.is_set():
                tracked.follow(fact)
                if fact.kind in ("failed", "unreachable") and fact.reason:
                    late.setdefault(fact.host, fact.reason)
            elif (change := on_host(fence, tracked, fact)) is not None:
                logw.event(events.NODE, events.node_item(fact.host, *change).data)
            logw.tick()

        outcome = run_playbook(
            spec,
            on_host=host_fact,
            on_output=logw.write,
            should_cancel=stop.is_set,
            on_start=lambda found: record_start(fence, found),
            on_tick=logw.tick,
        )
        logw.flush()
        progress.kubeconfig = outcome.kubeconfig
        progress.host_keys = outcome.host_keys
        if stop.is_set():
            status, reason = stop.status, stop.reason or "run stopped"
        elif outcome.status == "successful" and not progress.failed:
            status, reason = JobStatus.SUCCEEDED, None
        else:
            reason = _outcome_reason(outcome.status, outcome.rc, progress, spec.timeout)
            if outcome.status == "timeout":
                # Ansible's output ends at the last TASK line: say why it stops there
                logw.write([f"rke2-manager: {reason}"])
    except LockLost:
        _log_lost(claim, progress, late)
        lost = True
    except (AddressNotAllowed, FileNotFoundError, PathNotAllowed) as exc:
        reason = str(exc)
    except Exception as exc:
        log.exception("job %s crashed", claim.job_id)
        reason = f"internal error: {type(exc).__name__}: {exc}"
    finally:
        stopped = stop.is_set()
        if not lost and not _finish_safely(ctx, claim, progress, status, reason, logw, stopped):
            _log_lost(claim, progress, late)


def task_event(logw: LogWriter, progress: Progress, fact: HostEvent) -> None:
    """Queue the ``task_start``/``task_end`` event a host fact stands for (before
    :meth:`Progress.follow` forgets the task a host was in)."""
    if fact.kind == "started":
        logw.event(events.TASK_START, {"host": fact.host, "task": fact.task or ""})
    elif fact.result is not None:
        data: dict[str, str | None] = {
            "host": fact.host,
            "task": progress.current.get(fact.host, fact.task or ""),
            "result": fact.result,
        }
        if fact.result in ("failed", "unreachable"):
            data["reason"] = fact.reason
        logw.event(events.TASK_END, data)


def _log_lost(claim: Claim, progress: Progress | None, late: dict[str, str]) -> None:
    """Say that the job lost its lock, and what its hosts reported (a node's fence refusing
    the run says ``fenced: node X was taken over by job N``)."""
    failed = {**(progress.failed if progress is not None else {}), **late}
    said = "; ".join(f"{host}: {why}" for host, why in failed.items())
    log.warning(
        "job %s lost its lock; its run is ended, nothing more is written%s",
        claim.job_id,
        f" ({said})" if said else "",
    )


def _finish_safely(
    ctx: AppContext,
    claim: Claim,
    progress: Progress | None,
    status: JobStatus,
    reason: str | None,
    logw: LogWriter,
    stopped: bool,
) -> bool:
    """Record the job's end; if that fails, still settle it (job, G3 successor, nodes, stage,
    lock) without what the run learned, so nothing is left queued, running or mid-change.

    While the database is unavailable (a restart, a failover) this keeps trying, with the
    lease still renewed by the worker, for up to ``RKE2M_LOCK_TTL``: an outage shorter than
    the lease costs the job nothing. Returns False if the job turned out to have lost its
    lock (nothing was written).
    """
    deadline = time.monotonic() + ctx.settings.lock_ttl
    try:
        _retry(deadline, claim, "store its last output lines", logw.flush_all)
    except LockLost:
        return False
    except Exception:
        log.exception("job %s: could not store its last output lines", claim.job_id)
    try:
        _retry(
            deadline,
            claim,
            "record its end",
            lambda: finish(ctx, claim, progress, status, reason, stopped),
        )
        if progress is not None:
            JOBS_FINISHED.labels(progress.operation.value, status.value).inc()
        return True
    except LockLost:
        return False
    except Exception:
        log.exception(
            "job %s: could not record its end; settling it without its results", claim.job_id
        )
    ended = f"{reason or 'the run succeeded'}; {NOT_RECORDED}"
    # the second try only releases the lock: handing it on is what may have failed
    for pass_lock in (True, False):
        try:
            with Fence(ctx, claim).session() as session:
                job = session.get(Job, claim.job_id)
                assert job is not None
                settle(session, ctx.settings, job, JobStatus.FAILED, ended, pass_lock=pass_lock)
            return True
        except LockLost:
            return False
        except Exception:
            log.exception("job %s: could not settle (pass_lock=%s)", claim.job_id, pass_lock)
    log.error(
        "job %s: left to the lease reaper, which settles it when its lease ends", claim.job_id
    )
    return True


def _retry(deadline: float, claim: Claim, what: str, action: Callable[[], None]) -> None:
    """Do ``action``, again and again while the database is unavailable and ``deadline`` (a
    monotonic time) has not passed. Raises what the last try raised."""
    delay = 0.5
    while True:
        try:
            action()
            return
        except Exception as exc:
            if not unavailable(exc) or time.monotonic() + delay > deadline:
                raise
            log.warning(
                "job %s: database unavailable, cannot %s yet (%s); retrying in %.1f s",
                claim.job_id,
                what,
                type(exc).__name__,
                delay,
            )
        time.sleep(delay)
        delay = min(delay * 2, 5.0)
