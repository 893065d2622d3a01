"""The storage border: a ``before_flush`` hook that masks secrets in the rows a session writes.

Every new or changed Job (``reason``, ``stop_reason``, ``warnings``), Node (``status_reason``),
JobLogLine (``text``), JobEvent (``data``, recursively) and AuditEntry (``detail``, recursively,
and ``result``) has the secrets of its cluster
(:func:`~rke2_manager.redaction.core.cluster_secrets`, which include the service's key
material) replaced by ``********`` before it reaches the database. The cluster's secret columns
are read without autoflush and the Redactors cached per session, keyed by those columns.
"""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from sqlalchemy import event, inspect, select
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.orm.base import NO_VALUE
from sqlalchemy.orm.util import identity_key

from rke2_manager.models import AuditEntry, Cluster, Job, JobEvent, JobLogLine, Node
from rke2_manager.redaction.core import (
    Redactor,
    cluster_secrets,
    key_material,
    legacy_clear_secrets,
)

if TYPE_CHECKING:
    from rke2_manager.vault import SecretBox

_CACHE = "rke2m_redactors"
_JOB_CLUSTER = "rke2m_job_cluster"
_CLUSTER_ROWS = "rke2m_cluster_rows"
_CACHES = (_CACHE, _JOB_CLUSTER, _CLUSTER_ROWS)


def _cluster_redactor(session: Session, box: SecretBox, target: Cluster | int | None) -> Redactor:
    """The Redactor of a cluster (an object, or an id looked up without autoflush), cached per
    session by the cluster's encrypted columns, so a key changed in this session is seen."""
    cluster: Any = target
    if isinstance(target, int):
        cluster = session.identity_map.get(identity_key(Cluster, target))
        if cluster is None:
            cluster = _cluster_row(session, target)
    if cluster is None:
        return _cached(session, ("box",), lambda: Redactor(key_material(box)))
    key = (
        cluster.token_enc,
        cluster.ssh_private_key_enc,
        cluster.rke2_config_secrets_enc,
        cluster.kubeconfig_enc,
        *legacy_clear_secrets(cluster),
    )
    return _cached(session, key, lambda: Redactor(cluster_secrets(cluster, box)))


def _cluster_row(session: Session, cluster_id: int) -> SimpleNamespace | None:
    """The secret columns of a cluster not loaded in the session, read once per transaction."""
    rows: dict[int, SimpleNamespace | None] = session.info.setdefault(_CLUSTER_ROWS, {})
    if cluster_id not in rows:
        row = session.execute(
            select(
                Cluster.token_enc,
                Cluster.ssh_private_key_enc,
                Cluster.rke2_config_secrets_enc,
                Cluster.kubeconfig_enc,
                Cluster.rke2_config,
            ).where(Cluster.id == cluster_id)
        ).one_or_none()
        rows[cluster_id] = None if row is None else SimpleNamespace(**row._asdict())
    return rows[cluster_id]


def _cached(session: Session, key: tuple[Any, ...], build: Callable[[], Redactor]) -> Redactor:
    cache: dict[tuple[Any, ...], Redactor] = session.info.setdefault(_CACHE, {})
    if key not in cache:
        cache[key] = build()
    return cache[key]


def _cluster_of_job(session: Session, job_id: int | None) -> int | None:
    if job_id is None:
        return None
    known: dict[int, int | None] = session.info.setdefault(_JOB_CLUSTER, {})
    if job_id not in known:
        job = session.identity_map.get(identity_key(Job, job_id))
        known[job_id] = (
            job.cluster_id
            if job is not None
            else session.scalar(select(Job.cluster_id).where(Job.id == job_id))
        )
    return known[job_id]


def _node_cluster(node: Any) -> Cluster | int | None:
    loaded = inspect(node).attrs.cluster.loaded_value
    if loaded is not NO_VALUE and loaded is not None:
        return loaded  # type: ignore[no-any-return]
    return node.cluster_id  # type: ignore[no-any-return]


def _redact_row(session: Session, box: SecretBox, row: Any) -> None:
    if isinstance(row, Job):
        r = _cluster_redactor(session, box, row.cluster_id)
        _set(row, "reason", r.text, row.reason)
        _set(row, "stop_reason", r.text, row.stop_reason)
        _set(row, "warnings", r.value, row.warnings)
    elif isinstance(row, Node):
        r = _cluster_redactor(session, box, _node_cluster(row))
        _set(row, "status_reason", r.text, row.status_reason)
    elif isinstance(row, JobLogLine):
        r = _cluster_redactor(session, box, _cluster_of_job(session, row.job_id))
        _set(row, "text", r.text, row.text)
    elif isinstance(row, JobEvent):
        r = _cluster_redactor(session, box, _cluster_of_job(session, row.job_id))
        _set(row, "data", r.value, row.data)
    elif isinstance(row, AuditEntry):
        cid = row.cluster_id
        r = _cluster_redactor(session, box, cid or _cluster_of_job(session, row.job_id))
        _set(row, "detail", r.value, row.detail)
        _set(row, "result", r.text, row.result)


def _set(row: Any, name: str, redact: Callable[[Any], Any], value: Any) -> None:
    if value is None:
        return
    masked = redact(value)
    if masked != value:
        setattr(row, name, masked)


def install_session_redaction(factory: sessionmaker[Any], box: SecretBox) -> None:
    """Redact, in every session ``factory`` makes, the rows listed above before each flush."""

    def before_flush(session: Session, _context: Any, _instances: Any) -> None:
        with session.no_autoflush:
            for row in [*session.new, *session.dirty]:
                _redact_row(session, box, row)

    def forget(session: Session, _transaction: Any) -> None:
        for name in _CACHES:  # a later transaction may see changed secrets
            session.info.pop(name, None)

    event.listen(factory, "before_flush", before_flush)
    event.listen(factory, "after_transaction_end", forget)
