"""Table and age printing shared by the stand-in kubectl's commands."""

from __future__ import annotations

import calendar
import time


def age(created: str) -> str:
    """kubectl's human-readable age of a creationTimestamp."""
    secs = max(0, int(time.time() - calendar.timegm(time.strptime(created, "%Y-%m-%dT%H:%M:%SZ"))))
    if secs < 120:
        return f"{secs}s"
    if secs < 600:
        return f"{secs // 60}m{secs % 60}s" if secs % 60 else f"{secs // 60}m"
    if secs < 3 * 3600:
        return f"{secs // 60}m"
    return f"{secs // 3600}h" if secs < 48 * 3600 else f"{secs // 86400}d"


def table(rows: list[list[str]], headers: bool) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    body = rows if headers else rows[1:]
    return "\n".join(
        "   ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in body
    )
