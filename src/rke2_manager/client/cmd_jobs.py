"""``job``, ``logs``, ``install`` and ``scale``: jobs and the operations that change nodes."""

from __future__ import annotations

import re
from typing import Annotated

import typer
from rich.table import Table

from rke2_manager.client import ops
from rke2_manager.client.common import (
    ClusterArg,
    Output,
    OutputOpt,
    TokenOpt,
    UrlOpt,
    YesOpt,
    client,
    emit_json,
    out,
)
from rke2_manager.client.errors import FAILED, OK, UsageError
from rke2_manager.client.events import follow

job_app = typer.Typer(help="Jobs: list, show, cancel.", no_args_is_help=True)
scale_app = typer.Typer(help="Add or remove nodes.", no_args_is_help=True)
JobArg = Annotated[int, typer.Argument(help="job id", min=1, show_default=False)]
QueueOpt = Annotated[
    bool, typer.Option("--queue", help="wait in line if the cluster is busy (else: refused)")
]
DryRunOpt = Annotated[bool, typer.Option("--dry-run", help="show the plan; change nothing")]
SkipOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--skip-preflight",
        help="a preflight check whose failure must not stop the job (repeat for more)",
    ),
]
DetachOpt = Annotated[
    bool, typer.Option("--detach", "-d", help="start the job and return; do not follow it")
]
_NODE = re.compile(r"^(?P<hostname>[^=:]+)=(?P<ip>[^:]+):(?P<role>server|agent)$")


def on_busy(queue: bool) -> str:
    return "queue" if queue else "reject"


def jobs_table(jobs: list[dict[str, object]]) -> Table:
    table = Table("id", "cluster", "operation", "status", "nodes", "requested by", "reason")
    for j in jobs:
        names = ", ".join(str(n["hostname"]) for n in j["nodes"])  # type: ignore[attr-defined]
        table.add_row(
            str(j["id"]),
            str(j["cluster_id"]),
            str(j["operation"]),
            str(j["status"]),
            names,
            str(j["requested_by"]),
            str(j.get("reason") or ""),
        )
    return table


@job_app.command("list")
def job_list(
    cluster: Annotated[str | None, typer.Option("--cluster", help="only this cluster's")] = None,
    status: Annotated[str | None, typer.Option("--status", help="only jobs in this status")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=500)] = 50,
    url: UrlOpt = None,
    token: TokenOpt = None,
    output: OutputOpt = Output.TABLE,
) -> None:
    """List jobs, newest first."""
    with client(url, token) as api:
        cid = api.cluster_id(cluster) if cluster else None
        jobs = api.get("/api/jobs", cluster_id=cid, status=status, limit=limit)
    if output == Output.JSON:
        return emit_json(jobs)
    out.print(jobs_table(jobs))


@job_app.command("show")
def job_show(
    job: JobArg, url: UrlOpt = None, token: TokenOpt = None, output: OutputOpt = Output.TABLE
) -> None:
    """Show a job and where each of its hosts is."""
    with client(url, token) as api:
        found = api.get(f"/api/jobs/{job}")
    if output == Output.JSON:
        return emit_json(found)
    out.print(jobs_table([found]))
    for host, where in sorted(found.get("progress", {}).items()):
        now = f"in '{where['task']}'" if where.get("task") else f"done '{where.get('last')}'"
        out.print(f"  {host}: {now} since {where.get('since')}", markup=False, highlight=False)


@job_app.command("cancel")
def job_cancel(
    job: JobArg, url: UrlOpt = None, token: TokenOpt = None, output: OutputOpt = Output.TABLE
) -> None:
    """Cancel a queued or running job (a running one's run is ended first)."""
    with client(url, token) as api:
        ended = api.post(f"/api/jobs/{job}/cancel")
    if output == Output.JSON:
        return emit_json(ended)
    out.print(f"job {ended['id']} {ended['status']}: {ended['reason']}", markup=False)


