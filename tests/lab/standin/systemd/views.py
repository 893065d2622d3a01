"""Read-only verbs of the stand-in systemctl: show, status, list-units, list-unit-files."""

from __future__ import annotations

import fnmatch
import sys
import time

import units
from units import Unit


def stamp(ts: float) -> str:
    return time.strftime("%a %Y-%m-%d %H:%M:%S %Z", time.localtime(ts)) if ts else ""


def properties(unit: Unit) -> dict[str, str]:
    """``systemctl show`` properties for unit (those Ansible and people read)."""
    st = units.read_state(unit.name)
    load = "masked" if unit.masked else ("loaded" if unit.path else "not-found")
    props = {
        "Type": unit.get("Service", "Type", "simple"),
        "Restart": unit.get("Service", "Restart", "no"),
        "NotifyAccess": "main" if unit.get("Service", "Type") == "notify" else "none",
        "RestartUSec": unit.get("Service", "RestartSec", "100ms"),
        "TimeoutStartUSec": "infinity"
        if units.parse_seconds(unit.get("Service", "TimeoutStartSec"), 90) == 0
        else "1min 30s",
        "MainPID": str(st["main_pid"]),
        "ExecMainPID": str(st["main_pid"]),
        "ExecMainStatus": str(st["status"]),
        "Result": st["result"],
        "NRestarts": str(st["nrestarts"]),
        "StatusText": st.get("status_text", ""),
        "KillMode": unit.get("Service", "KillMode", "control-group"),
        "Id": unit.name,
        "Names": unit.name,
        "Description": unit.get("Unit", "Description", unit.name),
        "LoadState": load,
        "ActiveState": st["active"],
        "SubState": st["sub"],
        "FragmentPath": str(unit.path or ""),
        "UnitFileState": unit.file_state(),
        "UnitFilePreset": "enabled" if unit.path else "",
        "StateChangeTimestamp": stamp(st["since"]),
        "ActiveEnterTimestamp": stamp(st["active_since"]),
        "WantedBy": " ".join(unit.wanted_by()),
        "Conflicts": unit.get("Unit", "Conflicts"),
        "After": unit.get("Unit", "After"),
        "CanStart": "yes" if unit.path and not unit.masked else "no",
        "CanStop": "yes",
        "NeedDaemonReload": "no",
    }
    if load == "not-found":
        props["LoadError"] = f'org.freedesktop.systemd1.NoSuchUnit "Unit {unit.name} not found."'
    return props


def cmd_show(names: list[str], opts: dict[str, list[str]]) -> int:
    wanted = [p for v in opts.get("property", []) for p in v.split(",") if p]
    blocks = []
    for name in names:
        props = properties(Unit(name))
        keys = wanted or list(props)
        if "value" in opts:
            blocks.append("\n".join(props.get(k, "") for k in keys))
        else:
            blocks.append("\n".join(f"{k}={props.get(k, '')}" for k in keys))
    print("\n\n".join(blocks))
    return 0


def cmd_status(names: list[str]) -> int:
    rc = 0
    for name in names:
        unit = Unit(name)
        if unit.path is None:
            print(f"Unit {unit.name} could not be found.", file=sys.stderr)
            return 4
        p = properties(unit)
        since = p["StateChangeTimestamp"]
        print(f"\u25cf {unit.name} - {p['Description']}")
        print(f"     Loaded: loaded ({unit.path}; {p['UnitFileState']}; preset: enabled)")
        print(
            f"     Active: {p['ActiveState']} ({p['SubState']})"
            + (f" since {since}" if since else "")
        )
        if p["MainPID"] != "0":
            print(f"   Main PID: {p['MainPID']}")
        log = units.state_path(unit.name, "log")
        if log.exists():
            print()
            print("\n".join(log.read_text(errors="replace").splitlines()[-10:]))
        rc = rc or (0 if p["ActiveState"] == "active" else 3)
    return rc


def cmd_list(kind: str, patterns: list[str], opts: dict[str, list[str]]) -> int:
    """list-unit-files / list-units, optionally filtered by glob patterns."""
    show_all = "all" in opts
    rows: list[tuple[str, ...]] = []
    for unit in units.known_units():
        if patterns and not any(fnmatch.fnmatch(unit.name, p) for p in patterns):
            continue
        if kind == "list-unit-files":
            rows.append((unit.name, unit.file_state(), "enabled"))
            continue
        st = units.read_state(unit.name)
        if st["active"] == "inactive" and not show_all:
            continue
        desc = unit.get("Unit", "Description", unit.name)
        rows.append((unit.name, "loaded", st["active"], st["sub"], desc))
    header = (
        ("UNIT FILE", "STATE", "VENDOR PRESET")
        if kind == "list-unit-files"
        else ("UNIT", "LOAD", "ACTIVE", "SUB", "DESCRIPTION")
    )
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    legend = "no-legend" not in opts
    lines = [
        " ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
        for r in ([header] if legend else []) + rows
    ]
    print("\n".join(lines))
    if legend:
        what = "unit files" if kind == "list-unit-files" else "loaded units"
        print(f"\n{len(rows)} {what} listed.")
    return 0 if rows or kind == "list-units" else 1
