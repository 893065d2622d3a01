"""Stand-ins for what lab hosts lack: RKE2 itself (an air-gap artifact) and systemd.

They run on the hosts with the system's Python 3 and its standard library only.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.lab.standin.artifact import build_artifact, host_python

__all__ = ["build_artifact", "host_python", "install_systemd_standin"]

SYSTEMD_SRC = Path(__file__).resolve().parent / "systemd"

LAUNCHER = """#!{python}
# rke2-manager test lab stand-in: there is no systemd on lab hosts.
import sys
sys.path.insert(0, "/usr/local/lib/lab-systemd")
import {module}
sys.exit({module}.main(sys.argv[1:]))
"""


def install_systemd_standin(usr_local: Path, usr_bin: Path) -> None:
    """Install stand-in systemctl/journalctl: code into usr_local (seen as /usr/local),
    launchers into usr_bin (seen as /usr/bin, where a real systemd host has them)."""
    lib = usr_local / "lib" / "lab-systemd"
    lib.mkdir(parents=True, exist_ok=True)
    for src in SYSTEMD_SRC.glob("*.py"):
        shutil.copy2(src, lib / src.name)
    usr_bin.mkdir(parents=True, exist_ok=True)
    for tool in ("systemctl", "journalctl"):
        path = usr_bin / tool
        path.write_text(LAUNCHER.format(python=host_python(), module=tool))
        path.chmod(0o755)
