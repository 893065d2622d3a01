"""Audit log of every mutating call.

Revision ID: 004_audit_log
Revises: 003_add_cluster_lock_fields
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "004_audit_log"
down_revision = "003_add_cluster_lock_fields"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=128), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("cluster_id", sa.Integer(), nullable=True),
        sa.Column("job_id", sa.Integer(), nullable=True),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
    )
    op.create_index(op.f("ix_audit_log_cluster_id"), "audit_log", ["cluster_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_audit_log_cluster_id"), table_name="audit_log")
    op.drop_table("audit_log")
