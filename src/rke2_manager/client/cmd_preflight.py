"""``preflight``: run the read-only node checks as a job, and show any job's results."""

from __future__ import annotations

from typing import Any

import typer
from rich.table import Table

from rke2_manager.client import ops
from rke2_manager.client.api import Api
from rke2_manager.client.cmd_jobs import DetachOpt, DryRunOpt, JobArg, QueueOpt, SkipOpt, on_busy
from rke2_manager.client.common import (
    ClusterArg,
    Output,
    OutputOpt,
    TokenOpt,
    UrlOpt,
    client,
    emit_json,
    out,
)
from rke2_manager.client.errors import FAILED, OK


def results_table(found: dict[str, Any]) -> Table:
    table = Table("host", "check", "result", "message", "fix")
    for host, checks in sorted(found["hosts"].items()):
        for c in checks:
            result = c["result"] + (" (skipped)" if c.get("skipped") else "")
            table.add_row(host, c["check"], result, c["message"], c.get("fix") or "")
    return table


def show_results(api: Api, job_id: int, output: Output) -> dict[str, Any]:
    found: dict[str, Any] = api.get(f"/api/jobs/{job_id}/preflight")
    if output == Output.JSON:
        emit_json(found)
        return found
    out.print(results_table(found))
    for host, checks in sorted(found["failed"].items()):
        out.print(f"{host}: failed {', '.join(checks)}", markup=False, highlight=False)
    for host in found["unreported"]:
        out.print(f"{host}: reported nothing (see the job's reason)", markup=False)
    return found


def preflight(
    cluster: ClusterArg,
    skip_preflight: SkipOpt = None,
    queue: QueueOpt = False,
    dry_run: DryRunOpt = False,
    detach: DetachOpt = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
    output: OutputOpt = Output.TABLE,
) -> None:
    """Check every node (SSH and sudo, OS, CPU and memory, ports, swap, clock, firewall, disk)
    without changing anything; prints each host's pass/warn/fail with how to fix it."""
    with client(url, token) as api:
        cid = api.cluster_id(cluster)
        path = f"/api/clusters/{cid}/preflight"
        params = {"on_busy": on_busy(queue), "skip_preflight": skip_preflight}
        if dry_run or detach:
            code = ops.run(
                api,
                path,
                None,
                params,
                what=f"preflight {cluster}",
                dry_run=dry_run,
                detach=detach,
                output=output,
            )
            raise typer.Exit(code)
        accepted = api.post(path, None, **params)
        ended = ops.follow_jobs(api, accepted["jobs"], output)
        show_results(api, int(accepted["job_id"]), output)
    raise typer.Exit(OK if ended and ended[-1]["status"] == "succeeded" else FAILED)


def job_preflight(
    job: JobArg, url: UrlOpt = None, token: TokenOpt = None, output: OutputOpt = Output.TABLE
) -> None:
    """A job's preflight results (preflight, install and scale add jobs run the checks)."""
    with client(url, token) as api:
        show_results(api, job, output)
