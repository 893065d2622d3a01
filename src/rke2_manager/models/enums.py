"""The values of the status, role and operation columns (checked by the database too)."""

from __future__ import annotations

import enum


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
