"""Secrets never stored or logged in clear: a Redactor, and the two borders that apply it.

- storage (:func:`install_session_redaction`): a session factory's ``before_flush`` masks the
  secrets of their cluster in job, node, log and audit rows (``Database.attach_redaction``);
- logs (:func:`install_log_redaction`): every log record is masked against what the process
  has decrypted and the service's key (the CLI's logging setup installs it).
"""

from rke2_manager.redaction.core import (
    MASK,
    Redactor,
    cluster_secrets,
    key_material,
    secret_parts,
)
from rke2_manager.redaction.logs import (
    REGISTRY,
    RedactingFilter,
    SecretRegistry,
    install_log_redaction,
)
from rke2_manager.redaction.storage import install_session_redaction

__all__ = [
    "MASK",
    "REGISTRY",
    "RedactingFilter",
    "Redactor",
    "SecretRegistry",
    "cluster_secrets",
    "install_log_redaction",
    "install_session_redaction",
    "key_material",
    "secret_parts",
]
