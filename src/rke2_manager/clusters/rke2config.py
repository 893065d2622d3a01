"""``rke2.config``: the rules its keys and values follow, and which keys hold secrets.

Rules (checked on every request; a break is a 422 naming the key, never its value):

- at most :data:`MAX_CONFIG_KEYS` keys, each an RKE2 option name matching :data:`KEY_PATTERN`;
- a value is a string (at most :data:`MAX_CONFIG_STRING` characters, no NUL), an integer
  (64-bit), a finite float, a boolean, or a list of at most :data:`MAX_CONFIG_LIST` of those;
  ``null`` means "not set" (in a PATCH it removes a secret key, see below);
- :data:`RESERVED_CONFIG_KEYS` are set by the manager and refused.

Keys that hold secrets (:func:`is_secret_key`: the names in :data:`SECRET_CONFIG_KEYS` and any
name matching :data:`SECRET_KEY_PATTERN`) are stored encrypted in
``Cluster.rke2_config_secrets_enc`` (a SecretBox-encrypted JSON object) and are write-only:
responses list their names in ``rke2.secret_config_keys``, never their values.

Reading never fails: :func:`render_config` shows a stored value that does not fit the rules
(a row written before these rules, or straight into the database) as a truncated JSON string.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from rke2_manager.errors import Conflict
from rke2_manager.models import Cluster
from rke2_manager.vault import SecretBox

KEY_PATTERN = r"^[a-z0-9][a-z0-9-]{0,62}$"
MAX_CONFIG_KEYS = 100
MAX_CONFIG_STRING = 4096
MAX_CONFIG_LIST = 100
_INT_LIMIT = 2**63
_KEY = re.compile(KEY_PATTERN)

RESERVED_CONFIG_KEYS = frozenset(
    {"token", "agent-token", "server", "node-name", "node-ip", "token-file"}
)
"""Set by the manager for every node; a request may not set them."""
SECRET_CONFIG_KEYS = frozenset(
    {
        "token",
        "agent-token",
        "etcd-s3-access-key",
        "etcd-s3-secret-key",
        "etcd-s3-session-token",
        "datastore-endpoint",
    }
)
"""Keys that hold secrets by name (``token`` and ``agent-token`` are also reserved)."""
SECRET_KEY_PATTERN = r"(^|-)(token|password|secret|secret-key|access-key)$"
"""Any other key whose name matches this also holds a secret (e.g. ``my-password``)."""
_SECRET = re.compile(SECRET_KEY_PATTERN)
_RENDER_LIMIT = 256


def is_secret_key(key: str) -> bool:
    """Whether ``key`` holds a secret: stored encrypted, never shown."""
    return key in SECRET_CONFIG_KEYS or bool(_SECRET.search(key))


def _scalar_problem(value: Any) -> str | None:
    """Why ``value`` is not an allowed scalar, or None if it is."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return None if -_INT_LIMIT <= value < _INT_LIMIT else "is an integer out of 64-bit range"
    if isinstance(value, float):
        return None if math.isfinite(value) else "is not a finite number"
    if isinstance(value, str):
        if len(value) > MAX_CONFIG_STRING:
            return f"is longer than {MAX_CONFIG_STRING} characters"
        return "contains a NUL character" if "\x00" in value else None
    if isinstance(value, dict):
        return "is an object; values must be strings, numbers, booleans or lists of them"
    return "is not a string, number, boolean or list"


def value_problem(value: Any) -> str | None:
    """Why ``value`` may not be an ``rke2.config`` value, or None if it may."""
    if value is None:
        return None
    if isinstance(value, list):
        if len(value) > MAX_CONFIG_LIST:
            return f"is a list of more than {MAX_CONFIG_LIST} items"
        for item in value:
            if item is None or isinstance(item, list | dict):
                return "has an item that is not a string, number or boolean (lists are flat)"
            problem = _scalar_problem(item)
            if problem is not None:
                return f"has an item that {problem}"
        return None
    return _scalar_problem(value)


def check_config(config: dict[str, Any], *, reserved: bool = True) -> dict[str, Any]:
    """``config`` if it follows the rules; ValueError naming the first bad key otherwise."""
    if len(config) > MAX_CONFIG_KEYS:
        raise ValueError(f"rke2.config has more than {MAX_CONFIG_KEYS} keys")
    if reserved:
        taken = sorted(RESERVED_CONFIG_KEYS & config.keys())
        if taken:
            raise ValueError(f"rke2.config may not set {', '.join(taken)}: the manager sets them")
    for key, value in config.items():
        if not _KEY.fullmatch(key):
            shown = key if len(key) <= 70 else key[:67] + "..."
            raise ValueError(
                f"rke2.config key {json.dumps(shown)} is not an RKE2 option name "
                f"(lowercase letters, digits and '-', at most 63 characters)"
            )
        problem = value_problem(value)
        if problem is not None:
            raise ValueError(f"rke2.config value of '{key}' {problem}")
    return config


