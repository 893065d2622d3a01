"""Alembic migrations build the schema the models describe, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading

import pytest
from alembic import command
from sqlalchemy import inspect, text
from sqlalchemy.exc import DBAPIError

from rke2_manager import migrate
from rke2_manager.db import make_engine


def test_upgrade_matches_models_and_downgrades(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        migrate.upgrade(engine)
        migrate.check(engine)  # raises if models and migrations disagree
        columns = {c["name"] for c in inspect(engine).get_columns("clusters")}
        assert {
            "operation_status",
            "current_job_id",
            "operation_started_at",
            "operation_locked_by",
            "lock_expires_at",
            "lock_token",
        } <= columns
        with engine.begin() as conn:
            cfg = migrate.alembic_config(engine)
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "002_jobs")
        assert "operation_status" not in {
            c["name"] for c in inspect(engine).get_columns("clusters")
        }
        migrate.upgrade(engine)
        migrate.check(engine)
    finally:
        engine.dispose()


def test_concurrent_upgrades_take_turns(database_url: str) -> None:
    """Several processes starting at once (uvicorn --workers) must not race the migrations."""
    errors: list[BaseException] = []

    def run() -> None:
        engine = make_engine(database_url)
        try:
            migrate.upgrade(engine)
        except BaseException as exc:
            errors.append(exc)
        finally:
            engine.dispose()

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    engine = make_engine(database_url)
    migrate.check(engine)
    engine.dispose()


def test_security_revision_keeps_rows_and_ids_are_never_reused(database_url: str) -> None:
    """006 rebuilds SQLite tables for AUTOINCREMENT: children survive, a freed id stays freed."""
    engine = make_engine(database_url)
    try:
        migrate.upgrade(engine, "005_job_params")
        with engine.begin() as conn:
            ids = []
            for name in ("c1", "c2"):
                cid = conn.execute(
                    text(
                        "INSERT INTO clusters (name, stage, rke2_channel, rke2_config, "
                        "ssh_user, ssh_port, ssh_private_key_enc, token_enc, created_at, "
                        "updated_at, operation_status, lock_token) VALUES (:name, 'new', "
                        "'stable', '{}', 'root', 22, 'k', 't', :now, :now, 'idle', 0) "
                        "RETURNING id"
                    ),
                    {"name": name, "now": "2026-12-01 00:00:00"},
                ).scalar()
                ids.append(cid)
                conn.execute(
                    text(
                        "INSERT INTO nodes (cluster_id, hostname, ip, role, status, "
                        "is_initial_master, created_at, updated_at) VALUES (:id, 'm1', "
                        "'127.0.0.1', 'server', 'PENDING', true, :now, :now)"
                    ),
                    {"id": cid, "now": "2026-12-01 00:00:00"},
                )
        migrate.upgrade(engine)
        migrate.check(engine)
        with engine.begin() as conn:
            assert conn.execute(text("SELECT count(*) FROM nodes")).scalar() == 2
            conn.execute(text("DELETE FROM clusters WHERE id = :id"), {"id": max(ids)})
            assert conn.execute(text("SELECT count(*) FROM nodes")).scalar() == 1
            new_id = conn.execute(
                text(
                    "INSERT INTO clusters (name, stage, rke2_channel, rke2_config, ssh_user, "
                    "ssh_port, ssh_private_key_enc, token_enc, created_at, updated_at, "
                    "operation_status, lock_token, ssh_host_key_checking) VALUES ('c3', 'new', "
                    "'stable', '{}', 'root', 22, 'k', 't', :now, :now, 'idle', 0, true) "
                    "RETURNING id"
                ),
                {"now": "2026-12-01 00:00:00"},
            ).scalar()
        assert new_id is not None and new_id > max(ids)
    finally:
        engine.dispose()


def test_audit_log_is_append_only(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        migrate.upgrade(engine)
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO audit_log (at, actor, action, detail, result) "
                    "VALUES (:now, 'local', 'cluster.create', '{}', 'ok')"
                ),
                {"now": "2026-12-02 00:00:00"},
            )
        for statement in ("UPDATE audit_log SET actor = 'someone else'", "DELETE FROM audit_log"):
            with pytest.raises(DBAPIError, match="audit_log is append-only"), engine.begin() as c:
                c.execute(text(statement))
        with engine.begin() as conn:
            assert conn.execute(text("SELECT actor FROM audit_log")).scalar() == "local"
    finally:
        engine.dispose()
