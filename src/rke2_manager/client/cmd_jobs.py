"""``job``, ``logs``, and the operations: ``install``, ``scale``, ``upgrade``, ``snapshot``,
``restore``; ``api-token`` (tokens through the API)."""

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
    confirm,
    emit_json,
    out,
)
from rke2_manager.client.errors import FAILED, OK, UsageError
from rke2_manager.client.events import follow

job_app = typer.Typer(help="Jobs: list, show, cancel.", no_args_is_help=True)
scale_app = typer.Typer(help="Add or remove nodes.", no_args_is_help=True)
snapshot_app = typer.Typer(help="etcd snapshots: list, save, delete.", no_args_is_help=True)
api_token_app = typer.Typer(
    help="API tokens through the API (admin role); `token` does the same on the server's database.",
    no_args_is_help=True,
)
JobArg = Annotated[int, typer.Argument(help="job id", min=1, show_default=False)]
QueueOpt = Annotated[
    bool, typer.Option("--queue", help="wait in line if the cluster is busy (else: refused)")
]
DryRunOpt = Annotated[bool, typer.Option("--dry-run", help="show the plan; change nothing")]
DetachOpt = Annotated[
    bool, typer.Option("--detach", "-d", help="start the job and return; do not follow it")
]
_NODE = re.compile(r"^(?P<hostname>[^=:]+)=(?P<ip>[^:]+):(?P<role>server|agent)$")


def _on_busy(queue: bool) -> str:
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
    queue: QueueOpt = False,
    dry_run: DryRunOpt = False,
    detach: DetachOpt = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
    output: OutputOpt = Output.TABLE,
) -> None:
    """Install every node of a cluster; follows the job (exit 1 if it fails)."""
    with client(url, token) as api:
        cid = api.cluster_id(cluster)
        code = ops.run(
            api,
            f"/api/jobs/install/{cid}",
            None,
            {"on_busy": _on_busy(queue)},
            what=f"install {cluster}",
            dry_run=dry_run,
            detach=detach,
            output=output,
        )
    raise typer.Exit(code)


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
    queue: QueueOpt = False,
    dry_run: DryRunOpt = False,
    detach: DetachOpt = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
    output: OutputOpt = Output.TABLE,
) -> None:
    """Add nodes (servers first when both are given); follows the jobs."""
    with client(url, token) as api:
        body = {"nodes": _parse_nodes(node)}
        cid = api.cluster_id(cluster)
        code = ops.run(
            api,
            f"/api/clusters/{cid}/scale/add",
            body,
            {"on_busy": _on_busy(queue)},
            what=f"add to {cluster}",
            dry_run=dry_run,
            detach=detach,
            output=output,
        )
    raise typer.Exit(code)


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
    with client(url, token) as api:
        cid = api.cluster_id(cluster)
        if not dry_run:
            confirm(f"Remove {', '.join(hostnames)} from cluster {cluster}?", yes)
        body = {"nodes": [{"hostname": h} for h in hostnames]}
        params = {"on_busy": _on_busy(queue), "confirm_master_removal": confirm_master_removal}
        code = ops.run(
            api,
            f"/api/clusters/{cid}/scale/remove",
            body,
            params,
            what=f"remove from {cluster}",
            dry_run=dry_run,
            detach=detach,
            output=output,
        )
    raise typer.Exit(code)


def upgrade(
    cluster: ClusterArg,
    version: Annotated[
        str, typer.Option("--version", help="the RKE2 release, e.g. v1.32.1+rke2r1")
    ],
    artifact_dir: Annotated[
        str | None, typer.Option("--artifact-dir", help="air-gap artifacts of that release")
    ] = None,
    queue: QueueOpt = False,
    detach: DetachOpt = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
    output: OutputOpt = Output.TABLE,
) -> None:
    """Upgrade every node: servers one at a time, then agents; follows the job."""
    with client(url, token) as api:
        cid = api.cluster_id(cluster)
        body = {"version": version, "artifact_dir": artifact_dir}
        code = ops.run(
            api,
            f"/api/clusters/{cid}/upgrade",
            body,
            {"on_busy": _on_busy(queue)},
            what=f"upgrade {cluster}",
            dry_run=False,
            detach=detach,
            output=output,
        )
    raise typer.Exit(code)


