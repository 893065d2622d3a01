"""etcd snapshots as last listed on each server, the snapshot a job saved or restored, and the
snapshot_save, snapshot_delete, restore and forget_node operations.

Revision ID: 010_snapshots
Revises: 009_upgrade
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "010_snapshots"
down_revision = "009_upgrade"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)
BEFORE = [
    "install",
    "scale_add_masters",
    "scale_add_workers",
    "scale_remove_masters",
    "scale_remove_workers",
    "upgrade",
]
OURS = ["snapshot_save", "snapshot_delete", "restore", "forget_node"]


def _operations(operations: list[str]) -> None:
    # SQLite rebuilds the table: keep the ids-never-reused AUTOINCREMENT of 006_security
    sqlite = op.get_bind().dialect.name == "sqlite"
    extra = {"table_kwargs": {"sqlite_autoincrement": True}} if sqlite else {}
    listed = ", ".join(repr(v) for v in operations)
    with op.batch_alter_table("jobs", **extra) as batch:  # type: ignore[arg-type]
        batch.drop_constraint(op.f("ck_jobs_operation"), type_="check")
        batch.create_check_constraint("operation", f"operation IN ({listed})")


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("snapshot", sa.String(length=255), nullable=True))
    _operations([*BEFORE, *OURS])
    op.create_table(
        "snapshot_lists",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("cluster_id", sa.Integer(), nullable=False),
        sa.Column("node_id", sa.Integer(), nullable=False),
        sa.Column("listed_at", TS, nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["cluster_id"],
            ["clusters.id"],
            name=op.f("fk_snapshot_lists_cluster_id_clusters"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["node_id"],
            ["nodes.id"],
            name=op.f("fk_snapshot_lists_node_id_nodes"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["job_id"],
            ["jobs.id"],
            name=op.f("fk_snapshot_lists_job_id_jobs"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_snapshot_lists")),
        sa.UniqueConstraint("node_id", name=op.f("uq_snapshot_lists_node_id")),
    )
    op.create_index(
        op.f("ix_snapshot_lists_cluster_id"), "snapshot_lists", ["cluster_id"], unique=False
    )
    op.create_table(
        "snapshots",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("cluster_id", sa.Integer(), nullable=False),
        sa.Column("node_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("location", sa.Text(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=True),
        sa.Column("taken_at", TS, nullable=True),
        sa.ForeignKeyConstraint(
            ["cluster_id"],
            ["clusters.id"],
            name=op.f("fk_snapshots_cluster_id_clusters"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["node_id"], ["nodes.id"], name=op.f("fk_snapshots_node_id_nodes"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_snapshots")),
        sa.UniqueConstraint("node_id", "name", name=op.f("uq_snapshots_node_id_name")),
    )
    op.create_index(op.f("ix_snapshots_cluster_id"), "snapshots", ["cluster_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_snapshots_cluster_id"), table_name="snapshots")
    op.drop_table("snapshots")
    op.drop_index(op.f("ix_snapshot_lists_cluster_id"), table_name="snapshot_lists")
    op.drop_table("snapshot_lists")
    listed = ", ".join(repr(v) for v in OURS)
    op.execute(f"DELETE FROM jobs WHERE operation IN ({listed})")
    _operations(BEFORE)
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("snapshot")
