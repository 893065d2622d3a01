"""Upgrades: each node's running RKE2 version, the UPGRADING node status, the upgrade operation.

Revision ID: 009_upgrade
Revises: 008_job_events
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "009_upgrade"
down_revision = "008_job_events"
branch_labels = None
depends_on = None

OPERATIONS = [
    "install",
    "scale_add_masters",
    "scale_add_workers",
    "scale_remove_masters",
    "scale_remove_workers",
]
STATUSES = ["PENDING", "INSTALLING", "ACTIVE", "FAILED", "REMOVING"]


def _in(column: str, values: list[str]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def _checks(operations: list[str], statuses: list[str]) -> None:
    # SQLite rebuilds the table: keep the ids-never-reused AUTOINCREMENT of 006_security
    sqlite = op.get_bind().dialect.name == "sqlite"
    extra = {"table_kwargs": {"sqlite_autoincrement": True}} if sqlite else {}
    with op.batch_alter_table("jobs", **extra) as batch:  # type: ignore[arg-type]
        batch.drop_constraint(op.f("ck_jobs_operation"), type_="check")
        batch.create_check_constraint("operation", _in("operation", operations))
    with op.batch_alter_table("nodes") as batch:
        batch.drop_constraint(op.f("ck_nodes_status"), type_="check")
        batch.create_check_constraint("status", _in("status", statuses))


def upgrade() -> None:
    with op.batch_alter_table("nodes") as batch:
        batch.add_column(sa.Column("rke2_version", sa.String(length=64), nullable=True))
    _checks([*OPERATIONS, "upgrade"], [*STATUSES, "UPGRADING"])


def downgrade() -> None:
    op.execute("UPDATE nodes SET status = 'FAILED' WHERE status = 'UPGRADING'")
    op.execute("DELETE FROM jobs WHERE operation = 'upgrade'")
    _checks(OPERATIONS, STATUSES)
    with op.batch_alter_table("nodes") as batch:
        batch.drop_column("rke2_version")
