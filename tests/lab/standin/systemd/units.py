"""Unit files and runtime state for the lab's stand-in systemd (host side, stdlib only).

Runtime state lives in ``/run/systemd/standin/<unit>.json``: the host's own tmpfs, so it
vanishes with the host like systemd's does on reboot.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

SEARCH_PATH = (
    "/etc/systemd/system",
    "/run/systemd/system",
    "/usr/local/lib/systemd/system",
    "/usr/lib/systemd/system",
    "/lib/systemd/system",
)
ETC = Path("/etc/systemd/system")
STATE_DIR = Path("/run/systemd/standin")
ENABLED_STATES = ("enabled", "enabled-runtime", "static", "indirect", "alias", "generated")


def normalize(name: str) -> str:
    """'rke2-server' -> 'rke2-server.service'."""
    return name if "." in name else name + ".service"


class Unit:
    """A parsed unit file (path is None when no file defines the unit)."""

    def __init__(self, name: str) -> None:
        self.name = normalize(name)
        self.path: Path | None = None
        self.sections: dict[str, list[tuple[str, str]]] = {}
        for d in SEARCH_PATH:
            candidate = Path(d) / self.name
            if candidate.exists() or candidate.is_symlink():
                self.path = candidate
                break
        if self.path is not None and self.path.exists():
            self.sections = parse(self.path.read_text(errors="replace"))

    @property
    def stem(self) -> str:
        return self.name.rsplit(".", 1)[0]

    @property
    def masked(self) -> bool:
        return self.path is not None and self.path.resolve() == Path("/dev/null")

    def all(self, section: str, key: str) -> list[str]:
        """Every value of key in section, with %n/%N expanded; an empty value resets."""
        values: list[str] = []
        for k, v in self.sections.get(section, []):
            if k == key:
                values = [] if v == "" else [*values, self.expand(v)]
        return values

    def get(self, section: str, key: str, default: str = "") -> str:
        values = self.all(section, key)
        return values[-1] if values else default

    def expand(self, value: str) -> str:
        return value.replace("%N", self.stem).replace("%n", self.name).replace("%%", "%")

    def file_state(self) -> str:
        """UnitFileState as systemd reports it ('' when the unit has no file)."""
        if self.path is None:
            return ""
        if self.masked:
            return "masked"
        if any(ETC.glob(f"*.wants/{self.name}")) or any(ETC.glob(f"*.requires/{self.name}")):
            return "enabled"
        return "disabled" if self.sections.get("Install") else "static"

    def wanted_by(self) -> list[str]:
        return [t for v in self.all("Install", "WantedBy") for t in v.split()]


def parse(text: str) -> dict[str, list[tuple[str, str]]]:
    """Parse an INI-style unit file, keeping repeated keys in order."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = pending + raw.strip()
        pending = ""
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], [])
        elif "=" in line:
            key, _, value = line.partition("=")
            current.append((key.strip(), value.strip()))
    return sections


def environment(unit: Unit) -> dict[str, str]:
    """The service's environment: a clean systemd-like base plus Environment(File)= values."""
    env = {
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "LANG": "C.UTF-8",
        "HOME": "/root",
        "INVOCATION_ID": os.urandom(16).hex(),
    }
    for spec in unit.all("Service", "EnvironmentFile"):
        optional, path = spec.startswith("-"), spec.lstrip("-")
        try:
            lines = Path(path).read_text().splitlines()
        except OSError:
            if optional:
                continue
            raise
        for line in lines:
            line = line.strip()
            if line and not line.startswith("#") and "=" in line:
                key, _, value = line.removeprefix("export ").partition("=")
                env[key.strip()] = value.strip().strip("\"'")
    for spec in unit.all("Service", "Environment"):
        for item in spec.split():
            key, _, value = item.strip('"').partition("=")
            env[key] = value
    return env


def parse_seconds(value: str, default: float) -> float:
    """'5s', '100ms', '2min', '0', 'infinity' -> seconds (0 and infinity mean no limit)."""
    value = value.strip()
    if not value:
        return default
    if value == "infinity":
        return 0.0
    for suffix, factor in (("ms", 0.001), ("min", 60.0), ("s", 1.0), ("m", 60.0), ("h", 3600.0)):
        if value.endswith(suffix):
            return float(value[: -len(suffix)]) * factor
    return float(value)


# -- runtime state -----------------------------------------------------------------------------
def state_path(name: str, ext: str = "json") -> Path:
    return STATE_DIR / f"{normalize(name)}.{ext}"


def pid_alive(pid: int) -> bool:
    """True while pid exists and is not a zombie."""
    if pid <= 0:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def read_state(name: str) -> dict[str, Any]:
    """The unit's runtime state; a unit whose supervisor died is reported failed."""
    state: dict[str, Any] = {
        "active": "inactive",
        "sub": "dead",
        "main_pid": 0,
        "supervisor": 0,
        "result": "success",
        "start_failures": 0,
        "nrestarts": 0,
        "status": 0,
        "since": 0.0,
        "active_since": 0.0,
    }
    with contextlib.suppress(OSError, ValueError):
        state.update(json.loads(state_path(name).read_text()))
    if state["active"] in ("active", "activating", "deactivating", "reloading") and not pid_alive(
        int(state["supervisor"])
    ):
        state.update(active="failed", sub="failed", result="signal", main_pid=0)
    return state


def write_state(name: str, **fields: Any) -> dict[str, Any]:
    """Merge fields into the unit's state file (atomically) and return the new state."""
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    state = read_state(name)
    if "active" in fields and fields["active"] != state["active"]:
        fields.setdefault("since", time.time())
        if fields["active"] == "active":
            fields.setdefault("active_since", time.time())
    state.update(fields)
    tmp = state_path(name, f"json.{os.getpid()}")
    tmp.write_text(json.dumps(state))
    tmp.replace(state_path(name))
    return state


def clear_state(name: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        state_path(name).unlink()


@contextlib.contextmanager
def unit_lock(name: str) -> Iterator[None]:
    """Serialise start/stop of one unit between concurrent systemctl calls."""
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    with state_path(name, "lock").open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def known_units() -> list[Unit]:
    """Every unit file on the search path (first definition of a name wins)."""
    names: set[str] = set()
    for d in SEARCH_PATH:
        with contextlib.suppress(OSError):
            names.update(p.name for p in Path(d).iterdir() if p.suffix == ".service")
    return [Unit(n) for n in sorted(names)]
