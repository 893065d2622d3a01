"""``cluster``, ``node``, ``lock`` and ``force-unlock``: clusters, their nodes and their lock."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from rke2_manager.client import clusterfile, ops
from rke2_manager.client.cmd_jobs import DetachOpt, DryRunOpt, QueueOpt, on_busy
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
from rke2_manager.client.errors import Refused

cluster_app = typer.Typer(
    help="Clusters: list, show, create, delete, kubeconfig.", no_args_is_help=True
)
node_app = typer.Typer(
    help="A cluster's nodes: list, edit or forget a PENDING node.", no_args_is_help=True
)
HostArg = Annotated[str, typer.Argument(help="the node's hostname", show_default=False)]


def nodes_table(nodes: list[dict[str, Any]]) -> Table:
    table = Table("hostname", "ip", "role", "status", "reason")
    for n in nodes:
        role = n["role"] + (" (initial master)" if n.get("is_initial_master") else "")
        table.add_row(n["hostname"], n["ip"], role, n["status"], n.get("status_reason") or "")
    return table


def lock_text(c: dict[str, Any]) -> str:
    if c["operation_status"] != "running":
        return "idle"
    return f"held by job {c['current_job_id']} ({c['operation_locked_by']})"


@cluster_app.command("list")
def cluster_list(
    url: UrlOpt = None, token: TokenOpt = None, output: OutputOpt = Output.TABLE
) -> None:
    """List clusters with their stage, nodes and lock."""
    with client(url, token) as api:
        clusters = api.get("/api/clusters")
    if output == Output.JSON:
        return emit_json(clusters)
    table = Table("id", "name", "stage", "nodes", "lock")
    for c in clusters:
        active = sum(n["status"] == "ACTIVE" for n in c["nodes"])
        table.add_row(
            str(c["id"]), c["name"], c["stage"], f"{active}/{len(c['nodes'])} active", lock_text(c)
        )
    out.print(table)


@cluster_app.command("show")
def cluster_show(
    cluster: ClusterArg,
    url: UrlOpt = None,
    token: TokenOpt = None,
    output: OutputOpt = Output.TABLE,
) -> None:
    """Show a cluster: settings, nodes, lock and queue."""
    with client(url, token) as api:
        cid = api.cluster_id(cluster)
        found = api.get(f"/api/clusters/{cid}")
        queue = api.get(f"/api/clusters/{cid}/queue")
    if output == Output.JSON:
        return emit_json({**found, "queue": queue})
    rke2 = found["rke2"]
    version = rke2["version"] or f"channel {rke2['channel']}"
    out.print(f"cluster {found['name']} (id {found['id']}): stage {found['stage']}", markup=False)
    out.print(
        f"  rke2 {version}; ssh as {found['ssh']['user']}, port {found['ssh']['port']}",
        markup=False,
    )
    out.print(
        f"  registration address: {found['registration_address'] or '(the initial master)'}",
        markup=False,
    )
    if found["ssh"].get("public_key"):
        out.print(f"  ssh public key: {found['ssh']['public_key'].strip()}", markup=False)
    out.print(f"  lock: {lock_text(found)}", markup=False)
    for q in queue:
        out.print(
            f"  queued #{q['position']}: job {q['job']['id']} {q['job']['operation']}", markup=False
        )
    out.print(nodes_table(found["nodes"]))


@cluster_app.command("create")
def cluster_create(
    file: Annotated[Path, typer.Option("--file", "-f", help="cluster.yaml (see docs/cli.md)")],
    url: UrlOpt = None,
    token: TokenOpt = None,
    output: OutputOpt = Output.TABLE,
) -> None:
    """Create a cluster from a cluster file, without installing it (``apply`` does both)."""
    with client(url, token) as api:
        spec = clusterfile.load(file)
        created = api.post("/api/clusters", spec.create_body())
    if output == Output.JSON:
        return emit_json(created)
    out.print(
        f"cluster {created['name']} created (id {created['id']}), "
        f"{len(created['nodes'])} node(s) PENDING",
        markup=False,
    )


@cluster_app.command("delete")
def cluster_delete(
    cluster: ClusterArg, yes: YesOpt = False, url: UrlOpt = None, token: TokenOpt = None
) -> None:
    """Delete a cluster from the manager (its nodes are not touched)."""
    with client(url, token) as api:
        cid = api.cluster_id(cluster)
        confirm(f"Delete cluster {cluster} (id {cid}) from the manager?", yes)
        api.request("DELETE", f"/api/clusters/{cid}")
    out.print(f"cluster {cluster} deleted", markup=False)


@cluster_app.command("kubeconfig")
def cluster_kubeconfig(cluster: ClusterArg, url: UrlOpt = None, token: TokenOpt = None) -> None:
    """Print the cluster's kubeconfig (admin role)."""
    with client(url, token) as api:
        cid = api.cluster_id(cluster)
        text = api.text(f"/api/clusters/{cid}/kubeconfig")
    print(text, end="")


