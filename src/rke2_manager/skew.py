"""Guardrail G5 (version skew), a pure function like G1–G4 in :mod:`rke2_manager.guardrails`.

An upgrade may not go down, nor up by more than one minor version, and every node it upgrades
must be ``ACTIVE`` — or be named in ``skip``. What each node runs comes from the database (the
version last seen on the node, else the cluster's); where it is not known the job checks the
same rule on the node before it changes anything, and the request carries a warning saying so.
Every refusal raises :class:`~rke2_manager.errors.GuardrailViolation` with the exact message of
docs/guardrails.md.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

from rke2_manager.errors import GuardrailViolation
from rke2_manager.models import NodeStatus
from rke2_manager.versions import Version, minor_steps, parse_version, try_version


@dataclass(frozen=True)
class VersionedNode:
    """A node as G5 sees it: its status and the version it was last seen running.

    ``retry``: the node is ``FAILED`` because the cluster's last job, an upgrade to the same
    version, stopped at it; running that upgrade again retries it (it is not refused).
    """

    hostname: str
    role: str
    status: str
    version: str | None = None
    retry: bool = False


@dataclass
class UpgradePlan:
    """What G5 let through: the nodes to upgrade (in the cluster's order) and warnings."""

    nodes: list[VersionedNode] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _listed(names: Sequence[str]) -> str:
    quoted = [f"'{n}'" for n in names]
    return quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} and {quoted[-1]}"


def check_version_skew(
    nodes: Sequence[VersionedNode],
    target: str,
    skip: Collection[str] = (),
    cluster_version: str | None = None,
) -> UpgradePlan:
    """G5: may the nodes not in ``skip`` be upgraded to ``target``?

    Checked in this order: something left to upgrade, no downgrade (against the highest known
    version), at most one minor version up (against the lowest), every node ``ACTIVE`` (or
    ``retry``). A node's version is its own, else ``cluster_version``. Raises
    GuardrailViolation; ValueError if ``target`` is malformed (the API validated it).
    """
    wanted = parse_version(target)
    plan = UpgradePlan(nodes=[n for n in nodes if n.hostname not in skip])
    if not plan.nodes:
        raise GuardrailViolation("G5", "Every node is named in skip: nothing to upgrade.")
    known: list[tuple[Version, VersionedNode]] = []
    unknown: list[str] = []
    for node in plan.nodes:
        running = try_version(node.version) or try_version(cluster_version)
        if running is None:
            unknown.append(node.hostname)
        else:
            known.append((running, node))
    if known:
        highest, high_node = max(known, key=lambda k: k[0])
        if highest > wanted:
            raise GuardrailViolation(
                "G5",
                f"Cannot downgrade RKE2 from {highest} to {wanted} (node '{high_node.hostname}'). "
                "Roll back by restoring a snapshot taken before the upgrade.",
            )
        lowest, low_node = min(known, key=lambda k: k[0])
        steps = minor_steps(lowest, wanted)
        if steps is None or steps > 1:
            first = (
                f" Upgrade to a v{lowest.major}.{lowest.minor + 1} release first."
                if steps is not None
                else ""
            )
            raise GuardrailViolation(
                "G5",
                f"Cannot upgrade RKE2 from {lowest} to {wanted} (node '{low_node.hostname}'): "
                f"at most one minor version at a time.{first}",
            )
    for node in plan.nodes:
        if node.status == NodeStatus.ACTIVE:
            continue
        if node.status == NodeStatus.FAILED and node.retry:
            plan.warnings.append(
                f"Node '{node.hostname}' is FAILED where the last upgrade to {wanted} stopped: "
                "it is upgraded again."
            )
            continue
        raise GuardrailViolation(
            "G5",
            f"Node '{node.hostname}' is not active (status: {node.status}). Cannot upgrade "
            "unless it is named in skip.",
        )
    if unknown:
        plan.warnings.append(
            f"The running RKE2 version of {_listed(unknown)} is not recorded: the job checks "
            "G5 on the nodes themselves before it changes anything."
        )
    elif all(v == wanted for v, _ in known):
        plan.warnings.append(
            f"Every node to upgrade already runs {wanted}: the job checks that on the nodes "
            "and changes nothing."
        )
    return plan
