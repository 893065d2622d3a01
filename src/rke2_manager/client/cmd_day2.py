"""Day-2 operations (``upgrade``, ``snapshot``, ``restore``) and ``api-token`` (tokens through
the API; ``token`` makes them on the server's database)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from rke2_manager.client import ops
from rke2_manager.client.cmd_jobs import DetachOpt, QueueOpt, on_busy
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
from rke2_manager.client.errors import FAILED, OK

snapshot_app = typer.Typer(help="etcd snapshots: list, save, delete.", no_args_is_help=True)
api_token_app = typer.Typer(
    help="API tokens through the API (admin role); `token` does the same on the server's database.",
    no_args_is_help=True,
)


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
    ops.command(
        url,
        token,
        cluster,
        "/api/clusters/{cid}/upgrade",
        {"version": version, "artifact_dir": artifact_dir},
        {"on_busy": on_busy(queue)},
        what=f"upgrade {cluster}",
        output=output,
        detach=detach,
    )


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
    # the API answers {"snapshots": [...], "servers": [{"node", "listed_at", "job_id"}]}
    table = Table("name", "node", "size", "taken at", "location")
    for s in found["snapshots"]:
        table.add_row(
            s["name"],
            s["node"],
            str(s.get("size") or ""),
            str(s.get("taken_at") or ""),
            s["location"],
        )
    out.print(table)
    for server in found["servers"]:
        listed = server.get("listed_at")
        when = f"listed {listed} (job {server.get('job_id')})" if listed else "never listed"
        out.print(f"{server['node']}: {when}")


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
    ops.command(
        url,
        token,
        cluster,
        "/api/clusters/{cid}/snapshots",
        {"name": name},
        {"on_busy": on_busy(queue)},
        what=f"snapshot {cluster}",
        output=output,
        detach=detach,
    )


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
    ops.command(
        url,
        token,
        cluster,
        "/api/clusters/{cid}/restore",
        {"snapshot": snapshot},
        {"confirm_restore": True},
        what=f"restore {cluster}",
        output=output,
        ask=f"Restore cluster {cluster} from {snapshot}? Everything after it is lost.",
        yes=yes,
    )


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
