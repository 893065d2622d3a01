"""Schema upgrades through Alembic, with the migrations shipped inside the package."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, text

from rke2_manager.db import WRITE_OPTION

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def alembic_config(engine: Engine) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    # ConfigParser interpolation: a literal % (encoded passwords, options=) must be doubled.
    url = engine.url.render_as_string(hide_password=False).replace("%", "%%")
    cfg.set_main_option("sqlalchemy.url", url)
    return cfg


MIGRATION_LOCK_KEY = 0x726B6532  # "rke2": the advisory lock that serialises upgrades


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to ``revision``; safe to run when already there, and from several
    processes at once (they take turns: PostgreSQL advisory lock, SQLite write lock)."""
    cfg = alembic_config(engine)
    with engine.connect() as conn:
        sqlite = conn.dialect.name == "sqlite"
        # A batch migration rebuilds a SQLite table (copy, DROP, rename); with foreign keys on,
        # the DROP would cascade into the child tables. The pragma only takes effect outside a
        # transaction, so it is set on the raw connection before ours begins, and restored.
        if sqlite:
            _pragma_foreign_keys(conn, on=False)
        try:
            with conn.execution_options(**{WRITE_OPTION: True}).begin():
                if not sqlite:
                    conn.execute(
                        text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY}
                    )
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, revision)
        finally:
            if sqlite:
                _pragma_foreign_keys(conn, on=True)


def _pragma_foreign_keys(conn: Connection, on: bool) -> None:
    raw = conn.connection.dbapi_connection
    assert raw is not None
    raw.execute(f"PRAGMA foreign_keys={'ON' if on else 'OFF'}")


def check(engine: Engine) -> None:
    """Raise ``alembic.util.CommandError`` if the models and the migrations disagree."""
    cfg = alembic_config(engine)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.check(cfg)
