"""On PostgreSQL a worker in another process is woken by NOTIFY, not by its next poll."""

from __future__ import annotations

import time

import pytest

from rke2_manager.config import Settings
from rke2_manager.context import AppContext
from rke2_manager.db import Database
from rke2_manager.jobs.create import start_install
from rke2_manager.jobs.runner.worker import Worker
from rke2_manager.models import Job
from rke2_manager.vault import SecretBox
from tests.factories import FakeProber, make_cluster


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_notify_wakes_a_worker_that_polls_rarely(settings: Settings, db: Database) -> None:
    settings.worker_poll_interval = 60  # a poll would take a minute
    settings.maintenance_interval = 60
    # the worker shares nothing with the caller but the database, like another process
    worker = Worker(
        AppContext(
            settings,
            Database(settings.database_url),
            SecretBox.from_settings(settings),
            FakeProber(),
        )
    )
    worker.start()
    try:
        time.sleep(1.0)  # the worker has polled once and now waits; its listener is connected
        cid = make_cluster(db)
        with db.transaction() as s:
            job_id = start_install(s, settings, cid, "test").job.id
        deadline = time.monotonic() + 20
        while True:
            with db.read_session() as s:
                job = s.get(Job, job_id)
                assert job is not None
                if job.worker_id == worker.id:
                    break
            assert time.monotonic() < deadline, "the worker was not woken by NOTIFY"
            time.sleep(0.05)
    finally:
        worker.stop()
        worker.ctx.db.dispose()
