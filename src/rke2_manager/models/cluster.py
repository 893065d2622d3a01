"""A cluster and its nodes."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, CheckConstraint, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from rke2_manager.models.base import Base, one_of, utcnow
from rke2_manager.models.enums import ClusterStage, LockStatus, NodeRole, NodeStatus


class Cluster(Base):
    __tablename__ = "clusters"
    __table_args__ = (
        CheckConstraint(one_of("stage", ClusterStage), name="stage"),
        CheckConstraint(one_of("operation_status", LockStatus), name="operation_status"),
        # ids are never reused after a delete: a script that stored one can't name another
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(63), unique=True)
    stage: Mapped[str] = mapped_column(String(16), default=ClusterStage.NEW)
    rke2_version: Mapped[str | None] = mapped_column(String(64))
    rke2_channel: Mapped[str] = mapped_column(String(32), default="stable")
    rke2_artifact_dir: Mapped[str | None] = mapped_column(String(4096))
    rke2_config: Mapped[dict[str, Any]] = mapped_column(default=dict)
    """The plain ``config.yaml`` keys; keys that hold secrets live in rke2_config_secrets_enc."""
    rke2_config_secrets_enc: Mapped[str | None] = mapped_column(Text)
    """Encrypted JSON object of the secret ``config.yaml`` keys (write-only in the API)."""
    ssh_user: Mapped[str] = mapped_column(String(64), default="root")
    ssh_port: Mapped[int] = mapped_column(Integer, default=22)
    ssh_private_key_enc: Mapped[str] = mapped_column(Text)
    ssh_public_key: Mapped[str | None] = mapped_column(Text)
    ssh_host_key_checking: Mapped[bool] = mapped_column(Boolean, default=True)
    """Pin each node's SSH host key on first contact (off only for throwaway labs)."""
    token_enc: Mapped[str] = mapped_column(Text)
    registration_address: Mapped[str | None] = mapped_column(String(255))
    kubeconfig_enc: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    # The cluster lock (revision 003_add_cluster_lock_fields); written only by cluster_lock.
    operation_status: Mapped[str] = mapped_column(String(16), default=LockStatus.IDLE)
    current_job_id: Mapped[int | None] = mapped_column(
        ForeignKey("jobs.id", use_alter=True, ondelete="SET NULL")
    )
    operation_started_at: Mapped[datetime | None]
    operation_locked_by: Mapped[str | None] = mapped_column(String(32))
    lock_expires_at: Mapped[datetime | None]
    lock_token: Mapped[int] = mapped_column(Integer, default=0)

    nodes: Mapped[list[Node]] = relationship(
        back_populates="cluster",
        lazy="raise",
        cascade="all, delete-orphan",
        passive_deletes=True,
        order_by="Node.id",
    )


class Node(Base):
    __tablename__ = "nodes"
    __table_args__ = (
        UniqueConstraint("cluster_id", "hostname"),
        UniqueConstraint("cluster_id", "ip"),
        CheckConstraint(one_of("role", NodeRole), name="role"),
        CheckConstraint(one_of("status", NodeStatus), name="status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    cluster_id: Mapped[int] = mapped_column(ForeignKey("clusters.id", ondelete="CASCADE"))
    hostname: Mapped[str] = mapped_column(String(253))
    ip: Mapped[str] = mapped_column(String(45))
    role: Mapped[str] = mapped_column(String(8))
    status: Mapped[str] = mapped_column(String(16), default=NodeStatus.PENDING)
    status_reason: Mapped[str | None] = mapped_column(Text)
    is_initial_master: Mapped[bool] = mapped_column(Boolean, default=False)
    rke2_version: Mapped[str | None] = mapped_column(String(64))
    """The RKE2 version the node was last seen running (its kubelet version); null: not known."""
    host_key: Mapped[str | None] = mapped_column(Text)
    """The SSH host key pinned on first contact, ``<type> <base64>`` (known_hosts form)."""
    host_key_pinned_at: Mapped[datetime | None]
    host_key_offered: Mapped[str | None] = mapped_column(String(128))
    """Fingerprint of a different key the node offered (a job failed on it), until accepted."""
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    cluster: Mapped[Cluster] = relationship(back_populates="nodes", lazy="raise")
