"""Secrets never stored or logged in clear: a Redactor, and the two borders that apply it.

- :func:`install_session_redaction` hooks a session factory's ``before_flush``: every new or
  changed Job (``reason``, ``warnings``), Node (``status_reason``), JobLogLine (``text``) and
  AuditEntry (``detail``, recursively) has the secrets of its cluster (:func:`cluster_secrets`)
  and the service's key material replaced by ``********`` before it reaches the database.
- :func:`install_log_redaction` redacts every log record of the process against the secrets
  this process has decrypted (:data:`REGISTRY`, fed by ``SecretBox.decrypt``) and the key.

A secret is redacted in its raw, JSON-escaped (once and twice), Python-repr and shell-quoted
forms; a multi-line secret (an SSH private key) also line by line, for every line of at least
:data:`MIN_LINE` characters. Secrets shorter than :data:`MIN_SECRET` characters are ignored:
replacing them would garble ordinary text without hiding anything worth hiding.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
import shlex
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from sqlalchemy import event, inspect, select
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.orm.base import NO_VALUE
from sqlalchemy.orm.util import identity_key

from rke2_manager.models import AuditEntry, Cluster, Job, JobLogLine, Node

if TYPE_CHECKING:
    from rke2_manager.vault import SecretBox

MASK = "********"
MIN_SECRET = 4
MIN_LINE = 8
_MAX_DEPTH = 32
_KUBECONFIG_PRIVATE = re.compile(
    r"^\s*-?\s*(client-key-data|client-key|token|password|id-token|refresh-token|"
    r"client-secret|access-token)\s*:\s*(?P<value>.+?)\s*$",
    re.MULTILINE,
)


def _forms(secret: str) -> set[str]:
    once = json.dumps(secret)[1:-1]
    return {
        secret,
        once,
        json.dumps(once)[1:-1],
        repr(secret)[1:-1],
        shlex.quote(secret),
        json.dumps(secret, ensure_ascii=False)[1:-1],
    }


class Redactor:
    """Replaces every occurrence of a set of secrets (in every form above) with ``********``."""

    def __init__(self, secrets: Iterable[str]) -> None:
        forms: set[str] = set()
        for secret in secrets:
            if not isinstance(secret, str) or len(secret.strip()) < MIN_SECRET:
                continue
            forms |= _forms(secret)
            forms |= _forms(secret.strip())
            if "\n" in secret.strip():
                for line in secret.splitlines():
                    if len(line.strip()) >= MIN_LINE:
                        forms |= _forms(line.strip())
        ordered = sorted((f for f in forms if len(f) >= MIN_SECRET), key=len, reverse=True)
        self._pattern = re.compile("|".join(map(re.escape, ordered))) if ordered else None

    def __bool__(self) -> bool:
        return self._pattern is not None

    def text(self, text: str) -> str:
        """``text`` with every secret masked."""
        if self._pattern is None or not text:
            return text
        return self._pattern.sub(MASK, text)

    def value(self, value: Any, _depth: int = 0) -> Any:
        """A JSON-like value with every string (keys too) masked; the input is not changed."""
        if isinstance(value, str):
            return self.text(value)
        if _depth >= _MAX_DEPTH and isinstance(value, dict | list):
            return self.text(json.dumps(value, default=str)[:4096])
        if isinstance(value, dict):
            return {self.value(k, _depth + 1): self.value(v, _depth + 1) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.value(v, _depth + 1) for v in value]
        return value


def secret_parts(plain: str) -> list[str]:
    """What to redact of one decrypted value: a kubeconfig's private fields (and the PEM key
    inside ``client-key-data``), a JSON object's string leaves, else the value itself."""
    if "apiVersion" in plain and "clusters:" in plain:
        parts = [m.group("value").strip("'\"") for m in _KUBECONFIG_PRIVATE.finditer(plain)]
        for part in list(parts):
            try:
                decoded = base64.b64decode(part, validate=True).decode()
            except (binascii.Error, UnicodeDecodeError, ValueError):
                continue
            if "PRIVATE KEY" in decoded:
                parts.append(decoded)
        return parts
    if plain.startswith("{"):
        try:
            loaded = json.loads(plain)
        except (ValueError, RecursionError):
            return [plain]
        if isinstance(loaded, dict):
            return [s for v in loaded.values() for s in _leaves(v)]
    return [plain]


def _leaves(value: Any) -> list[str]:
    if isinstance(value, list):
        return [s for v in value for s in _leaves(v)]
    if value is None or isinstance(value, bool | dict):
        return []
    return [str(value)]


def key_material(box: SecretBox) -> list[str]:
    """The service's own key material: never to be stored or logged anywhere."""
    return box.key_material()


def cluster_secrets(cluster: Cluster, box: SecretBox) -> list[str]:
    """Every secret of ``cluster``: token, SSH private key, secret config values (encrypted
    or, in a legacy row, clear), the kubeconfig's private parts, and the service's key.

    A column that cannot be decrypted with this key is skipped, never raised.
    """
    found = key_material(box)
    for enc in (
        cluster.token_enc,
        cluster.ssh_private_key_enc,
        cluster.rke2_config_secrets_enc,
        cluster.kubeconfig_enc,
    ):
        if enc:
            try:
                found.extend(secret_parts(box.decrypt(enc)))
            except ValueError:
                continue
    found.extend(_legacy_clear_secrets(cluster))
    return found


