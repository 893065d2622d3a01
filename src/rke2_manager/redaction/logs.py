"""The log border: every record this process creates is masked against the secrets it has
decrypted (the :data:`REGISTRY`, fed by ``SecretBox.decrypt``) and the service's key."""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

from rke2_manager.redaction.core import MIN_SECRET, Redactor, secret_parts


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
