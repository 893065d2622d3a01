"""The job worker: claims jobs that hold their cluster's lock, runs them, renews their leases.

Any number of workers may run (threads of ``serve``, or ``rke2-manager worker`` processes on
other machines): a claim is one row update under ``FOR UPDATE SKIP LOCKED`` (PostgreSQL) or the
database write lock (SQLite), so each job runs once.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid

from sqlalchemy import select

from rke2_manager.cluster_lock import renew_cluster_lock
from rke2_manager.context import AppContext
from rke2_manager.execution.ansible_service import run_dir_roots, sweep_stale_run_dirs
from rke2_manager.jobs.reaper import (
    dead_workers_jobs,
    expired_jobs,
    needs_maintenance,
    reap_expired,
    recover_dead_workers,
    start_queued,
)
from rke2_manager.jobs.runner.fencing import Claim, StopSignal
from rke2_manager.jobs.runner.listener import Listener
from rke2_manager.jobs.runner.run import execute
from rke2_manager.jobs.stopping import (
    boot_id,
    end_local_run,
    machine_id,
    machine_prefix,
    on_this_boot,
    pid_alive,
)
from rke2_manager.models import Cluster, Job, JobStatus, utcnow

log = logging.getLogger(__name__)


class Worker:
    """Runs up to ``worker_concurrency`` jobs at once in threads."""

    def __init__(self, ctx: AppContext, worker_id: str | None = None) -> None:
        self.ctx = ctx
        # host:machine:boot:pid:nonce — lets a restarted worker on the same machine tell that the
        # owner of a running job is gone (other boot, or dead pid) without waiting for its lease.
        self.machine = machine_prefix()
        self.id = worker_id or f"{self.machine}{boot_id()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._running: dict[int, tuple[threading.Thread, StopSignal]] = {}
        self._guard = threading.Lock()
        self._thread: threading.Thread | None = None
        self._listener: Listener | None = None

    # lifecycle ----------------------------------------------------------------------------------
    def start(self) -> None:
        try:
            if machine_id():  # without a machine id, other hosts' ids could look like ours
                self.recover()
        except Exception:
            log.exception("worker %s: start-up recovery failed; leases will expire", self.id)
        for root in run_dir_roots(self.ctx.settings.data_dir):
            sweep_stale_run_dirs(root, pid_alive)
        if self.ctx.db.engine.dialect.name == "postgresql":
            self._listener = Listener(self.ctx.db.engine, self.wake)
            self._listener.start()
        self._thread = threading.Thread(target=self._loop, name=f"worker-{self.id}", daemon=True)
        self._thread.start()

    @staticmethod
    def _alive(worker_id: str) -> bool:
        parts = worker_id.rsplit(":", 3)  # machine prefix, boot, pid, nonce
        if len(parts) != 4 or not parts[2].isdigit():
            return True  # not ours to judge
        if parts[1] != boot_id():
            return False  # this machine has rebooted since
        return int(parts[2]) == os.getpid() or pid_alive(int(parts[2]))

    def recover(self) -> list[int]:
        """End the runs of this machine's dead workers' jobs (orphans found by their tags),
        then the jobs themselves, without waiting for their leases."""
        with self.ctx.db.read_session() as session:
            jobs = dead_workers_jobs(session, self._alive)
        ended = {j.id for j in jobs if end_local_run(j, self.ctx.settings.kill_grace)}
        with self.ctx.db.transaction() as session:
            recovered = recover_dead_workers(session, self.ctx.settings, jobs, ended)
        if recovered:
            log.warning("worker %s: ended jobs of dead workers: %s", self.id, recovered)
        return recovered

    def maintain(self) -> None:
        """Reclaim expired leases and start queued jobs of idle clusters."""
        with self.ctx.db.read_session() as session:
            if not needs_maintenance(session):
                return
            expired = expired_jobs(session)
        # a run on this machine is ended before its lock moves on; one elsewhere is fenced
        ended = {
            j.id
            for j in expired
            if on_this_boot(j.worker_id) and end_local_run(j, self.ctx.settings.kill_grace)
        }
        with self.ctx.db.transaction() as session:
            reaped = reap_expired(session, self.ctx.settings, ended)
        with self.ctx.db.transaction() as session:
            started = start_queued(session, self.ctx.settings)
        if reaped:
            log.warning("worker %s: reclaimed expired locks of jobs %s", self.id, reaped)
        if reaped or started:
            self.ctx.wake_workers()

    def wake(self) -> None:
        self._wake.set()

    def stop(self, grace: float | None = None) -> None:
        """Shut down: stop claiming, let running jobs finish for ``grace`` seconds
        (``RKE2M_SHUTDOWN_GRACE``), then end their runs; each such job fails saying so, and its
        lock passes on only after its run has ended."""
        settings = self.ctx.settings
        grace = settings.shutdown_grace if grace is None else grace
        self._stopping.set()
        self._wake.set()
        deadline = time.monotonic() + grace
        with self._guard:
            running = list(self._running.values())
        for thread, _ in running:
            thread.join(max(0.0, deadline - time.monotonic()))
        for thread, signal in running:
            if thread.is_alive():
                signal.stop(f"worker {self.id} shut down while the job ran")
        for thread, _ in running:
            thread.join(settings.kill_grace + 30)
        if self._thread is not None:
            self._thread.join(30)
        if self._listener is not None:
            self._listener.stop()

    def stop_job(self, job_id: int, reason: str, status: JobStatus = JobStatus.FAILED) -> bool:
        """Ask a job running here to end its run and settle; False if it does not run here."""
        with self._guard:
            entry = self._running.get(job_id)
        if entry is None:
            return False
        entry[1].stop(reason, status)
        return True

    @property
    def busy(self) -> int:
        with self._guard:
            return len(self._running)

    # claiming -----------------------------------------------------------------------------------
    def claim(self) -> Claim | None:
        """Take one job that holds its cluster's lock and that no worker runs yet.

        The cluster row is locked before the job row, in the same order as every other writer
        (requests, cancel, reaper), so a claim can never deadlock with them.
        """
        # A plain read first: most polls find nothing, and on SQLite the write transaction
        # below takes the database's write lock.
        with self.ctx.db.read_session() as session:
            waiting = session.scalar(
                select(Job.id).where(Job.status == JobStatus.RUNNING, Job.worker_id.is_(None))
            )
        if waiting is None:
            return None
        with self.ctx.db.transaction() as session:
            candidates = session.execute(
                select(Job.id, Job.cluster_id)
                .where(Job.status == JobStatus.RUNNING, Job.worker_id.is_(None))
                .order_by(Job.id)
                .limit(10)
            ).all()
            for job_id, cluster_id in candidates:
                cluster = session.scalars(
                    select(Cluster)
                    .where(Cluster.id == cluster_id, Cluster.current_job_id == job_id)
                    .with_for_update(skip_locked=True, key_share=True)
                ).first()
                job = session.get(Job, job_id, populate_existing=True)
                if (
                    cluster is None
                    or job is None
                    or job.worker_id is not None
                    or job.status != JobStatus.RUNNING
                    or job.fencing_token is None
                ):
                    continue
                # the lease now runs from the claim: the worker that renews it has it from here
                if not renew_cluster_lock(
                    session, cluster_id, job.id, job.fencing_token, self.ctx.settings.lock_ttl
                ):
                    continue
                job.worker_id = self.id
                job.started_at = utcnow()
                return Claim(job.id, job.cluster_id, job.fencing_token)
            return None

    def run_once(self) -> bool:
        """Claim and start one job if there is room; True if one was started."""
        if self.busy >= self.ctx.settings.worker_concurrency:
            return False
        claim = self.claim()
        if claim is None:
            return False
        signal = StopSignal()
        thread = threading.Thread(
            target=self._run, args=(claim, signal), name=f"job-{claim.job_id}", daemon=True
        )
        with self._guard:  # started under the guard: stop() never sees an unstarted thread
            self._running[claim.job_id] = (thread, signal)
            thread.start()
        return True

    def _run(self, claim: Claim, signal: StopSignal) -> None:
        renewer = threading.Thread(target=self._renew, args=(claim, signal), daemon=True)
        renewer.start()
        try:
            execute(self.ctx, claim, signal)
        finally:
            with self._guard:
                self._running.pop(claim.job_id, None)
            signal.set()  # also ends the renewer
            self.wake()  # a G3 successor may now hold the lock

    def _renew(self, claim: Claim, signal: StopSignal) -> None:
        """Renew the lease every TTL/3; in between, check every second that the lock is still
        ours and that no one asked the job to stop (cancel, force-unlock), and stop the run as
        soon as either happens."""
        settings = self.ctx.settings
        renewed = checked = time.monotonic()
        while not signal.wait(min(settings.lock_check_interval, settings.lock_ttl / 3)):
            if time.monotonic() - checked > settings.lock_ttl:
                # a whole lease without a word from the database (it was away, or this process
                # was paused): another worker may hold the lock now, so stop changing nodes at
                # once (their fences would refuse us anyway)
                log.error(
                    "job %s: no lease check succeeded for %.0f s (database away, or this "
                    "process paused); ending its run",
                    claim.job_id,
                    time.monotonic() - checked,
                )
                signal.stop("no contact with the database for longer than its lease")
                return
            try:
                if time.monotonic() - renewed >= settings.lock_ttl / 3:
                    with self.ctx.db.transaction() as session:
                        renew_cluster_lock(
                            session,
                            claim.cluster_id,
                            claim.job_id,
                            claim.token,
                            settings.lock_ttl,
                        )
                    renewed = time.monotonic()
                with self.ctx.db.read_session() as session:
                    held = session.execute(
                        select(Job.stop_status, Job.stop_reason)
                        .join(Cluster, Cluster.current_job_id == Job.id)
                        .where(
                            Job.id == claim.job_id,
                            Cluster.id == claim.cluster_id,
                            Cluster.lock_token == claim.token,
                        )
                    ).first()
            except Exception as exc:
                log.warning("job %s: lease check failed (%s); will retry", claim.job_id, exc)
                continue
            checked = time.monotonic()
            if held is None:
                log.warning("job %s lost its lock; ending its run", claim.job_id)
                signal.stop("lost the cluster lock")
                return
            if held.stop_status is not None:
                log.info("job %s: asked to stop (%s); ending its run", claim.job_id, held[1])
                signal.stop(held.stop_reason or "stopped", JobStatus(held.stop_status))
                return

    def _loop(self) -> None:
        last_maintenance = 0.0
        while not self._stopping.is_set():
            if time.monotonic() - last_maintenance >= self.ctx.settings.maintenance_interval:
                last_maintenance = time.monotonic()
                try:
                    self.maintain()
                except Exception:
                    log.exception("worker %s: maintenance failed", self.id)
            try:
                started = self.run_once()
            except Exception:
                log.exception("worker %s: claim failed", self.id)
                started = False
            if started:
                continue
            self._wake.wait(self.ctx.settings.worker_poll_interval)
            self._wake.clear()
