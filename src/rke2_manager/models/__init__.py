"""ORM models, one module per concept; every name is importable from here.

Importing this package registers every table on ``Base.metadata`` (Alembic and
``create_all`` rely on it).
"""

from rke2_manager.models.audit import APPEND_ONLY_DDL, AuditEntry
from rke2_manager.models.base import NAMING_CONVENTION, Base, UTCDateTime, one_of, utcnow
from rke2_manager.models.cluster import Cluster, Node
from rke2_manager.models.enums import (
    ApiRole,
    ClusterStage,
    JobStatus,
    LockStatus,
    NodeRole,
    NodeStatus,
    Operation,
)
from rke2_manager.models.job import Job, JobEvent, JobLogLine
from rke2_manager.models.snapshot import Snapshot, SnapshotList
from rke2_manager.models.token import ApiToken

__all__ = [
    "APPEND_ONLY_DDL",
    "NAMING_CONVENTION",
    "ApiRole",
    "ApiToken",
    "AuditEntry",
    "Base",
    "Cluster",
    "ClusterStage",
    "Job",
    "JobEvent",
    "JobLogLine",
    "JobStatus",
    "LockStatus",
    "Node",
    "NodeRole",
    "NodeStatus",
    "Operation",
    "Snapshot",
    "SnapshotList",
    "UTCDateTime",
    "one_of",
    "utcnow",
]
