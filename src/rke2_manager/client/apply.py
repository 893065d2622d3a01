"""``apply -f cluster.yaml``: converge a cluster to its file, like k0sctl.

The plan is built from the cluster as the API shows it and each job-starting step's dry run
(``?dry_run=true``: the guardrails' verdicts, warnings, refusals); it is printed, confirmed
(unless ``--yes``), then run step by step with ``on_busy=queue``, following each job's events.
The command exits 0 only when, at the end, the cluster matches the file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from rke2_manager.client import clusterfile
from rke2_manager.client.api import Api
from rke2_manager.client.cmd_jobs import SkipOpt
from rke2_manager.client.common import (
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
from rke2_manager.client.errors import OperationFailed
from rke2_manager.client.ops import follow_jobs, progress_console
from rke2_manager.client.plan import Plan, build, differences, find, show


def execute(api: Api, plan: Plan, output: Output) -> list[dict[str, Any]]:
    """Run the steps in order; OperationFailed at the first job that does not succeed."""
    console = progress_console(output)
    cid = plan.cluster["id"] if plan.cluster else None
    ended: list[dict[str, Any]] = []
    for number, step in enumerate(plan.steps, 1):
        console.print(f"step {number}: {step.title}", markup=False, highlight=False)
        path = step.path.replace("{id}", str(cid))
        if not step.job:
            answer = api.request(step.method, path, json=step.body)
            if step.path == "/api/clusters":
                cid = answer["id"]
            continue
        accepted = api.post(path, step.body, on_busy="queue", **step.params)
        for warning in accepted.get("warnings", []):
            console.print(f"warning: {warning}", markup=False, highlight=False)
        done = follow_jobs(api, accepted["jobs"], output)
        ended += done
        failed = [j for j in done if j["status"] != "succeeded"]
        if failed or len(done) < len(accepted["jobs"]):
            job = failed[0] if failed else done[-1]
            raise OperationFailed(
                f"step {number} ({step.title}): "
                f"job {job['job_id']} {job['status']}: {job['reason']}"
            )
    return ended


def apply(
    file: Annotated[Path, typer.Option("--file", "-f", help="the cluster file (see docs/cli.md)")],
    allow_remove: Annotated[
        bool, typer.Option("--allow-remove", help="remove nodes that are not in the file")
    ] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="print the plan and stop")] = False,
    skip_preflight: SkipOpt = None,
    yes: YesOpt = False,
    url: UrlOpt = None,
    token: TokenOpt = None,
    output: OutputOpt = Output.TABLE,
) -> None:
    """Create or converge a cluster to FILE: create, install, add and (with --allow-remove)
    remove nodes. Prints the plan, asks, runs it; exits 0 only when the cluster matches."""
    with client(url, token) as api:
        spec = clusterfile.load(file)
        plan = build(api, spec, allow_remove, skip_preflight)
        if output == Output.JSON and dry_run:
            return emit_json(plan.as_json())
        if output != Output.JSON:
            show(plan, spec)
        if dry_run:
            return
        if plan.steps:
            confirm("Apply this plan?", yes)
        jobs = execute(api, plan, output)
        cluster = find(api, spec.name)
        left = differences(spec, cluster) if cluster else ["the cluster does not exist"]
        if output == Output.JSON:
            emit_json(
                {"plan": plan.as_json(), "jobs": jobs, "matches": not left, "differences": left}
            )
        if left:
            raise OperationFailed(f"cluster {spec.name} does not match {file}: " + "; ".join(left))
        if output != Output.JSON:
            out.print(f"cluster {spec.name} matches {file}", markup=False, highlight=False)
