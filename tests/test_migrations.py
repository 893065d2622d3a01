"""Alembic migrations build the schema the models describe, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading

from alembic import command
from sqlalchemy import inspect

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
