"""API tokens, encrypted secret config keys, pinned SSH host keys, ids never reused, audit roles
and results.

On SQLite, ``clusters`` and ``jobs`` are rebuilt with AUTOINCREMENT so an id freed by a delete
is never handed out again (PostgreSQL sequences never reuse one). ``migrate.upgrade`` turns
SQLite's foreign keys off around migrations, so the rebuild's DROP cascades nothing.

Revision ID: 006_security
Revises: 005_job_params
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "006_security"
down_revision = "005_job_params"
branch_labels = None
depends_on = None

# The audit log is append-only: the database itself refuses to change or delete its rows.
APPEND_ONLY = {
    "sqlite": [
        f"CREATE TRIGGER audit_log_no_{verb.lower()} BEFORE {verb} ON audit_log "
        "BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END"
        for verb in ("UPDATE", "DELETE")
    ],
    "postgresql": [
        "CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN RAISE EXCEPTION 'audit_log is append-only'; END $$",
        "CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log "
        "FOR EACH ROW EXECUTE FUNCTION audit_log_append_only()",
    ],
}


def upgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    extra = {"recreate": "always", "table_kwargs": {"sqlite_autoincrement": True}} if sqlite else {}
    with op.batch_alter_table("clusters", **extra) as batch:  # type: ignore[arg-type]
        batch.add_column(sa.Column("rke2_config_secrets_enc", sa.Text(), nullable=True))
        batch.add_column(
            sa.Column(
                "ssh_host_key_checking", sa.Boolean(), nullable=False, server_default=sa.true()
            )
        )
    if sqlite:
        with op.batch_alter_table("jobs", **extra) as batch:  # type: ignore[arg-type]
            pass
    with op.batch_alter_table("nodes") as batch:
        batch.add_column(sa.Column("host_key", sa.Text(), nullable=True))
        batch.add_column(sa.Column("host_key_pinned_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("host_key_offered", sa.String(length=128), nullable=True))
    with op.batch_alter_table("audit_log") as batch:
        batch.add_column(sa.Column("role", sa.String(length=16), nullable=True))
        batch.add_column(sa.Column("result", sa.Text(), nullable=False, server_default="ok"))
    for statement in APPEND_ONLY[op.get_bind().dialect.name]:
        op.execute(statement)
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("prefix", sa.String(length=16), nullable=False),
        sa.Column("created_by", sa.String(length=128), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "role IN ('viewer', 'operator', 'admin')", name=op.f("ck_api_tokens_role")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_tokens")),
        sa.UniqueConstraint("name", name=op.f("uq_api_tokens_name")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_api_tokens_token_hash")),
        sqlite_autoincrement=True,
    )


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TRIGGER audit_log_no_update")
        op.execute("DROP TRIGGER audit_log_no_delete")
    else:
        op.execute("DROP TRIGGER audit_log_append_only ON audit_log")
        op.execute("DROP FUNCTION audit_log_append_only()")
    op.drop_table("api_tokens")
    with op.batch_alter_table("audit_log") as batch:
        batch.drop_column("result")
        batch.drop_column("role")
    with op.batch_alter_table("nodes") as batch:
        batch.drop_column("host_key_offered")
        batch.drop_column("host_key_pinned_at")
        batch.drop_column("host_key")
    with op.batch_alter_table("clusters") as batch:
        batch.drop_column("ssh_host_key_checking")
        batch.drop_column("rke2_config_secrets_enc")