@node_app.command("list")
def node_list(
    cluster: ClusterArg,
    url: UrlOpt = None,
    token: TokenOpt = None,
    output: OutputOpt = Output.TABLE,
) -> None:
    """List a cluster's nodes with their status."""
    with client(url, token) as api:
        nodes = api.get(f"/api/clusters/{api.cluster_id(cluster)}/nodes")
    if output == Output.JSON:
        return emit_json(nodes)
    out.print(nodes_table(nodes))


@node_app.command("edit")
def node_edit(
    cluster: ClusterArg,
    hostname: HostArg,
    new_hostname: Annotated[str | None, typer.Option("--hostname", help="new hostname")] = None,
    ip: Annotated[str | None, typer.Option("--ip", help="new IP address")] = None,
    url: UrlOpt = None,
    token: TokenOpt = None,
    output: OutputOpt = Output.TABLE,
) -> None:
    """Fix a PENDING node's hostname or IP."""
    body = {k: v for k, v in {"hostname": new_hostname, "ip": ip}.items() if v is not None}
    with client(url, token) as api:
        node = api.request(
            "PATCH", f"/api/clusters/{api.cluster_id(cluster)}/nodes/{hostname}", json=body
        )
    if output == Output.JSON:
        return emit_json(node)
    out.print(
        f"node {node['hostname']}: {node['ip']} ({node['role']}, {node['status']})", markup=False
    )


@node_app.command("forget")
def node_forget(
    cluster: ClusterArg,
    hostname: HostArg,
    confirm_master_removal: Annotated[
        bool, typer.Option("--confirm-master-removal", help="needed to forget an installed server")
    ] = False,
    yes: YesOpt = False,
    queue: QueueOpt = False,
    dry_run: DryRunOpt = False,
    detach: DetachOpt = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
    output: OutputOpt = Output.TABLE,
) -> None:
    """Forget a node without contacting it: a PENDING node just goes; an installed (dead) one
    is removed from Kubernetes and etcd through a live server. Follows the job."""
    ops.command(
        url,
        token,
        cluster,
        f"/api/clusters/{{cid}}/nodes/{hostname}",
        None,
        {"on_busy": on_busy(queue), "confirm_master_removal": confirm_master_removal},
        what=f"forget {hostname}",
        output=output,
        dry_run=dry_run,
        detach=detach,
        ask=f"Forget node {hostname} of cluster {cluster}?",
        yes=yes,
        method="DELETE",
    )


@node_app.command("accept-host-key")
def node_accept(
    cluster: ClusterArg, hostname: HostArg, url: UrlOpt = None, token: TokenOpt = None
) -> None:
    """Accept the new SSH host key a reinstalled node offered (admin role)."""
    with client(url, token) as api:
        node = api.post(f"/api/clusters/{api.cluster_id(cluster)}/nodes/{hostname}/accept-host-key")
    out.print(f"node {node['hostname']}: new host key accepted", markup=False)


def lock(
    cluster: ClusterArg,
    url: UrlOpt = None,
    token: TokenOpt = None,
    output: OutputOpt = Output.TABLE,
) -> None:
    """Show who holds a cluster's lock and who waits for it."""
    with client(url, token) as api:
        cid = api.cluster_id(cluster)
        held = api.get(f"/api/clusters/{cid}/lock")
        queue = api.get(f"/api/clusters/{cid}/queue")
    if output == Output.JSON:
        return emit_json({**held, "queue": queue})
    text = lock_text(held)
    if held.get("lock_expires_at"):
        text += f", lease until {held['lock_expires_at']}"
    out.print(f"cluster {cluster}: {text}", markup=False)
    for q in queue:
        out.print(
            f"  queued #{q['position']}: job {q['job']['id']} {q['job']['operation']}", markup=False
        )


def force_unlock(
    cluster: ClusterArg,
    reason: Annotated[
        str, typer.Option("--reason", help="why (recorded in the job and the audit log)")
    ],
    job: Annotated[
        int | None, typer.Option("--job", help="the job you expect to hold the lock")
    ] = None,
    yes: YesOpt = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
    output: OutputOpt = Output.TABLE,
) -> None:
    """Stop the job holding a cluster's lock and free the lock (admin role)."""
    with client(url, token) as api:
        cid = api.cluster_id(cluster)
        holder = job or api.get(f"/api/clusters/{cid}/lock")["current_job_id"]
        if holder is None:
            raise Refused(f"cluster {cluster} is not locked")
        confirm(f"Stop job {holder} and free the lock of cluster {cluster}?", yes)
        ended = api.post(
            f"/api/admin/clusters/{cid}/force-unlock", {"job_id": holder, "reason": reason}
        )
    if output == Output.JSON:
        return emit_json(ended)
    out.print(
        f"job {ended['id']} {ended['status']}: {ended['reason']}; the lock is free", markup=False
    )