def _legacy_clear_secrets(cluster: Any) -> list[str]:
    """Values of secret keys a legacy row still holds in its plain ``rke2_config``."""
    from rke2_manager.clusters.rke2config import is_secret_key  # it imports vault, vault us

    config = cluster.rke2_config
    if not isinstance(config, dict):
        return []
    return [
        s for k, v in config.items() if isinstance(k, str) and is_secret_key(k) for s in _leaves(v)
    ]


class SecretRegistry:
    """The secrets this process has decrypted (the most recent ``limit``) plus pinned ones
    (the key material); thread-safe, with its Redactor rebuilt only when the set changes."""

    def __init__(self, limit: int = 512) -> None:
        self._lock = threading.Lock()
        self._limit = limit
        self._recent: OrderedDict[str, None] = OrderedDict()
        self._pinned: set[str] = set()
        self._redactor: Redactor | None = Redactor(())

    def pin(self, secrets: Iterable[str]) -> None:
        with self._lock:
            self._pinned.update(s for s in secrets if len(s) >= MIN_SECRET)
            self._redactor = None

    def remember(self, plain: str) -> None:
        """Add the secret parts of a value just decrypted."""
        parts = [p for p in secret_parts(plain) if len(p.strip()) >= MIN_SECRET]
        with self._lock:
            for part in parts:
                if part in self._recent:
                    self._recent.move_to_end(part)
                    continue
                self._recent[part] = None
                self._redactor = None
                if len(self._recent) > self._limit:
                    self._recent.popitem(last=False)

    def redactor(self) -> Redactor:
        with self._lock:
            if self._redactor is None:
                self._redactor = Redactor([*self._pinned, *self._recent])
            return self._redactor


REGISTRY = SecretRegistry()
"""The process's registry: ``SecretBox`` pins its key here and remembers what it decrypts."""


class RedactingFilter(logging.Filter):
    """Masks the registry's secrets in a record's message, exception and stack text."""

    def __init__(self, registry: SecretRegistry = REGISTRY) -> None:
        super().__init__()
        self.registry = registry

    def filter(self, record: logging.LogRecord) -> bool:
        redactor = self.registry.redactor()
        if not redactor:
            return True
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: leave it to the handler to report
            return True
        masked = redactor.text(message)
        if masked != message:
            record.msg, record.args = masked, ()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redactor.text(record.exc_text)
        if record.stack_info:
            record.stack_info = redactor.text(record.stack_info)
        return True


def install_log_redaction(registry: SecretRegistry = REGISTRY) -> None:
    """Redact every log record this process creates, whatever logger or handler it goes to
    (uvicorn replaces handlers; the record factory stays). Idempotent."""
    current = logging.getLogRecordFactory()
    if getattr(current, "rke2m_redacting", False):
        return
    redacting = RedactingFilter(registry)

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = current(*args, **kwargs)
        redacting.filter(record)
        return record

    factory.rke2m_redacting = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)


# --- the storage border ---------------------------------------------------------------------------
_CACHE = "rke2m_redactors"
_JOB_CLUSTER = "rke2m_job_cluster"


def _cluster_redactor(session: Session, box: SecretBox, target: Cluster | int | None) -> Redactor:
    """The Redactor of a cluster (an object, or an id looked up without autoflush), cached per
    session by the cluster's encrypted columns, so a key changed in this session is seen."""
    cluster: Any = target
    if isinstance(target, int):
        cluster = session.identity_map.get(identity_key(Cluster, target))
        if cluster is None:
            row = session.execute(
                select(
                    Cluster.token_enc,
                    Cluster.ssh_private_key_enc,
                    Cluster.rke2_config_secrets_enc,
                    Cluster.kubeconfig_enc,
                    Cluster.rke2_config,
                ).where(Cluster.id == target)
            ).one_or_none()
            cluster = None if row is None else SimpleNamespace(**row._asdict())
    if cluster is None:
        return _cached(session, ("box",), lambda: Redactor(key_material(box)))
    key = (
        cluster.token_enc,
        cluster.ssh_private_key_enc,
        cluster.rke2_config_secrets_enc,
        cluster.kubeconfig_enc,
        *_legacy_clear_secrets(cluster),
    )
    return _cached(session, key, lambda: Redactor(cluster_secrets(cluster, box)))


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
        _set(row, "warnings", r.value, row.warnings)
    elif isinstance(row, Node):
        r = _cluster_redactor(session, box, _node_cluster(row))
        _set(row, "status_reason", r.text, row.status_reason)
    elif isinstance(row, JobLogLine):
        r = _cluster_redactor(session, box, _cluster_of_job(session, row.job_id))
        _set(row, "text", r.text, row.text)
    elif isinstance(row, AuditEntry):
        cid = row.cluster_id
        r = _cluster_redactor(session, box, cid or _cluster_of_job(session, row.job_id))
        _set(row, "detail", r.value, row.detail)


def _set(row: Any, name: str, redact: Callable[[Any], Any], value: Any) -> None:
    if value is None:
        return
    masked = redact(value)
    if masked != value:
        setattr(row, name, masked)


def install_session_redaction(factory: sessionmaker[Session], box: SecretBox) -> None:
    """Redact, in every session ``factory`` makes, the rows listed above before each flush."""

    def before_flush(session: Session, _context: Any, _instances: Any) -> None:
        with session.no_autoflush:
            for row in [*session.new, *session.dirty]:
                _redact_row(session, box, row)

    event.listen(factory, "before_flush", before_flush)
