"""Start an operation, show its plan (``--dry-run``) or follow its jobs to their end."""

from __future__ import annotations

from typing import Any

import typer
from rich.console import Console

from rke2_manager.client.api import Api
from rke2_manager.client.common import Output, client, confirm, emit_json, err, out
from rke2_manager.client.errors import FAILED, OK, REFUSED
from rke2_manager.client.progress import summary, watch


def nodes_text(nodes: list[dict[str, Any]]) -> str:
    return ", ".join(f"{n['hostname']} ({n['role']}, {n['ip']})" for n in nodes) or "-"


def plan_lines(plan: dict[str, Any], title: str) -> list[str]:
    """A dry run's answer as text: the jobs in order, each guardrail's verdict, warnings."""
    verdict = (
        f"would be accepted ({plan['status']})" if plan["would_succeed"] else "would be REFUSED"
    )
    lines = [f"{title}: {verdict}"]
    for job in plan["jobs"]:
        waits = f", after step {job['waits_for']}" if job.get("waits_for") else ""
        lines.append(
            f"  {job['step']}. {job['operation']} ({job['status']}{waits}): "
            f"{nodes_text(job['nodes'])}"
        )
    for check in plan["guardrails"]:
        said = f": {'; '.join(check['messages'])}" if check["messages"] else ""
        lines.append(f"  {check['guardrail']} {check['verdict']}{said}")
    lines += [f"  warning: {w}" for w in plan["warnings"]]
    if plan.get("refusal"):
        refusal = plan["refusal"]
        lines.append(f"  refused ({refusal['status']}): {refusal['detail']}")
    return lines


def progress_console(output: Output) -> Console:
    """Progress goes to stdout, except with ``--output json`` (stdout is JSON only)."""
    return err if output == Output.JSON else out


def follow_jobs(api: Api, jobs: list[dict[str, Any]], output: Output) -> list[dict[str, Any]]:
    """Follow each job to its end, in order; stops after the first that did not succeed."""
    console = progress_console(output)
    ended = []
    for job in jobs:
        view = watch(api, int(job["id"]), console)
        ended.append(summary(view))
        if view.status != "succeeded":
            break
    return ended


def run(
    api: Api,
    path: str,
    body: Any,
    params: dict[str, Any],
    *,
    what: str,
    dry_run: bool,
    detach: bool,
    output: Output,
    method: str = "POST",
) -> int:
    """Do one job-starting call; the exit status (0 only when every job succeeded)."""
    if dry_run:
        plan = api.request(method, path, params={**params, "dry_run": True}, json=body)
        if output == Output.JSON:
            emit_json(plan)
        else:
            for line in plan_lines(plan, f"{what} (dry run, nothing changed)"):
                out.print(line, markup=False, highlight=False)
        return OK if plan["would_succeed"] else REFUSED
    accepted = api.request(method, path, params=params, json=body)
    jobs = accepted["jobs"]
    console = progress_console(output)
    for warning in accepted.get("warnings", []):
        console.print(f"warning: {warning}", markup=False, highlight=False)
    queued = f" (queued, position {accepted['position']})" if accepted.get("position") else ""
    console.print(
        f"{what}: job {', '.join(str(j['id']) for j in jobs)} {accepted['status']}{queued}",
        markup=False,
        highlight=False,
    )
    if detach:
        if output == Output.JSON:
            emit_json(accepted)
        return OK
    ended = follow_jobs(api, jobs, output)
    if output == Output.JSON:
        emit_json({"accepted": accepted, "jobs": ended})
    ok = len(ended) == len(jobs) and all(j["status"] == "succeeded" for j in ended)
    return OK if ok else FAILED


def command(
    url: str | None,
    token: str | None,
    cluster: str,
    path: str,
    body: Any,
    params: dict[str, Any],
    *,
    what: str,
    output: Output,
    dry_run: bool = False,
    detach: bool = False,
    ask: str | None = None,
    yes: bool = False,
    method: str = "POST",
) -> None:
    """A whole job-starting command: ``path`` names the cluster ``{cid}``; ``ask``, when
    given, is confirmed first (not for a dry run). Ends with the exit status of :func:`run`."""
    with client(url, token) as api:
        cid = api.cluster_id(cluster)
        if ask is not None and not dry_run:
            confirm(ask, yes)
        code = run(
            api,
            path.format(cid=cid),
            body,
            params,
            what=what,
            dry_run=dry_run,
            detach=detach,
            output=output,
            method=method,
        )
    raise typer.Exit(code)
