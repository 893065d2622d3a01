"""The plan of ``apply``: what it takes to bring a cluster to its file, from the cluster as
the API shows it and each job-starting step's dry run (``?dry_run=true``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rke2_manager.client import clusterfile
from rke2_manager.client.api import Api
from rke2_manager.client.common import out
from rke2_manager.client.errors import Refused, UsageError
from rke2_manager.client.ops import nodes_text, plan_lines


@dataclass
class Step:
    title: str
    method: str
    path: str
    body: Any = None
    params: dict[str, Any] = field(default_factory=dict)
    job: bool = True
    plan: dict[str, Any] | None = None
    """The dry run's answer (job-starting steps of an existing cluster)."""


@dataclass
class Plan:
    cluster: dict[str, Any] | None
    steps: list[Step] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "cluster": self.cluster["name"] if self.cluster else None,
            "exists": self.cluster is not None,
            "steps": [
                {"title": s.title, "method": s.method, "path": s.path, "dry_run": s.plan}
                for s in self.steps
            ],
            "notes": self.notes,
        }


def find(api: Api, name: str) -> dict[str, Any] | None:
    return next((c for c in api.get("/api/clusters") if c["name"] == name), None)


def differences(spec: clusterfile.Spec, cluster: dict[str, Any]) -> list[str]:
    """How the cluster differs from the file (empty: it matches)."""
    found: list[str] = []
    have = {n["hostname"]: n for n in cluster["nodes"]}
    for name, want in spec.nodes().items():
        node = have.get(name)
        if node is None:
            found.append(f"node {name} is missing")
        elif (node["ip"], node["role"]) != (want["ip"], want["role"]):
            found.append(
                f"node {name} is {node['role']} at {node['ip']}, "
                f"the file says {want['role']} at {want['ip']}"
            )
        elif node["status"] != "ACTIVE":
            found.append(
                f"node {name} is {node['status']}"
                + (f": {node['status_reason']}" if node.get("status_reason") else "")
            )
    found += [f"node {n} is not in the file" for n in have if n not in spec.nodes()]
    if cluster["stage"] != "ready":
        found.append(f"the cluster's stage is {cluster['stage']}, not ready")
    if spec.settings_patch(cluster):
        found.append("settings differ: " + ", ".join(sorted(spec.settings_patch(cluster))))
    return found


