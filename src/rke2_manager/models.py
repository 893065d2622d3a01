"""ORM models: Cluster, Node, Job and their log and audit rows, kept together."""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    event,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores them naive)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime")
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime(),
        dict[str, Any]: JSON,
        list[Any]: JSON,
    }


class NodeRole(enum.StrEnum):
    SERVER = "server"
    AGENT = "agent"


class NodeStatus(enum.StrEnum):
    PENDING = "PENDING"
    INSTALLING = "INSTALLING"
    ACTIVE = "ACTIVE"
    FAILED = "FAILED"
    REMOVING = "REMOVING"
    UPGRADING = "UPGRADING"


class JobStatus(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"

    @property
    def is_final(self) -> bool:
        return self in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELED)


class Operation(enum.StrEnum):
    INSTALL = "install"
    SCALE_ADD_MASTERS = "scale_add_masters"
    SCALE_ADD_WORKERS = "scale_add_workers"
    SCALE_REMOVE_MASTERS = "scale_remove_masters"
    SCALE_REMOVE_WORKERS = "scale_remove_workers"
    UPGRADE = "upgrade"
    SNAPSHOT_SAVE = "snapshot_save"
    SNAPSHOT_DELETE = "snapshot_delete"
    RESTORE = "restore"
    FORGET_NODE = "forget_node"
    PREFLIGHT = "preflight"

    @property
    def removes(self) -> bool:
        return self in (
            Operation.SCALE_REMOVE_MASTERS,
            Operation.SCALE_REMOVE_WORKERS,
            Operation.FORGET_NODE,
        )


class ClusterStage(enum.StrEnum):
    NEW = "new"
    INSTALLING = "installing"
    READY = "ready"
    FAILED = "failed"


class ApiRole(enum.StrEnum):
    """What a token may do; each role includes the ones before it."""

    VIEWER = "viewer"
    OPERATOR = "operator"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        return list(ApiRole).index(self)


class LockStatus(enum.StrEnum):
    IDLE = "idle"
    RUNNING = "running"


def _in(column: str, values: type[enum.StrEnum]) -> str:
    return f"{column} IN ({', '.join(repr(v.value) for v in values)})"


class Cluster(Base):
    __tablename__ = "clusters"
    __table_args__ = (
        CheckConstraint(_in("stage", ClusterStage), name="stage"),
        CheckConstraint(_in("operation_status", LockStatus), name="operation_status"),
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
        CheckConstraint(_in("role", NodeRole), name="role"),
        CheckConstraint(_in("status", NodeStatus), name="status"),
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


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (
        CheckConstraint(_in("operation", Operation), name="operation"),
        CheckConstraint(_in("status", JobStatus), name="status"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    cluster_id: Mapped[int] = mapped_column(
        ForeignKey("clusters.id", ondelete="CASCADE"), index=True
    )
    operation: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16), index=True)
    reason: Mapped[str | None] = mapped_column(Text)
    targets: Mapped[list[Any]] = mapped_column(default=list)
    """The nodes the job acts on: ``[{"id", "hostname", "ip", "role"}]``, kept after removal."""
    warnings: Mapped[list[Any]] = mapped_column(default=list)
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    """What was asked (nodes, confirmation), to re-check the guardrails when the job starts."""
    requested_by: Mapped[str] = mapped_column(String(128), default="anonymous")
    predecessor_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"))
    worker_id: Mapped[str | None] = mapped_column(String(128))
    fencing_token: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]

    # The run on the worker's machine (see execution/procs.py): every process of it carries
    # RKE2M_RUN=<run_tag> in its environment, so it can be found and ended even after the
    # worker died; pid, process group and start time are of its ansible-playbook.
    run_tag: Mapped[str | None] = mapped_column(String(64))
    run_pid: Mapped[int | None] = mapped_column(Integer)
    run_pgid: Mapped[int | None] = mapped_column(Integer)
    run_start_ticks: Mapped[int | None] = mapped_column(BigInteger)
    """The pid's start time (clock ticks after boot, /proc/<pid>/stat field 22)."""
    stop_status: Mapped[str | None] = mapped_column(String(16))
    """Set by cancel or force-unlock for the worker running the job: end the run, then settle
    with this status and :attr:`stop_reason`."""
    stop_reason: Mapped[str | None] = mapped_column(Text)
    stop_requested_at: Mapped[datetime | None]
    progress: Mapped[dict[str, Any]] = mapped_column(default=dict)
    """Per host of the run: ``{"task": <task it is in, or null>, "since": <ISO time>}``."""
    event_seq: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    """The last id given to one of the job's log lines or events (one sequence for both, so
    ``GET /api/jobs/{id}/events`` ids are durable and ordered); raised only by
    :func:`rke2_manager.jobs.events.reserve`."""
    snapshot: Mapped[str | None] = mapped_column(String(255))
    """The etcd snapshot the job saved (a save, the automatic one before a server removal or
    an upgrade) or restored, by its full name as RKE2 lists it."""
    preflight: Mapped[dict[str, Any] | None]
    """The preflight results of the job's run (preflight, install, scale add), per host:
    ``{"m1": [{"check", "result", "message", "fix", "skipped"}, ...]}``; null if none ran."""


