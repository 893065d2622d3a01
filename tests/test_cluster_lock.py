"""The lock module: fencing tokens, release only by the holder, renewal."""

from __future__ import annotations

import pytest

from rke2_manager.cluster_lock import (
    acquire_cluster_lock,
    lock_cluster_row,
    release_cluster_lock,
    renew_cluster_lock,
)
from rke2_manager.db import Database, ReadOnlySession
from rke2_manager.errors import ClusterBusy
from rke2_manager.models import Cluster, Job
from tests.factories import make_cluster


def acquire(db: Database, cid: int) -> tuple[int, int]:
    with db.transaction() as s:
        cluster = lock_cluster_row(s, cid)
        job = Job(cluster_id=cid, operation="install", status="queued")
        s.add(job)
        token = acquire_cluster_lock(s, cluster, job, ttl=60)
        return job.id, token


def lock_row(db: Database, cid: int) -> Cluster:
    with db.read_session() as s:
        cluster = s.get(Cluster, cid)
        assert cluster is not None
        return cluster


def test_fencing_token_grows_and_stale_holder_cannot_release(db: Database) -> None:
    cid = make_cluster(db)
    job1, token1 = acquire(db, cid)
    with db.transaction() as s, pytest.raises(ClusterBusy) as busy:
        acquire_cluster_lock(
            s,
            lock_cluster_row(s, cid),
            Job(cluster_id=cid, operation="install", status="queued"),
            ttl=60,
        )
    assert (
        busy.value.detail == f"Cluster is busy with operation 'install' (job {job1}). Please wait."
    )

    with db.transaction() as s:
        assert release_cluster_lock(s, cid, job1, token1)
    job2, token2 = acquire(db, cid)
    assert token2 == token1 + 1
    with db.transaction() as s:  # the old holder, stale token: changes nothing
        assert not release_cluster_lock(s, cid, job1, token1)
        assert not renew_cluster_lock(s, cid, job1, token1, ttl=60)
        assert not release_cluster_lock(s, cid, job2, token1)
    row = lock_row(db, cid)
    assert (row.operation_status, row.current_job_id, row.lock_token) == ("running", job2, token2)

    before = row.lock_expires_at
    with db.transaction() as s:
        assert renew_cluster_lock(s, cid, job2, token2, ttl=600)
    after = lock_row(db, cid).lock_expires_at
    assert before is not None and after is not None and after > before
    with db.transaction() as s:
        assert release_cluster_lock(s, cid, job2, token2)
    row = lock_row(db, cid)
    assert (row.operation_status, row.current_job_id, row.operation_locked_by) == (
        "idle",
        None,
        None,
    )
    assert row.operation_started_at is None and row.lock_expires_at is None


def test_failed_transaction_leaves_neither_job_nor_lock(db: Database) -> None:
    cid = make_cluster(db)
    with pytest.raises(RuntimeError), db.transaction() as s:
        cluster = lock_cluster_row(s, cid)
        job = Job(cluster_id=cid, operation="install", status="queued")
        s.add(job)
        acquire_cluster_lock(s, cluster, job, ttl=60)
        raise RuntimeError("crash between acquire and commit")
    row = lock_row(db, cid)
    assert (row.operation_status, row.current_job_id, row.lock_token) == ("idle", None, 0)
    with db.read_session() as s:
        assert s.query(Job).count() == 0


def test_a_read_session_cannot_write(db: Database) -> None:
    """Writes go through ``Database.transaction()``; a change flushed through a read session
    raises (and, to mypy, a ReadSession is not the WriteSession write services take)."""
    cid = make_cluster(db)
    with db.read_session() as session:
        cluster = session.get(Cluster, cid)
        assert cluster is not None
        cluster.name = "renamed"
        with pytest.raises(ReadOnlySession, match="a read session cannot write"):
            session.flush()
        session.rollback()
    with db.read_session() as session:
        assert session.get(Cluster, cid).name != "renamed"  # type: ignore[union-attr]
