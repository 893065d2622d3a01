"""Where the API is and which token to send: flags, then environment, then a config file.

The config file is YAML with the keys ``url`` and ``token``, at ``$RKE2M_CLIENT_CONFIG`` or
else ``$XDG_CONFIG_HOME/rke2-manager/config.yaml`` (``~/.config/rke2-manager/config.yaml``).
A token there must not be readable by others (the file is refused if it is).
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml  # type: ignore[import-untyped]

from rke2_manager.client.errors import UsageError

DEFAULT_URL = "http://127.0.0.1:8000"
URL_ENV, TOKEN_ENV, CONFIG_ENV = "RKE2M_URL", "RKE2M_TOKEN", "RKE2M_CLIENT_CONFIG"


def config_path() -> Path:
    """The config file's path (it need not exist)."""
    if os.environ.get(CONFIG_ENV):
        return Path(os.environ[CONFIG_ENV]).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "rke2-manager" / "config.yaml"


@dataclass(frozen=True)
class Target:
    """The API's base URL and the bearer token (None: none sent, e.g. loopback in protected
    mode)."""

    url: str
    token: str | None


def _read_file(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise UsageError(f"cannot read {path}: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict) or set(data) - {"url", "token"}:
        raise UsageError(f"{path}: expected a mapping with the keys url and token")
    if data.get("token") and path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise UsageError(f"{path} holds a token but others may read it: chmod 600 {path}")
    return data


def resolve(url: str | None, token: str | None) -> Target:
    """Flags win over the environment, which wins over the config file."""
    found = _read_file(config_path())
    chosen_url = url or os.environ.get(URL_ENV) or found.get("url") or DEFAULT_URL
    chosen_token = token or os.environ.get(TOKEN_ENV) or found.get("token") or None
    if not isinstance(chosen_url, str) or not chosen_url.startswith(("http://", "https://")):
        raise UsageError(f"the API URL must start with http:// or https://, not {chosen_url!r}")
    if chosen_token is not None and not isinstance(chosen_token, str):
        raise UsageError("the token must be a string")
    return Target(chosen_url.rstrip("/"), chosen_token)