def split_config(config: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(plain, secret)`` keys of a checked config; keys set to null are in neither."""
    plain = {k: v for k, v in config.items() if v is not None and not is_secret_key(k)}
    secret = {k: v for k, v in config.items() if v is not None and is_secret_key(k)}
    return plain, secret


def load_secret_config(cluster: Cluster, box: SecretBox) -> dict[str, Any]:
    """The cluster's secret config keys, decrypted (also those a legacy row holds in clear).

    Raises Conflict (409) when the stored secrets cannot be decrypted with this service's key.
    """
    legacy = cluster.rke2_config if isinstance(cluster.rke2_config, dict) else {}
    found = {k: v for k, v in legacy.items() if isinstance(k, str) and is_secret_key(k)}
    if cluster.rke2_config_secrets_enc is None:
        return found
    try:
        stored = json.loads(box.decrypt(cluster.rke2_config_secrets_enc))
    except ValueError:
        raise Conflict(
            f"Cluster {cluster.id}'s secret rke2.config keys cannot be decrypted with this "
            "RKE2M_SECRET_KEY"
        ) from None
    if isinstance(stored, dict):
        found.update(stored)
    return found


def store_config(
    cluster: Cluster, box: SecretBox, plain: dict[str, Any], secret: dict[str, Any]
) -> None:
    """Write plain keys to ``rke2_config`` and secret ones, encrypted, to the secrets column."""
    cluster.rke2_config = plain
    cluster.rke2_config_secrets_enc = box.encrypt(json.dumps(secret)) if secret else None


def patch_config(cluster: Cluster, box: SecretBox, config: dict[str, Any]) -> None:
    """Apply a PATCH's ``rke2.config``: plain keys replace the stored ones; secret keys given
    are set, secret keys not mentioned are kept, a secret key given as null is removed.

    Raises Conflict when kept secrets cannot be decrypted (nothing is changed then).
    """
    plain, given = split_config(config)
    removed = {k for k, v in config.items() if v is None and is_secret_key(k)}
    legacy_clear = isinstance(cluster.rke2_config, dict) and any(
        isinstance(k, str) and is_secret_key(k) for k in cluster.rke2_config
    )
    if not given and not removed and not legacy_clear:
        cluster.rke2_config = plain  # the encrypted secrets stay as they are, unread
        return
    secret = load_secret_config(cluster, box)
    secret.update(given)
    for key in removed:
        secret.pop(key, None)
    store_config(cluster, box, plain, secret)


def _truncated_json(value: Any) -> str:
    try:
        text = json.dumps(value, default=repr, ensure_ascii=False)
    except (RecursionError, ValueError, TypeError):
        text = f"<unrenderable {type(value).__name__}>"
    return text if len(text) <= _RENDER_LIMIT else text[: _RENDER_LIMIT - 3] + "..."


def render_config(stored: Any) -> tuple[dict[str, Any], list[str]]:
    """``(plain config, names of secret keys)`` of a stored ``rke2_config``; never raises.

    Values that follow the rules are shown as they are; anything else (a legacy or hand-made
    row: nesting, huge values, odd keys, not an object at all) as a truncated JSON string.
    Keys that hold secrets are left out and named instead, whatever their value.
    """
    if not isinstance(stored, dict):
        return ({} if stored is None else {"(invalid)": _truncated_json(stored)}), []
    plain: dict[str, Any] = {}
    secret: list[str] = []
    for key, value in stored.items():
        name = key if isinstance(key, str) else str(key)
        if is_secret_key(name):
            secret.append(name[:_RENDER_LIMIT])
            continue
        if len(plain) >= MAX_CONFIG_KEYS:
            plain["(truncated)"] = f"{len(stored) - MAX_CONFIG_KEYS} more keys not shown"
            break
        if not _KEY.fullmatch(name):
            name = _truncated_json(name)
        plain[name] = value if value_problem(value) is None else _truncated_json(value)
    return plain, secret


def secret_key_names(cluster: Cluster, box: SecretBox | None) -> list[str]:
    """Names of the secret keys in the encrypted column; [] if they cannot be read."""
    if cluster.rke2_config_secrets_enc is None or box is None:
        return []
    try:
        stored = json.loads(box.decrypt(cluster.rke2_config_secrets_enc))
    except (ValueError, RecursionError):
        return []
    return [str(k)[:_RENDER_LIMIT] for k in stored] if isinstance(stored, dict) else []
