"""Build the stand-in RKE2 air-gap artifact directory (install.sh, tarball, checksums)."""

from __future__ import annotations

import shutil
from pathlib import Path


def host_python() -> str:
    """The system Python lab hosts run stand-ins with (they see the machine's /usr)."""
    for candidate in ("/usr/bin/python3", "/usr/bin/python3.11", "/usr/bin/python3.12"):
        if Path(candidate).exists():
            return candidate
    found = shutil.which("python3", path="/usr/bin:/bin")
    if not found:
        raise RuntimeError("lab hosts need a system python3 (Debian package python3)")
    return found


def build_artifact(dest: Path) -> Path:
    raise NotImplementedError
