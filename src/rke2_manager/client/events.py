"""Follow a job's live events (``GET /api/jobs/{id}/events``, docs/events.md) to its end.

The stream is resumed with ``Last-Event-ID`` when the connection drops (an API restart, a
proxy timeout), so no event is lost or repeated; it gives up after :data:`RETRIES` failed
reconnects in a row.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx

from rke2_manager.client.api import Api
from rke2_manager.client.errors import ApiError, Unavailable

RETRIES = 10
BACKOFF = 1.0


@dataclass(frozen=True)
class Event:
    """One server-sent event: its name (``job``, ``task_start``, ``task_end``, ``node``,
    ``log``, ``end``), its JSON data and its id (None for ``job`` snapshots)."""

    name: str
    data: dict[str, Any]
    id: int | None


def parse(lines: Iterable[str]) -> Iterator[Event]:
    """Events from SSE lines; comments (keep-alives) and ``retry:`` are skipped."""
    name, data, ident = "message", list[str](), None
    for line in lines:
        if not line:
            if data:
                yield Event(name, json.loads("\n".join(data)), ident)
            name, data, ident = "message", [], None
        elif line.startswith(":"):
            continue
        else:
            field, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if field == "event":
                name = value
            elif field == "data":
                data.append(value)
            elif field == "id" and value.isdigit():
                ident = int(value)


def follow(api: Api, job_id: int, after: int = 0) -> Iterator[Event]:
    """Every event of the job after id ``after``, up to and including ``end``."""
    last, failures = after, 0
    while True:
        headers = {"Accept": "text/event-stream", "Last-Event-ID": str(last)}
        try:
            with api.stream(f"/api/jobs/{job_id}/events", headers) as response:
                failures = 0
                for event in parse(response.iter_lines()):
                    if event.id is not None:
                        last = event.id
                    yield event
                    if event.name == "end":
                        return
        except ApiError as exc:
            if exc.status < 500:
                raise
            error: Exception = exc
        except httpx.HTTPError as exc:
            error = exc
        else:
            error = Unavailable("the event stream ended before the job did")
        failures += 1
        if failures > RETRIES:
            raise Unavailable(f"lost the event stream of job {job_id}: {error}")
        time.sleep(min(BACKOFF * failures, 5.0))
