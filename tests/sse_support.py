"""Reading Server-Sent Events in tests, independently of the CLI client's own reader."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any


@dataclass
class Frame:
    event: str
    data: dict[str, Any]
    id: int | None


def frames(lines: Iterable[str], comments: list[str] | None = None) -> Iterator[Frame]:
    """Parse SSE lines (as ``iter_lines`` gives them) into frames; comments go to ``comments``.

    Fails on anything the stream must not contain: a field other than id/event/data/retry, or
    data that is not one line of JSON.
    """
    event, data, ident = "message", list[str](), None
    for line in lines:
        if line == "":
            if data:
                assert len(data) == 1, data
                yield Frame(event, json.loads(data[0]), ident)
            event, data, ident = "message", [], None
            continue
        if line.startswith(":"):
            if comments is not None:
                comments.append(line)
            continue
        name, _, value = line.partition(": ")
        if name == "id":
            ident = int(value)
        elif name == "event":
            event = value
        elif name == "data":
            data.append(value)
        else:
            assert name == "retry", line
