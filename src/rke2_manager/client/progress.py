"""Show a job's live per-node progress: a table redrawn in place on a terminal, else one line
per change (``[m1] Install RKE2: changed``), so logs and CI output keep every step."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from rke2_manager.client.api import Api
from rke2_manager.client.events import Event, follow

_STYLE = {
    "ok": "green",
    "changed": "yellow",
    "failed": "bold red",
    "unreachable": "bold red",
    "ignored": "dim",
    "skipped": "dim",
    "ACTIVE": "green",
    "FAILED": "bold red",
    "INSTALLING": "cyan",
    "REMOVING": "cyan",
    "REMOVED": "dim",
}


@dataclass
class HostRow:
    status: str = ""
    task: str = ""
    last: str = ""
    result: str = ""
    counts: dict[str, int] = field(default_factory=dict)


@dataclass
class JobView:
    """What is known of a job from its events so far."""

    job_id: int
    operation: str = ""
    status: str = ""
    reason: str | None = None
    hosts: dict[str, HostRow] = field(default_factory=dict)
    ended: bool = False

    def apply(self, event: Event) -> str | None:
        """Take ``event`` in; the line to print for it in line mode (None: nothing)."""
        data = event.data
        if event.name == "job":
            before, self.operation = self.status, data.get("operation", "")
            self.status = data.get("status", "")
            for node in data.get("nodes") or []:
                self.hosts.setdefault(node["hostname"], HostRow())
            if self.status == before or self.status in ("succeeded", "failed", "canceled"):
                return None  # the end event says how it ended
            return f"job {self.job_id} ({self.operation}): {self.status}"
        if event.name == "task_start":
            row = self.hosts.setdefault(data["host"], HostRow())
            row.task = data["task"]
            return None
        if event.name == "task_end":
            row = self.hosts.setdefault(data["host"], HostRow())
            row.task, row.last, row.result = "", data["task"], data["result"]
            row.counts[data["result"]] = row.counts.get(data["result"], 0) + 1
            why = f" ({data['reason']})" if data.get("reason") else ""
            return f"[{data['host']}] {data['task']}: {data['result']}{why}"
        if event.name == "node":
            row = self.hosts.setdefault(data["hostname"], HostRow())
            row.status = data["status"]
            why = f" ({data['reason']})" if data.get("reason") else ""
            return f"[{data['hostname']}] node {data['status']}{why}"
        if event.name == "end":
            self.status, self.reason, self.ended = data["status"], data.get("reason"), True
            why = f": {self.reason}" if self.reason else ""
            return f"job {self.job_id} {self.status}{why}"
        return None

    def table(self) -> Table:
        table = Table(title=f"job {self.job_id} {self.operation} — {self.status}")
        for column in ("host", "node", "current task", "last task", "result", "ok/changed/failed"):
            table.add_column(column)
        for host, row in sorted(self.hosts.items()):
            counts = "/".join(str(row.counts.get(k, 0)) for k in ("ok", "changed", "failed"))
            table.add_row(
                host,
                Text(row.status, style=_STYLE.get(row.status, "")),
                row.task,
                row.last,
                Text(row.result, style=_STYLE.get(row.result, "")),
                counts,
            )
        return table


def watch(api: Api, job_id: int, console: Console, logs: bool = False) -> JobView:
    """Follow the job to its end, showing per-node progress on ``console``; its final view.

    ``logs``: print the output lines too (line mode).
    """
    view = JobView(job_id)
    if console.is_terminal and not logs:
        with Live(view.table(), console=console, refresh_per_second=4) as live:
            for event in follow(api, job_id):
                view.apply(event)
                live.update(view.table())
        if view.reason:
            console.print(f"job {job_id} {view.status}: {view.reason}")
        return view
    for event in follow(api, job_id):
        line = view.apply(event)
        if event.name == "log" and logs:
            line = event.data["text"]
        if line is not None:
            console.print(line, markup=False, highlight=False, soft_wrap=True)
    return view


def summary(view: JobView) -> dict[str, Any]:
    """The job's end, for ``--output json``."""
    return {
        "job_id": view.job_id,
        "operation": view.operation,
        "status": view.status,
        "reason": view.reason,
        "nodes": {host: row.status for host, row in sorted(view.hosts.items())},
    }
