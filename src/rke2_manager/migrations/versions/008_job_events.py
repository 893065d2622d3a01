"""Job events (task start/end per host, node status) sharing one sequence with log lines.

Revision ID: 008_job_events
Revises: 007_run_processes
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "008_job_events"
down_revision = "007_run_processes"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("event_seq", sa.Integer(), nullable=False, server_default="0"))
    # jobs that already have output go on after their last line
    op.execute(
        "UPDATE jobs SET event_seq = (SELECT COALESCE(MAX(seq), 0) FROM job_log_lines "
        "WHERE job_log_lines.job_id = jobs.id)"
    )
    op.create_table(
        "job_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["job_id"],
            ["jobs.id"],
            name=op.f("fk_job_events_job_id_jobs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_job_events")),
        sa.UniqueConstraint("job_id", "seq", name=op.f("uq_job_events_job_id_seq")),
    )


def downgrade() -> None:
    op.drop_table("job_events")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("event_seq")
