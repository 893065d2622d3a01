"""Preflight: read-only checks of the nodes, as a job of their own and at the start of install
and scale add (playbooks/tasks/preflight.yml, files/rke2m-preflight.sh; docs/preflight.md).

Each host reports one line per check (``[rke2m] preflight``); :func:`record` stores them on the
job when it ends (``jobs.preflight``), with ``skipped`` set on the failed checks the caller
overrode (``skip_preflight``). A failed check that was not skipped fails its host, and with it
the job, before anything changes on any node.

A preflight job works on every node of the cluster but changes none: its ``targets`` stay
empty, so no node's status moves; the nodes it checks are in its parameters.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args

from rke2_manager.clusters.views import snapshot
from rke2_manager.config import Settings
from rke2_manager.db import WriteSession
from rke2_manager.errors import DomainError
from rke2_manager.execution.events import HostEvent
from rke2_manager.guardrails import ClusterView, ProbePolicy, ProbeResult
from rke2_manager.jobs.create import Accepted, OnBusy, locked_cluster, start_jobs
from rke2_manager.models import Cluster, Job, JobStatus, NodeStatus, Operation

#: Every check, in the order a host reports them; ``skip_preflight`` takes these names.
CheckName = Literal[
    "ssh",
    "sudo",
    "os",
    "arch",
    "cpu",
    "memory",
    "ports",
    "reach",
    "swap",
    "networkmanager",
    "firewalld",
    "disk",
    "clock",
]
CHECKS: tuple[str, ...] = get_args(CheckName)
#: Operations whose jobs run the checks before anything else.
RUN_BY = (
    Operation.PREFLIGHT,
    Operation.INSTALL,
    Operation.SCALE_ADD_MASTERS,
    Operation.SCALE_ADD_WORKERS,
)
MARKER = "[rke2m] preflight"
RESULTS = ("pass", "warn", "fail")
NO_NODES = "Cluster has no nodes to check."
_FIELD = 1000  # a host's text is untrusted: bounded before it is stored


@dataclass(frozen=True)
class PreflightRequest:
    """Check every node of the cluster; ``skip`` names failed checks that do not fail it."""

    skip: tuple[str, ...] = ()
    operation = Operation.PREFLIGHT

    def params(self) -> dict[str, Any]:
        return {"skip_preflight": list(self.skip)}

    def planned_targets(self, cluster: Cluster) -> list[dict[str, Any]]:
        return []

    def check(self, view: ClusterView, probe: ProbeResult | None, policy: ProbePolicy) -> list[str]:
        if not view.nodes:
            raise DomainError(NO_NODES)
        return []

    def apply(self, session: WriteSession, cluster: Cluster, job: Job) -> None:
        """At the job's start: the nodes it checks, and whether servers run to be reached."""
        view = snapshot(cluster)
        master = view.initial_master
        job.targets = []
        job.params = {
            **self.params(),
            "nodes": [n.hostname for n in view.nodes],
            "reach": master is not None and master.status == NodeStatus.ACTIVE,
        }

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> PreflightRequest:
        return cls(tuple(str(s) for s in params.get("skip_preflight") or ()))


def _text(value: Any) -> str:
    return str(value)[:_FIELD]


def parse(report: HostEvent) -> list[dict[str, Any]]:
    """One host's results from its ``[rke2m] preflight`` report (lines
    ``rke2m-preflight|check|result|message|fix``); lines that are not a known check with a
    known result are left out (the report comes from the host)."""
    data = report.data or {}
    skipped = {str(s) for s in data.get("skipped") or [] if isinstance(s, str)}
    lines = data.get("results")
    out: list[dict[str, Any]] = []
    for line in lines if isinstance(lines, list) else []:
        parts = str(line).split("|")
        if len(parts) != 5 or parts[0] != "rke2m-preflight":
            continue
        _, check, result, message, fix = parts
        if check not in CHECKS or result not in RESULTS:
            continue
        out.append(
            {
                "check": check,
                "result": result,
                "message": _text(message),
                "fix": _text(fix) or None,
                "skipped": result == "fail" and check in skipped,
            }
        )
    return out


