"""``?dry_run=true``: the plan of a job-starting call, answered 200 without changing anything.

Every job-starting route passes ``dry_run`` here (:func:`answer_plan`) with the same call it
makes for real; the call runs in a :class:`~rke2_manager.jobs.plan_preview.PlanSession`, so no
lock is taken, no job or node is written, nothing is audited and no worker is woken.

A plan that the real call would refuse (a guardrail's 400, the cluster-busy 409, a removal
naming an unknown node) still answers **200**, with ``would_succeed: false`` and the exact
problem the real call would answer in ``refusal``: the operator (and ``rke2-manager apply``)
sees the whole plan — every guardrail's verdict, the nodes, the order — at once rather than one
error. What makes a plan impossible to compute answers as the real call does: an unknown
cluster (404), an invalid body or query (422), a missing role (401/403).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Annotated, Any

from fastapi import Query
from fastapi.responses import JSONResponse

from rke2_manager.clusters.service import get_cluster
from rke2_manager.clusters.views import snapshot
from rke2_manager.context import AppContext
from rke2_manager.db import WriteSession
from rke2_manager.errors import DomainError, GuardrailViolation, InvalidRequest
from rke2_manager.guardrails import (
    ClusterView,
    NewNode,
    ProbePolicy,
    ProbeResult,
    check_bootstrap,
    check_identity,
    check_master_removal,
    split_by_role,
)
from rke2_manager.jobs import preflight as preflight_service
from rke2_manager.jobs.create import Accepted
from rke2_manager.jobs.plan_preview import plan_session
from rke2_manager.jobs.plans import InstallRequest
from rke2_manager.jobs.schemas import JobNode
from rke2_manager.models import Job, NodeRole
from rke2_manager.operations.plan_schemas import (
    GuardrailVerdict,
    OperationPlan,
    PlannedJob,
    PlanRefusal,
)

DryRunQuery = Annotated[
    bool,
    Query(
        description="true: answer 200 with what the call would do (jobs in order, nodes, "
        "guardrail verdicts, warnings, or the refusal it would meet) and change nothing: no "
        "lock, no job, no audit entry",
        examples=[False],
    ),
]
#: OpenAPI for the 200 a dry run answers (merge into a job-starting route's ``responses``).
PLAN_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {
        "model": OperationPlan,
        "description": "dry_run=true: the plan (also when the real call would be refused: "
        "would_succeed false, refusal set)",
    }
}
Verdicts = Callable[[ClusterView], list[GuardrailVerdict]]


def verdict(rule: str, check: Callable[[], list[str]]) -> GuardrailVerdict:
    """Run one guardrail ``check`` (returning warnings, raising on refusal) into a verdict."""
    try:
        warnings = check()
    except GuardrailViolation as refusal:
        return GuardrailVerdict(guardrail=rule, verdict="refused", messages=[refusal.detail])
    return GuardrailVerdict(
        guardrail=rule, verdict="warn" if warnings else "pass", messages=warnings
    )


def _reconcile(
    checks: list[GuardrailVerdict], accepted: Accepted | None, refusal: DomainError | None
) -> list[GuardrailVerdict]:
    """Make the verdicts agree with what the real path decided.

    The real path stops at its first refusal, which wins over a verdict computed on its own; a
    refusal the real path turned into a warning (a queued job whose jobs ahead may lift it) is
    shown as ``warn`` with that warning.
    """
    rule = refusal.guardrail if isinstance(refusal, GuardrailViolation) else None
    out: list[GuardrailVerdict] = []
    for check in checks:
        if refusal is not None and check.guardrail == rule:
            check = GuardrailVerdict(guardrail=rule, verdict="refused", messages=[refusal.detail])
        elif accepted is not None and check.verdict == "refused":
            deferred = [
                w for w in accepted.warnings if w.startswith(f"{check.guardrail} refuses this now")
            ]
            check = GuardrailVerdict(guardrail=check.guardrail, verdict="warn", messages=deferred)
        out.append(check)
    if isinstance(refusal, GuardrailViolation) and rule not in {c.guardrail for c in out}:
        out.append(
            GuardrailVerdict(
                guardrail=refusal.guardrail, verdict="refused", messages=[refusal.detail]
            )
        )
    return out


#: Operations whose jobs run the preflight checks before anything else.
PREFLIGHT_FIRST = preflight_service.RUN_BY


def _preflight_skip(job: Job) -> list[str]:
    return [str(c) for c in (job.params or {}).get("skip_preflight") or []]


def _plan(
    cluster_id: int,
    accepted: Accepted | None,
    refusal: DomainError | None,
    checks: list[GuardrailVerdict],
) -> OperationPlan:
    if accepted is None:
        assert refusal is not None
        return OperationPlan(
            cluster_id=cluster_id,
            would_succeed=False,
            status=None,
            position=None,
            jobs=[],
            nodes=[],
            sequenced=False,
            guardrails=checks,
            warnings=[],
            refusal=PlanRefusal.model_validate(refusal.problem()),
        )
    jobs = [accepted.job, *accepted.waiting]
    planned = [
        PlannedJob(
            step=i + 1,
            operation=job.operation,
            status=job.status,
            nodes=[JobNode(**t) for t in job.targets],
            waits_for=i if i else None,
            preflight_skip=_preflight_skip(job) if job.operation in PREFLIGHT_FIRST else None,
        )
        for i, job in enumerate(jobs)
    ]
    return OperationPlan(
        cluster_id=cluster_id,
        would_succeed=True,
        status=accepted.job.status,
        position=accepted.position,
        jobs=planned,
        nodes=[n for job in planned for n in job.nodes],
        sequenced=accepted.sequenced,
        guardrails=checks,
        warnings=accepted.warnings,
        refusal=None,
    )


def answer_plan(
    ctx: AppContext,
    cluster_id: int,
    start: Callable[[WriteSession], Accepted],
    verdicts: Verdicts | None = None,
) -> JSONResponse:
    """Run ``start`` (the real call's service call) as a dry run and answer 200 with the plan.

    ``verdicts`` computes the guardrails that apply to the operation from the cluster as it
    is; without it only a guardrail that refuses appears. Raises NotFound (404) for an
    unknown cluster and InvalidRequest (422) for invalid input; every other DomainError
    becomes the plan's ``refusal``.
    """
    with plan_session(ctx.db) as session:
        view = snapshot(get_cluster(session, cluster_id))
        accepted: Accepted | None = None
        refusal: DomainError | None = None
        try:
            accepted = start(session)
        except InvalidRequest:
            raise  # invalid input (422): no plan to make, as for a body that fails its schema
        except DomainError as exc:
            refusal = exc
        checks = _reconcile(verdicts(view) if verdicts else [], accepted, refusal)
        body = _plan(cluster_id, accepted, refusal, checks)
    return JSONResponse(body.model_dump(mode="json"))


# The guardrails that apply to each seed operation, checked on their own ----------------------
def install_verdicts(view: ClusterView) -> list[GuardrailVerdict]:
    """G1: an install needs an initial master."""
    return [verdict("G1", lambda: InstallRequest().check(view, None, "off"))]


def add_verdicts(
    nodes: Sequence[NewNode], probe: ProbeResult | None, policy: ProbePolicy
) -> Verdicts:
    """G1 (bootstrap and the supervisor probe), G3 (when servers and agents come together),
    G4 (unique hostnames and IPs)."""

    def verdicts(view: ClusterView) -> list[GuardrailVerdict]:
        out = [verdict("G1", lambda: check_bootstrap(view, probe, policy))]
        servers, agents = split_by_role(nodes)
        if servers and agents:
            out.append(GuardrailVerdict(guardrail="G3", verdict="pass", messages=[G3_ORDER]))
        out.append(verdict("G4", lambda: _identity(view, nodes)))
        return out

    return verdicts


def remove_verdicts(hostnames: Sequence[str], confirm: bool) -> Verdicts:
    """G2, when servers are among the nodes named (last server, quorum, confirmation)."""

    def verdicts(view: ClusterView) -> list[GuardrailVerdict]:
        removing = [n for n in view.nodes if n.hostname in set(hostnames)]
        if not any(n.role == NodeRole.SERVER for n in removing):
            return []
        return [verdict("G2", lambda: check_master_removal(view, removing, confirm).warnings)]

    return verdicts


G3_ORDER = (
    "Servers and agents are added in two jobs: the servers' job first; the agents' job starts "
    "only once it has succeeded."
)


def _identity(view: ClusterView, nodes: Sequence[NewNode]) -> list[str]:
    check_identity(view, nodes)
    return []
