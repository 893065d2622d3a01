"""Record each job's run processes, stop requests and per-host progress.

Revision ID: 007_run_processes
Revises: 006_security
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "007_run_processes"
down_revision = "006_security"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("run_tag", sa.String(64), nullable=True))
        batch.add_column(sa.Column("run_pid", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("run_pgid", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("run_start_ticks", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("stop_status", sa.String(16), nullable=True))
        batch.add_column(sa.Column("stop_reason", sa.Text(), nullable=True))
        batch.add_column(sa.Column("stop_requested_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("progress", sa.JSON(), nullable=False, server_default="{}"))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        for name in (
            "progress",
            "stop_requested_at",
            "stop_reason",
            "stop_status",
            "run_start_ticks",
            "run_pgid",
            "run_pid",
            "run_tag",
        ):
            batch.drop_column(name)
