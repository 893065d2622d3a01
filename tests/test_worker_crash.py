"""Workers that die or stall: leases expire, locks are reclaimed, a stale worker writes nothing.

The worker under test is a real OS process (``rke2-manager worker``) killed with real signals.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from rke2_manager import migrate
from rke2_manager.config import Settings
from rke2_manager.context import AppContext
from rke2_manager.db import Database
from rke2_manager.jobs.create import start_scale_add
from rke2_manager.jobs.reaper import LEASE_EXPIRED
from rke2_manager.jobs.runner.worker import Worker
from rke2_manager.models import Cluster, Job, JobLogLine, Node
from rke2_manager.validation import NodeIn
from rke2_manager.vault import SecretBox
from tests.factories import FakeProber, make_cluster, write_playbooks

TTL = 3.0


@pytest.fixture
def db(settings: Settings) -> Iterator[Database]:
    """A database built by the migrations, as the ``worker`` command expects."""
    database = Database(settings.database_url)
    migrate.upgrade(database.engine)
    yield database
    database.dispose()


@pytest.fixture
def crash_settings(settings: Settings, playbook_dir: Path, tmp_path: Path) -> Settings:
    write_playbooks(playbook_dir, mode="slow", operations=("scale_add_masters",))
    settings.lock_ttl = TTL
    settings.lock_check_interval = 0.3
    settings.maintenance_interval = 0.3
    settings.ansible_extra_vars = {"sleep_seconds": 20, "done_marker": str(tmp_path / "done")}
    return settings


def spawn_worker(settings: Settings) -> subprocess.Popen[bytes]:
    """Start ``rke2-manager worker`` in its own session; return once it is up."""
    env = {
        **os.environ,
        "RKE2M_DATABASE_URL": settings.database_url,
        "RKE2M_SECRET_KEY": settings.secret_key,
        "RKE2M_DATA_DIR": str(settings.data_dir),
        "RKE2M_PLAYBOOK_DIR": str(settings.playbook_dir),
        "RKE2M_ALLOWED_NETWORKS": ",".join(settings.allowed_networks),
        "RKE2M_LOCK_TTL": str(settings.lock_ttl),
        "RKE2M_LOCK_CHECK_INTERVAL": "0.3",
        "RKE2M_WORKER_POLL_INTERVAL": "0.1",
        "RKE2M_ANSIBLE_EXTRA_VARS": json.dumps(settings.ansible_extra_vars),
    }
    log = Path(settings.data_dir).parent / "worker.log"
    # its own session: a signal to the group reaches the worker and its ansible-playbook
    proc = subprocess.Popen(
        [sys.executable, "-m", "rke2_manager", "worker"],
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=open(log, "ab"),  # noqa: SIM115 - the child owns it
    )
    wait_for(lambda: log.exists() and " started" in log.read_text(), 60, "the worker process")
    return proc


def wait_for(predicate, timeout: float = 60, what: str = "condition"):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def job_row(db: Database, job_id: int) -> Job:
    with db.read_session() as s:
        job = s.get(Job, job_id)
        assert job is not None
        return job


def cluster_row(db: Database, cid: int) -> Cluster:
    with db.read_session() as s:
        cluster = s.get(Cluster, cid)
        assert cluster is not None
        return cluster


def log_lines(db: Database, job_id: int) -> int:
    with db.read_session() as s:
        return s.scalar(select(func.count(JobLogLine.id)).where(JobLogLine.job_id == job_id)) or 0


def start_jobs(db: Database, settings: Settings) -> tuple[int, int]:
    """A cluster whose lock a (slow) job adding server m2 holds."""
    cid = make_cluster(db, nodes=[("m1", "127.0.50.1", "server", "ACTIVE")])
    with db.transaction() as s:
        first = start_scale_add(
            s,
            settings,
            cid,
            [NodeIn(hostname="m2", ip="127.0.50.2", role="server")],
            "test",
            None,
            FakeProber(),
        ).job.id
    return cid, first


def queue_add(db: Database, settings: Settings, cid: int) -> int:
    with db.transaction() as s:
        accepted = start_scale_add(
            s,
            settings,
            cid,
            [NodeIn(hostname="w2", ip="127.0.50.3", role="agent")],
            "test",
            None,
            FakeProber(),
            on_busy="queue",
        )
        return accepted.job.id


def local_worker(settings: Settings, db: Database) -> Worker:
    ctx = AppContext(settings, db, SecretBox.from_settings(settings), FakeProber())
    worker = Worker(ctx)
    ctx.wakers.append(worker)
    return worker


def running_in(proc: subprocess.Popen[bytes], db: Database, job_id: int) -> bool:
    job = job_row(db, job_id)
    return (
        job.worker_id is not None and f":{proc.pid}:" in job.worker_id and log_lines(db, job_id) > 0
    )


def test_sigkilled_worker_lock_is_reclaimed_after_ttl(
    crash_settings: Settings, db: Database
) -> None:
    settings = crash_settings
    proc = spawn_worker(settings)
    cid, first = start_jobs(db, settings)
    try:
        wait_for(lambda: running_in(proc, db, first), what="the worker process to run the job")
        # the survivor starts while the victim is alive: its start-up recovery leaves it alone
        survivor = local_worker(settings, db)
        survivor.start()
        queued = queue_add(db, settings, cid)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
        lease_end = cluster_row(db, cid).lock_expires_at
        assert lease_end is not None
        assert job_row(db, first).status == "running"  # nothing happens before the TTL
        ended = wait_for(
            lambda: job_row(db, first).finished_at and job_row(db, first), 30, "the lease to expire"
        )
        assert ended.finished_at is not None and ended.finished_at >= lease_end  # not before
        assert (ended.status, ended.reason) == ("failed", LEASE_EXPIRED)
        with db.read_session() as s:
            m2 = s.scalars(select(Node).where(Node.hostname == "m2")).one()
            assert (m2.status, m2.status_reason) == ("FAILED", f"state unknown: {LEASE_EXPIRED}")
        nxt = wait_for(
            lambda: job_row(db, queued).finished_at and job_row(db, queued),
            60,
            "the queued job to run",
        )
        assert nxt.status == "succeeded"
        assert cluster_row(db, cid).operation_status == "idle"
        survivor.stop()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)


def test_start_up_recovery_ends_a_dead_workers_jobs_at_once(
    crash_settings: Settings, db: Database
) -> None:
    settings = crash_settings
    settings.lock_ttl = 600  # recovery must not wait for the lease
    proc = spawn_worker(settings)
    cid, first = start_jobs(db, settings)
    try:
        wait_for(lambda: running_in(proc, db, first), what="the worker process to run the job")
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
        survivor = local_worker(settings, db)
        survivor.start()
        job = job_row(db, first)
        assert job.status == "failed"
        assert job.reason == (
            f"worker {job.worker_id} stopped while the job ran (found at start-up; "
            "its run was ended)"
        )
        assert cluster_row(db, cid).operation_status == "idle"
        survivor.stop()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)


def test_paused_worker_cannot_touch_the_new_holders_lock(
    crash_settings: Settings, db: Database, tmp_path: Path
) -> None:
    settings = crash_settings
    proc = spawn_worker(settings)
    cid, first = start_jobs(db, settings)
    try:
        wait_for(lambda: running_in(proc, db, first), what="the worker process to run the job")
        survivor = local_worker(settings, db)
        survivor.start()
        write_playbooks(settings.playbook_dir, mode="slow", operations=("scale_add_workers",))
        queued = queue_add(db, settings, cid)
        os.killpg(proc.pid, signal.SIGSTOP)
        # the survivor reclaims the lease and starts the queued job (which runs 20 s)
        wait_for(
            lambda: job_row(db, queued).status == "running" and log_lines(db, queued) > 0,
            60,
            "the queued job to take over",
        )
        stale = job_row(db, first)
        assert (stale.status, stale.reason) == ("failed", LEASE_EXPIRED)
        holder = cluster_row(db, cid)
        assert holder.current_job_id == queued
        lines_before = log_lines(db, first)

        os.killpg(proc.pid, signal.SIGCONT)
        # the resumed worker finds it lost the lock, stops its run and exits the job quietly
        time.sleep(3)
        after = cluster_row(db, cid)
        assert (after.current_job_id, after.lock_token, after.operation_status) == (
            queued,
            holder.lock_token,
            "running",
        )
        again = job_row(db, first)
        assert (again.status, again.reason, again.finished_at) == (
            "failed",
            LEASE_EXPIRED,
            stale.finished_at,
        )
        assert log_lines(db, first) == lines_before
        assert not (tmp_path / "done").exists()  # the paused run never reached its end
        survivor.stop()
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
