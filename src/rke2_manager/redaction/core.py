"""The Redactor, and what the secrets of a cluster are.

A secret is redacted in its raw, JSON-escaped (once and twice), Python-repr and shell-quoted
forms; a multi-line secret (an SSH private key) also line by line, for every line of at least
:data:`MIN_LINE` characters. Secrets shorter than :data:`MIN_SECRET` characters are ignored:
replacing them would garble ordinary text without hiding anything worth hiding.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import shlex
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rke2_manager.models import Cluster
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
            try:  # masked before it is cut, so no half secret survives the cut
                return self.text(json.dumps(value, default=str))[:4096]
            except (RecursionError, ValueError):
                return f"<{type(value).__name__} nested too deep>"
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
    found.extend(legacy_clear_secrets(cluster))
    return found


def legacy_clear_secrets(cluster: Any) -> list[str]:
    """Values of secret keys a legacy row still holds in its plain ``rke2_config``."""
    from rke2_manager.clusters.rke2config import is_secret_key  # it imports vault, vault us

    config = cluster.rke2_config
    if not isinstance(config, dict):
        return []
    return [
        s for k, v in config.items() if isinstance(k, str) and is_secret_key(k) for s in _leaves(v)
    ]
