"""Build the stand-in RKE2 air-gap artifact directory (install.sh, tarball, checksums).

The layout matches RKE2's release assets, so playbooks install it exactly as they would the
real ones with ``INSTALL_RKE2_ARTIFACT_PATH=<dir> sh install.sh``.
"""

from __future__ import annotations

import hashlib
import io
import shutil
import tarfile
import time
from pathlib import Path

PAYLOAD = Path(__file__).resolve().parent / "payload"
DEFAULT_VERSION = "v1.31.4+rke2r1"
#: The version tests upgrade to (a second artifact set: fixtures.rke2_upgrade_artifact).
UPGRADE_VERSION = "v1.32.1+rke2r1"
TARBALL = "rke2.linux-amd64.tar.gz"
CHECKSUMS = "sha256sum-amd64.txt"


def host_python() -> str:
    """The system Python lab hosts run stand-ins with (they see the machine's /usr)."""
    for candidate in ("/usr/bin/python3", "/usr/bin/python3.11", "/usr/bin/python3.12"):
        if Path(candidate).exists():
            return candidate
    found = shutil.which("python3", path="/usr/bin:/bin")
    if not found:
        raise RuntimeError("lab hosts need a system python3 (Debian package python3)")
    return found


def tarball_members(version: str, python: str) -> dict[str, tuple[bytes, int]]:
    """Path inside the tarball -> (content, mode)."""

    def text(name: str) -> bytes:
        return (PAYLOAD / name).read_text().replace("@PYTHON@", python).encode()

    members: dict[str, tuple[bytes, int]] = {
        "bin/rke2": (text("rke2"), 0o755),
        "bin/rke2-killall.sh": (text("rke2-killall.sh"), 0o755),
        "bin/rke2-uninstall.sh": (text("rke2-uninstall.sh"), 0o755),
        "share/rke2/LICENSE.txt": (b"Stand-in for RKE2, made for rke2-manager's tests.\n", 0o644),
        "share/rke2/standin/VERSION": (version.encode() + b"\n", 0o644),
        "share/rke2/standin/kubectl": (text("kubectl"), 0o755),
    }
    for role in ("server", "agent"):
        members[f"lib/systemd/system/rke2-{role}.service"] = (text(f"rke2-{role}.service"), 0o644)
        members[f"lib/systemd/system/rke2-{role}.env"] = (b"HOME=/root\n", 0o644)
    for src in sorted(PAYLOAD.glob("*.py")):
        members[f"share/rke2/standin/{src.name}"] = (src.read_bytes(), 0o644)
    return members


def build_tarball(version: str, python: str) -> bytes:
    buf = io.BytesIO()
    now = int(time.time())
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        dirs: set[str] = set()
        for name, (data, mode) in tarball_members(version, python).items():
            parts = name.split("/")
            for i in range(1, len(parts)):
                d = "/".join(parts[:i])
                if d not in dirs:
                    dirs.add(d)
                    info = tarfile.TarInfo(d)
                    info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, now
                    tar.addfile(info)
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), mode, now
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def build_artifact(
    dest: Path, *, version: str = DEFAULT_VERSION, python: str | None = None, corrupt: bool = False
) -> Path:
    """Write an air-gap artifact set into dest (created if needed) and return dest.

    dest gets ``install.sh``, ``rke2.linux-amd64.tar.gz`` and ``sha256sum-amd64.txt``.
    corrupt=True writes a wrong checksum, for tests of a failing install.
    """
    dest.mkdir(parents=True, exist_ok=True)
    data = build_tarball(version, python or host_python())
    (dest / TARBALL).write_bytes(data)
    digest = hashlib.sha256(data + (b"x" if corrupt else b"")).hexdigest()
    (dest / CHECKSUMS).write_text(f"{digest}  {TARBALL}\n")
    shutil.copyfile(PAYLOAD / "install.sh", dest / "install.sh")
    (dest / "install.sh").chmod(0o755)
    return dest