def logs(
    job: JobArg,
    follow_: Annotated[
        bool, typer.Option("--follow", "-f", help="follow until the job ends")
    ] = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
    output: OutputOpt = Output.TABLE,
) -> None:
    """Print a job's output; with -f follow it live to the job's end (exit 1 if it failed)."""
    with client(url, token) as api:
        if not follow_:
            log = api.get(f"/api/jobs/{job}/log", limit=10000)
            if output == Output.JSON:
                return emit_json(log)
            for line in log["lines"]:
                out.print(line["text"], markup=False, highlight=False)
            return
        status = ""
        for event in follow(api, job):
            if output == Output.JSON:
                emit_json({"event": event.name, "id": event.id, "data": event.data})
            elif event.name == "log":
                out.print(event.data["text"], markup=False, highlight=False)
            elif event.name == "end":
                why = f": {event.data['reason']}" if event.data.get("reason") else ""
                out.print(f"job {job} {event.data['status']}{why}", markup=False)
            if event.name == "end":
                status = event.data["status"]
    raise typer.Exit(OK if status == "succeeded" else FAILED)


def install(
    cluster: ClusterArg,
    skip_preflight: SkipOpt = None,
    queue: QueueOpt = False,
    dry_run: DryRunOpt = False,
    detach: DetachOpt = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
    output: OutputOpt = Output.TABLE,
) -> None:
    """Install every node of a cluster; follows the job (exit 1 if it fails)."""
    ops.command(
        url,
        token,
        cluster,
        "/api/jobs/install/{cid}",
        None,
        {"on_busy": on_busy(queue), "skip_preflight": skip_preflight},
        what=f"install {cluster}",
        output=output,
        dry_run=dry_run,
        detach=detach,
    )


def _parse_nodes(specs: list[str]) -> list[dict[str, str]]:
    nodes = []
    for spec in specs:
        found = _NODE.match(spec)
        if not found:
            raise UsageError(f"--node {spec!r}: expected HOSTNAME=IP:ROLE, e.g. w3=10.0.0.23:agent")
        nodes.append(found.groupdict())
    return nodes


@scale_app.command("add")
def scale_add(
    cluster: ClusterArg,
    node: Annotated[list[str], typer.Option("--node", "-n", help="HOSTNAME=IP:ROLE (repeat)")],
    skip_preflight: SkipOpt = None,
    queue: QueueOpt = False,
    dry_run: DryRunOpt = False,
    detach: DetachOpt = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
    output: OutputOpt = Output.TABLE,
) -> None:
    """Add nodes (servers first when both are given); follows the jobs."""
    with client(url, token):
        body = {"nodes": _parse_nodes(node)}  # a usage error, said as the others are
    ops.command(
        url,
        token,
        cluster,
        "/api/clusters/{cid}/scale/add",
        body,
        {"on_busy": on_busy(queue), "skip_preflight": skip_preflight},
        what=f"add to {cluster}",
        output=output,
        dry_run=dry_run,
        detach=detach,
    )


@scale_app.command("remove")
def scale_remove(
    cluster: ClusterArg,
    hostnames: Annotated[list[str], typer.Argument(help="nodes to remove", show_default=False)],
    confirm_master_removal: Annotated[
        bool, typer.Option("--confirm-master-removal", help="needed to remove servers")
    ] = False,
    yes: YesOpt = False,
    queue: QueueOpt = False,
    dry_run: DryRunOpt = False,
    detach: DetachOpt = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
    output: OutputOpt = Output.TABLE,
) -> None:
    """Remove nodes from a cluster (uninstalls RKE2 on them); follows the job."""
    body = {"nodes": [{"hostname": h} for h in hostnames]}
    ops.command(
        url,
        token,
        cluster,
        "/api/clusters/{cid}/scale/remove",
        body,
        {"on_busy": on_busy(queue), "confirm_master_removal": confirm_master_removal},
        what=f"remove from {cluster}",
        output=output,
        dry_run=dry_run,
        detach=detach,
        ask=f"Remove {', '.join(hostnames)} from cluster {cluster}?",
        yes=yes,
    )
