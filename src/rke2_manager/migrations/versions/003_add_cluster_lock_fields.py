"""Add the cluster lock: status, holder job, start time, operation, lease and fencing counter.

Revision ID: 003_add_cluster_lock_fields
Revises: 002_jobs
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "003_add_cluster_lock_fields"
down_revision = "002_jobs"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("clusters") as batch:
        batch.add_column(
            sa.Column(
                "operation_status", sa.String(length=16), nullable=False, server_default="idle"
            )
        )
        batch.add_column(sa.Column("current_job_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("operation_started_at", TS, nullable=True))
        batch.add_column(sa.Column("operation_locked_by", sa.String(length=32), nullable=True))
        batch.add_column(sa.Column("lock_expires_at", TS, nullable=True))
        batch.add_column(sa.Column("lock_token", sa.Integer(), nullable=False, server_default="0"))
        batch.create_foreign_key(
            op.f("fk_clusters_current_job_id_jobs"),
            "jobs",
            ["current_job_id"],
            ["id"],
            ondelete="SET NULL",
        )
        batch.create_check_constraint("operation_status", "operation_status IN ('idle', 'running')")


def downgrade() -> None:
    with op.batch_alter_table("clusters") as batch:
        batch.drop_constraint(op.f("ck_clusters_operation_status"), type_="check")
        batch.drop_constraint(op.f("fk_clusters_current_job_id_jobs"), type_="foreignkey")
        for column in (
            "lock_token",
            "lock_expires_at",
            "operation_locked_by",
            "operation_started_at",
            "current_job_id",
            "operation_status",
        ):
            batch.drop_column(column)