class SnapshotList(Base):
    """When a server's etcd snapshots were last listed (``rke2 etcd-snapshot ls``), by which
    job; goes with the node."""

    __tablename__ = "snapshot_lists"

    id: Mapped[int] = mapped_column(primary_key=True)
    cluster_id: Mapped[int] = mapped_column(
        ForeignKey("clusters.id", ondelete="CASCADE"), index=True
    )
    node_id: Mapped[int] = mapped_column(ForeignKey("nodes.id", ondelete="CASCADE"), unique=True)
    listed_at: Mapped[datetime] = mapped_column(default=utcnow)
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"))


class Snapshot(Base):
    """One etcd snapshot a server held when it was last listed (see :class:`SnapshotList`)."""

    __tablename__ = "snapshots"
    __table_args__ = (UniqueConstraint("node_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    cluster_id: Mapped[int] = mapped_column(
        ForeignKey("clusters.id", ondelete="CASCADE"), index=True
    )
    node_id: Mapped[int] = mapped_column(ForeignKey("nodes.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(255))
    location: Mapped[str] = mapped_column(Text)
    size: Mapped[int | None] = mapped_column(BigInteger)
    taken_at: Mapped[datetime | None]
    """When RKE2 says the snapshot was created."""


class JobLogLine(Base):
    __tablename__ = "job_log_lines"
    __table_args__ = (UniqueConstraint("job_id", "seq"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(Integer)
    text: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class JobEvent(Base):
    """A durable event of a job's run (task start/end per host, node status); its ``seq``
    shares the job's sequence with its log lines (see docs/events.md)."""

    __tablename__ = "job_events"
    __table_args__ = (UniqueConstraint("job_id", "seq"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(16))
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class AuditEntry(Base):
    """Append-only: rows are added, never changed or deleted by the service."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    actor: Mapped[str] = mapped_column(String(128))
    role: Mapped[str | None] = mapped_column(String(16))
    action: Mapped[str] = mapped_column(String(64))
    cluster_id: Mapped[int | None] = mapped_column(Integer, index=True)
    job_id: Mapped[int | None] = mapped_column(Integer)
    result: Mapped[str] = mapped_column(Text, default="ok")
    """``ok``, or the status and message of a refused call (``409 Cluster is busy …``)."""
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)


#: The database refuses to change or delete audit rows (the migration creates the same triggers).
APPEND_ONLY_DDL = {
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


@event.listens_for(AuditEntry.__table__, "after_create")
def _append_only(table: Any, connection: Any, **_: Any) -> None:
    for statement in APPEND_ONLY_DDL.get(connection.dialect.name, []):
        connection.exec_driver_sql(statement)


class ApiToken(Base):
    """An API bearer token: only its SHA-256 is stored; the token is shown once, at creation."""

    __tablename__ = "api_tokens"
    __table_args__ = (
        CheckConstraint(_in("role", ApiRole), name="role"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    """The token's first characters, to recognise it in a list."""
    created_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]
