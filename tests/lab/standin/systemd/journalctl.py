"""Stand-in ``journalctl`` for lab hosts: prints what the stand-in systemd logged per unit."""

from __future__ import annotations

import sys

import units


def main(argv: list[str]) -> int:
    """Supports ``-u UNIT`` (repeatable), ``-n N``/``--lines=N``; other flags are ignored."""
    names: list[str] = []
    lines = 0
    it = iter(argv)
    for arg in it:
        if arg in ("-u", "--unit"):
            names.append(next(it, ""))
        elif arg.startswith("--unit="):
            names.append(arg.split("=", 1)[1])
        elif arg.startswith("-u") and len(arg) > 2:
            names.append(arg[2:])
        elif arg in ("-n", "--lines"):
            lines = int(next(it, "10"))
        elif arg.startswith("--lines="):
            lines = int(arg.split("=", 1)[1])
    out: list[str] = []
    for name in names:
        path = units.state_path(name, "log")
        if path.exists():
            out += path.read_text(errors="replace").splitlines()
    if lines:
        out = out[-lines:]
    print("\n".join(out) if out else "-- No entries --")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
