"""Config of the stand-in rke2: ``/etc/rancher/rke2/config.yaml`` plus command-line flags.

Parses the YAML subset RKE2 configs use (flat ``key: value``, block or flow lists, quotes,
comments) with the standard library only: the host's Python may lack PyYAML.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

CONFIG_FILE = Path("/etc/rancher/rke2/config.yaml")
# Keys the stand-in acts on; anything else is accepted and warned about.
HONOURED = {
    "token",
    "server",
    "tls-san",
    "node-name",
    "node-ip",
    "write-kubeconfig-mode",
    "cluster-reset",
    "cluster-reset-restore-path",
}
#: Flags that take no value on the command line (``--cluster-reset``).
BOOL_FLAGS = {"cluster-reset", "debug"}


def scalar(text: str) -> Any:
    """A YAML scalar: quoted string, number, bool, null or plain string."""
    text = text.strip()
    if not text:
        return None
    if text[0] == '"' and text.endswith('"'):
        return json.loads(text)
    if text[0] == "'" and text.endswith("'") and len(text) > 1:
        return text[1:-1].replace("''", "'")
    if text.startswith("[") and text.endswith("]"):
        return [scalar(p) for p in split_flow(text[1:-1])]
    lowered = text.lower()
    if lowered in ("true", "yes", "on"):
        return True
    if lowered in ("false", "no", "off"):
        return False
    if lowered in ("null", "~"):
        return None
    try:
        return int(text, 8) if text.startswith("0") and len(text) > 1 else int(text)
    except ValueError:
        return text


def split_flow(body: str) -> list[str]:
    """Split a flow list body on commas outside quotes."""
    parts, current, quote = [], "", ""
    for ch in body:
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch == ",":
            parts.append(current)
            current = ""
            continue
        current += ch
    if current.strip():
        parts.append(current)
    return [p for p in (p.strip() for p in parts) if p]


def strip_comment(line: str) -> str:
    quote = ""
    for i, ch in enumerate(line):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1] in " \t"):
            return line[:i]
    return line


def parse(text: str) -> dict[str, Any]:
    """Parse a flat YAML mapping whose values are scalars or lists of scalars."""
    out: dict[str, Any] = {}
    key = None
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = strip_comment(raw).rstrip()
        if not line.strip() or line.strip() == "---":
            continue
        stripped = line.strip()
        if stripped.startswith("- ") or stripped == "-":
            if key is None:
                raise ValueError(f"line {lineno}: list item without a key")
            if not isinstance(out[key], list):
                out[key] = []
            out[key].append(scalar(stripped[1:]))
            continue
        if ":" not in stripped or line[0] in " \t":
            raise ValueError(f"line {lineno}: unsupported YAML: {raw!r}")
        key, _, value = stripped.partition(":")
        key = key.strip().strip("\"'")
        out[key] = scalar(value)
    return out


def load(argv: list[str]) -> dict[str, Any]:
    """Config file (and ``config.yaml.d/*.yaml``) overlaid with ``--key value`` flags."""
    cfg: dict[str, Any] = {}
    files = [CONFIG_FILE, *sorted(CONFIG_FILE.parent.glob("config.yaml.d/*.yaml"))]
    for path in files:
        if path.exists():
            cfg.update(parse(path.read_text()))
    it = iter(argv)
    for arg in it:
        if arg.startswith("--"):
            key, eq, value = arg[2:].partition("=")
            if key in BOOL_FLAGS:
                cfg[key] = scalar(value) if eq else True
            else:
                cfg[key] = value if eq else next(it, "")
    for key in sorted(set(cfg) - HONOURED):
        print(f'level=warning msg="stand-in rke2: ignoring config key {key!r}"', file=sys.stderr)
    if isinstance(cfg.get("tls-san"), str):
        cfg["tls-san"] = [s.strip() for s in cfg["tls-san"].split(",") if s.strip()]
    return cfg
