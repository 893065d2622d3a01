"""Clusters and nodes.

Revision ID: 001_initial
Revises:
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "001_initial"
down_revision = None
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "clusters",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=63), nullable=False),
        sa.Column("stage", sa.String(length=16), nullable=False),
        sa.Column("rke2_version", sa.String(length=64), nullable=True),
        sa.Column("rke2_channel", sa.String(length=32), nullable=False),
        sa.Column("rke2_artifact_dir", sa.String(length=4096), nullable=True),
        sa.Column("rke2_config", sa.JSON(), nullable=False),
        sa.Column("ssh_user", sa.String(length=64), nullable=False),
        sa.Column("ssh_port", sa.Integer(), nullable=False),
        sa.Column("ssh_private_key_enc", sa.Text(), nullable=False),
        sa.Column("ssh_public_key", sa.Text(), nullable=True),
        sa.Column("token_enc", sa.Text(), nullable=False),
        sa.Column("registration_address", sa.String(length=255), nullable=True),
        sa.Column("kubeconfig_enc", sa.Text(), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.CheckConstraint(
            "stage IN ('new', 'installing', 'ready', 'failed')", name=op.f("ck_clusters_stage")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_clusters")),
        sa.UniqueConstraint("name", name=op.f("uq_clusters_name")),
    )
    op.create_table(
        "nodes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("cluster_id", sa.Integer(), nullable=False),
        sa.Column("hostname", sa.String(length=253), nullable=False),
        sa.Column("ip", sa.String(length=45), nullable=False),
        sa.Column("role", sa.String(length=8), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("status_reason", sa.Text(), nullable=True),
        sa.Column("is_initial_master", sa.Boolean(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.CheckConstraint("role IN ('server', 'agent')", name=op.f("ck_nodes_role")),
        sa.CheckConstraint(
            "status IN ('PENDING', 'INSTALLING', 'ACTIVE', 'FAILED', 'REMOVING')",
            name=op.f("ck_nodes_status"),
        ),
        sa.ForeignKeyConstraint(
            ["cluster_id"],
            ["clusters.id"],
            name=op.f("fk_nodes_cluster_id_clusters"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_nodes")),
        sa.UniqueConstraint("cluster_id", "hostname", name=op.f("uq_nodes_cluster_id_hostname")),
        sa.UniqueConstraint("cluster_id", "ip", name=op.f("uq_nodes_cluster_id_ip")),
    )


def downgrade() -> None:
    op.drop_table("nodes")
    op.drop_table("clusters")