#: What to do about a host the checks could not run on, by the check that failed.
_SSH_FIX = (
    "make the host reachable over SSH from the manager: its address and port, the cluster's SSH "
    "user, and the cluster's public key (ssh.public_key) in that user's authorized_keys"
)
_SUDO_FIX = "connect as root, or give the SSH user passwordless sudo (NOPASSWD)"


def _not_reached(why: str) -> dict[str, Any] | None:
    """The ``ssh`` or ``sudo`` failure of a host that never ran the checks, from why the run
    failed on it; None when the failure was something else."""
    lowered = why.lower()
    if lowered.startswith("unreachable"):
        check, fix = "ssh", _SSH_FIX
    elif "sudo" in lowered or "privilege" in lowered or "become" in lowered:
        check, fix = "sudo", _SUDO_FIX
    else:
        return None
    # seen_by: the manager saw it, not the host; the job's reason already says it as it is
    return {
        "check": check,
        "result": "fail",
        "message": _text(why),
        "fix": fix,
        "skipped": False,
        "seen_by": "manager",
    }


def record(job: Job, reports: Sequence[HostEvent], failures: Mapping[str, str] = {}) -> None:
    """Store the preflight results the run reported on ``job`` (the last report per host).

    A host the checks never ran on because SSH or sudo failed (``failures``: host -> why the
    run failed on it) gets that as its ``ssh`` or ``sudo`` check, failed."""
    results = {r.host: parse(r) for r in reports if r.kind == "report" and r.task == MARKER}
    checked = [str(n) for n in (job.params or {}).get("nodes") or []]
    checked += [str(t.get("hostname")) for t in job.targets or [] if isinstance(t, dict)]
    for host in dict.fromkeys(checked):
        entry = _not_reached(failures[host]) if host in failures else None
        if host not in results and entry is not None:
            results[host] = [entry]
    if results:
        job.preflight = {**(job.preflight or {}), **results}


def failure_reason(job: Job, status: str, reason: str | None) -> str | None:
    """The reason a failed job ends with: when hosts failed preflight checks, every such host
    with its checks and what they found (``m1: preflight failed: ports (in use: 9345 (by
    haproxy, pid 812)); w2: preflight failed: …``, then ``also <reason>`` when the run's own
    reason is another failure), else ``reason`` as it is."""
    if status != JobStatus.FAILED:
        return reason
    hosts = []
    for host, checks in (job.preflight or {}).items():
        failed = [
            f"{c['check']} ({c['message']})"
            for c in checks
            if c["result"] == "fail" and not c["skipped"] and c.get("seen_by") != "manager"
        ]
        if failed:
            hosts.append(f"{host}: preflight failed: {'; '.join(failed)}")
    if not hosts:
        return reason
    # a failure the checks did not cause (a host that could not be reached) is kept
    other = reason and "preflight failed" not in reason and "not going on" not in reason
    return "; ".join(hosts) + (f"; also {reason}" if other else "")


def failed_checks(preflight: dict[str, Any] | None) -> dict[str, list[str]]:
    """Per host, the failed checks that were not skipped."""
    out: dict[str, list[str]] = {}
    for host, checks in (preflight or {}).items():
        failed = [c["check"] for c in checks if c["result"] == "fail" and not c["skipped"]]
        if failed:
            out[host] = failed
    return out


def start_preflight(
    session: WriteSession,
    settings: Settings,
    cluster_id: int,
    skip: Sequence[str],
    actor: str,
    on_busy: OnBusy = "reject",
) -> Accepted:
    """Check every node of the cluster, under the cluster's lock like every operation (the
    checks raise the nodes' fences, and must not run beside a job that changes them).

    Raises NotFound, ClusterBusy (409, unless queued), DomainError (400: no nodes).
    """
    cluster = locked_cluster(session, cluster_id, on_busy)
    request = PreflightRequest(tuple(dict.fromkeys(skip)))
    return start_jobs(session, settings, cluster, [request], actor, on_busy, None)
