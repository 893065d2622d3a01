"""Paths a caller may name: ``rke2.artifact_dir`` must lie under the operator's artifact root."""

from __future__ import annotations

import os
import re
from pathlib import Path

#: Characters an artifact directory may use: enough for ``/srv/rke2/v1.31.4+rke2r1``, and
#: nothing a shell, YAML or a Jinja template gives a meaning to.
_SAFE_PATH = re.compile(r"^/[A-Za-z0-9._+@=,-]+(/[A-Za-z0-9._+@=,-]+)*$")
MAX_PATH = 1024


class PathNotAllowed(ValueError):
    """The path is malformed or lies outside what the operator allowed."""


def check_artifact_dir(value: str, root: Path, *, must_exist: bool = False) -> Path:
    """``value`` as a normalised absolute path under ``root``; PathNotAllowed otherwise.

    Checked lexically (no ``..``, no ``//``, only safe characters) and again with symlinks
    resolved, so a link inside the root cannot lead out of it. With ``must_exist`` (at job
    start) the directory must exist.
    """
    if len(value) > MAX_PATH or not _SAFE_PATH.match(value):
        raise PathNotAllowed(
            "rke2.artifact_dir must be an absolute path of letters, digits and . _ + @ = , -"
        )
    if os.path.normpath(value) != value or "/../" in f"{value}/" or "/./" in f"{value}/":
        raise PathNotAllowed(f"rke2.artifact_dir '{value}' is not a normalised path")
    root = root.resolve()
    path = Path(value)
    outside = f"rke2.artifact_dir '{value}' is not under the artifact root {root}"
    if not path.is_relative_to(root) or path == root:
        raise PathNotAllowed(outside)
    if path.exists() or must_exist:
        resolved = path.resolve()
        if not resolved.is_relative_to(root) or resolved == root:
            raise PathNotAllowed(outside + " (symlinks resolved)")
        if not resolved.is_dir():
            raise PathNotAllowed(f"rke2.artifact_dir '{value}' is not a directory")
    return path