@snapshot_app.command("list")
def snapshot_list(
    cluster: ClusterArg,
    url: UrlOpt = None,
    token: TokenOpt = None,
    output: OutputOpt = Output.TABLE,
) -> None:
    """List the cluster's etcd snapshots (as last recorded)."""
    with client(url, token) as api:
        found = api.get(f"/api/clusters/{api.cluster_id(cluster)}/snapshots")
    if output == Output.JSON:
        return emit_json(found)
    table = Table("name", "node", "size", "taken at", "location")
    for s in found:
        table.add_row(
            s["name"],
            s["node"],
            str(s.get("size") or ""),
            str(s.get("taken_at") or ""),
            s["location"],
        )
    out.print(table)


@snapshot_app.command("save")
def snapshot_save(
    cluster: ClusterArg,
    name: Annotated[str, typer.Option("--name", help="1-40 of a-z, 0-9 and inner '-'")],
    queue: QueueOpt = False,
    detach: DetachOpt = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
    output: OutputOpt = Output.TABLE,
) -> None:
    """Save an etcd snapshot on a server; follows the job."""
    with client(url, token) as api:
        cid = api.cluster_id(cluster)
        code = ops.run(
            api,
            f"/api/clusters/{cid}/snapshots",
            {"name": name},
            {"on_busy": _on_busy(queue)},
            what=f"snapshot {cluster}",
            dry_run=False,
            detach=detach,
            output=output,
        )
    raise typer.Exit(code)


@snapshot_app.command("delete")
def snapshot_delete(
    cluster: ClusterArg,
    name: Annotated[str, typer.Argument(help="the snapshot's full name", show_default=False)],
    yes: YesOpt = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
    output: OutputOpt = Output.TABLE,
) -> None:
    """Delete an etcd snapshot; follows the job."""
    with client(url, token) as api:
        cid = api.cluster_id(cluster)
        confirm(f"Delete snapshot {name} of cluster {cluster}?", yes)
        accepted = api.request("DELETE", f"/api/clusters/{cid}/snapshots/{name}")
        ended = ops.follow_jobs(api, accepted["jobs"], output)
    if output == Output.JSON:
        emit_json({"accepted": accepted, "jobs": ended})
    raise typer.Exit(OK if ended and ended[-1]["status"] == "succeeded" else FAILED)


def restore(
    cluster: ClusterArg,
    snapshot: Annotated[str, typer.Option("--snapshot", help="the snapshot's full name")],
    yes: YesOpt = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
    output: OutputOpt = Output.TABLE,
) -> None:
    """Restore the cluster's etcd from a snapshot (a cluster reset); follows the job."""
    with client(url, token) as api:
        cid = api.cluster_id(cluster)
        confirm(f"Restore cluster {cluster} from {snapshot}? Everything after it is lost.", yes)
        code = ops.run(
            api,
            f"/api/clusters/{cid}/restore",
            {"snapshot": snapshot},
            {"confirm_restore": True},
            what=f"restore {cluster}",
            dry_run=False,
            detach=False,
            output=output,
        )
    raise typer.Exit(code)


@api_token_app.command("list")
def api_token_list(
    url: UrlOpt = None, token: TokenOpt = None, output: OutputOpt = Output.TABLE
) -> None:
    """List API tokens (never the tokens themselves)."""
    with client(url, token) as api:
        found = api.get("/api/tokens")
    if output == Output.JSON:
        return emit_json(found)
    table = Table("id", "name", "role", "prefix", "last used", "revoked")
    for t in found:
        table.add_row(
            str(t["id"]),
            t["name"],
            t["role"],
            t["prefix"] + "…",
            str(t.get("last_used_at") or "-"),
            str(t.get("revoked_at") or "-"),
        )
    out.print(table)


@api_token_app.command("create")
def api_token_create(
    name: Annotated[str, typer.Option("--name", help="who holds it")],
    role: Annotated[str, typer.Option("--role", help="viewer, operator or admin")],
    url: UrlOpt = None,
    token: TokenOpt = None,
    output: OutputOpt = Output.TABLE,
) -> None:
    """Create an API token; it is printed once, as the last word of the last line."""
    with client(url, token) as api:
        made = api.post("/api/tokens", {"name": name, "role": role})
    if output == Output.JSON:
        return emit_json(made)
    print(
        f"Created token '{made['name']}' (role {made['role']}). It is shown only now; keep it safe."
    )
    print(f"token: {made['token']}", flush=True)


@api_token_app.command("revoke")
def api_token_revoke(
    ref: Annotated[str, typer.Argument(help="token name or id")],
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Revoke an API token: it stops working at once."""
    with client(url, token) as api:
        api.request("DELETE", f"/api/tokens/{ref}")
    out.print(f"token {ref} revoked", markup=False)