def build(
    api: Api, spec: clusterfile.Spec, allow_remove: bool, skip_preflight: list[str] | None = None
) -> Plan:
    """What apply would do; UsageError when the file cannot be reached from the cluster."""
    cluster = find(api, spec.name)
    plan = Plan(cluster)
    wanted = spec.nodes()
    if cluster is None:
        body = spec.create_body()
        servers = [n for n in body["nodes"] if n["role"] == "server"]
        plan.steps.append(
            Step(
                f"create cluster {spec.name} with {len(body['nodes'])} node(s)",
                "POST",
                "/api/clusters",
                body,
                job=False,
            )
        )
        plan.steps.append(
            Step(
                f"install {nodes_text(body['nodes'])} "
                f"(the initial master {servers[0]['hostname']} first)",
                "POST",
                "/api/jobs/install/{id}",
                params={"skip_preflight": skip_preflight},
            )
        )
        plan.notes.append(
            "the cluster does not exist yet: this plan comes from the file "
            "(no dry run is possible before it is created)"
        )
        return plan
    cid, have = cluster["id"], {n["hostname"]: n for n in cluster["nodes"]}
    blockers = []
    for name, want in wanted.items():
        node = have.get(name)
        if node is None or (node["ip"], node["role"]) == (want["ip"], want["role"]):
            continue
        if node["status"] == "PENDING" and node["role"] == want["role"]:
            plan.steps.append(
                Step(
                    f"change PENDING node {name}'s IP {node['ip']} -> {want['ip']}",
                    "PATCH",
                    f"/api/clusters/{cid}/nodes/{name}",
                    {"ip": want["ip"]},
                    job=False,
                )
            )
        else:
            blockers.append(
                f"node {name} is a {node['status']} {node['role']} at {node['ip']}; the file "
                f"says {want['role']} at {want['ip']}: take it out of the file and apply with "
                "--allow-remove, then add it back"
            )
    if blockers:
        raise UsageError("; ".join(blockers))
    upgrade = cluster["stage"] == "ready" and spec.model.rke2.version not in (
        None,
        cluster["rke2"]["version"],
    )
    patch = spec.settings_patch(cluster, keep_version=upgrade)
    if patch:
        plan.steps.append(
            Step(
                f"update settings: {', '.join(sorted(patch))}",
                "PATCH",
                f"/api/clusters/{cid}",
                patch,
                job=False,
            )
        )
    existing = [n for n in cluster["nodes"] if n["hostname"] in wanted]
    if cluster["stage"] != "ready" or any(n["status"] != "ACTIVE" for n in existing):
        plan.steps.append(
            Step(
                f"install {nodes_text(cluster['nodes'])}",
                "POST",
                f"/api/jobs/install/{cid}",
                params={"skip_preflight": skip_preflight},
            )
        )
    if upgrade:
        body = {"version": spec.model.rke2.version, "artifact_dir": spec.model.rke2.artifact_dir}
        plan.steps.append(
            Step(
                f"upgrade every node to {spec.model.rke2.version}",
                "POST",
                f"/api/clusters/{cid}/upgrade",
                body,
            )
        )
    new = [n for h, n in wanted.items() if h not in have]
    if new:
        plan.steps.append(
            Step(
                f"add {nodes_text(new)}",
                "POST",
                f"/api/clusters/{cid}/scale/add",
                {"nodes": new},
                {"skip_preflight": skip_preflight},
            )
        )
    extra = [n for n in cluster["nodes"] if n["hostname"] not in wanted]
    for role in ("agent", "server"):
        gone = [n for n in extra if n["role"] == role]
        if not gone:
            continue
        if not allow_remove:
            plan.notes.append(
                f"not removing {nodes_text(gone)}: they are not in the file "
                "(pass --allow-remove to remove them)"
            )
            continue
        params = {"confirm_master_removal": True} if role == "server" else {}
        body = {
            "nodes": [{"hostname": n["hostname"], "ip": n["ip"], "role": n["role"]} for n in gone]
        }
        plan.steps.append(
            Step(
                f"REMOVE {nodes_text(gone)}",
                "POST",
                f"/api/clusters/{cid}/scale/remove",
                body,
                params,
            )
        )
    _dry_runs(api, plan)
    return plan


def _dry_runs(api: Api, plan: Plan) -> None:
    """Ask the API what each job-starting step would do (as the cluster is now)."""
    earlier_job = False
    for step in plan.steps:
        if not step.job or step.path.endswith("/upgrade"):
            earlier_job = earlier_job or step.job
            continue
        step.plan = api.post(step.path, step.body, dry_run=True, on_busy="queue", **step.params)
        if not step.plan["would_succeed"] and not earlier_job:
            refusal = step.plan.get("refusal") or {}
            raise Refused(f"{step.title}: refused: {refusal.get('detail', 'see the plan')}")
        earlier_job = True


def show(plan: Plan, spec: clusterfile.Spec) -> None:
    name = spec.name
    if not plan.steps:
        out.print(f"cluster {name}: nothing to do", markup=False, highlight=False)
    else:
        out.print(f"Plan for cluster {name}:", markup=False, highlight=False)
    for number, step in enumerate(plan.steps, 1):
        out.print(f"{number}. {step.title}", markup=False, highlight=False)
        if step.plan is not None:
            for line in plan_lines(step.plan, "   dry run")[0:]:
                out.print(f"   {line.strip()}", markup=False, highlight=False)
    for note in plan.notes:
        out.print(f"note: {note}", markup=False, highlight=False)
    if any(s.plan and not s.plan["would_succeed"] for s in plan.steps):
        out.print(
            "note: a refused step was checked against the cluster as it is now; the steps "
            "before it change that, and it is checked again when it runs",
            markup=False,
            highlight=False,
        )
