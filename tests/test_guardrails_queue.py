"""The queue's pure helpers: the cluster as the jobs ahead leave it, and the deferral warning."""

from __future__ import annotations

from typing import Literal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rke2_manager.errors import GuardrailViolation
from rke2_manager.guardrails import (
    ClusterView,
    NewNode,
    NodeView,
    PendingJob,
    Projection,
    check_master_removal,
    deferred_warning,
    project,
)
from rke2_manager.models import NodeStatus

A, F, INST, P = NodeStatus.ACTIVE, NodeStatus.FAILED, NodeStatus.INSTALLING, NodeStatus.PENDING
STATUSES = [A, F, INST, P, NodeStatus.REMOVING]


def view(*nodes: tuple[str, str, str]) -> ClusterView:
    """Nodes ``(hostname, role, status)``; the first server is the initial master."""
    first = next((h for h, role, _ in nodes if role == "server"), None)
    return ClusterView(
        tuple(
            NodeView(h, f"10.0.0.{i + 1}", role, status, is_initial_master=h == first)
            for i, (h, role, status) in enumerate(nodes)
        )
    )


def state(projection: Projection) -> dict[str, tuple[str, bool]]:
    return {n.hostname: (n.status, n.is_initial_master) for n in projection.view.nodes}


def changed(projection: Projection) -> list[tuple[str, int]]:
    return [(h, j.job_id) for h, j in projection.changes]


def test_install_activates_every_node_and_records_only_real_changes() -> None:
    after = project(
        view(("m1", "server", INST), ("w1", "agent", A), ("w2", "agent", F)),
        [PendingJob(3, "install")],
    )
    assert state(after) == {"m1": (A, True), "w1": (A, False), "w2": (A, False)}
    assert changed(after) == [("m1", 3), ("w2", 3)]


def test_add_creates_nodes_or_activates_its_own_when_running() -> None:
    m3 = NewNode("m3", "10.0.0.3", "server")
    before = view(("m1", "server", A), ("m3", "server", INST))
    running = project(before, [PendingJob(4, "add", (m3,), started=True)])
    assert state(running)["m3"] == (A, False) and changed(running) == [("m3", 4)]
    # a queued add of a hostname that exists fails G4 when it starts: it changes nothing
    queued = project(before, [PendingJob(5, "add", (m3,))])
    assert state(queued)["m3"] == (INST, False) and changed(queued) == []
    new = project(view(("m1", "server", A)), [PendingJob(6, "add", (m3,))])
    assert state(new) == {"m1": (A, True), "m3": (A, False)} and changed(new) == [("m3", 6)]


def test_remove_drops_nodes_and_hands_the_initial_master_on() -> None:
    before = view(("m1", "server", F), ("m2", "server", P), ("m3", "server", A))
    after = project(before, [PendingJob(7, "remove", (NewNode("m1", "10.0.0.1", "server"),))])
    assert state(after) == {"m2": (P, False), "m3": (A, True)}  # the first ACTIVE one
    assert changed(after) == [("m1", 7)]


def test_jobs_apply_in_order_and_other_jobs_change_nothing() -> None:
    m2 = NewNode("m2", "10.0.0.2", "server")
    before = view(("m1", "server", P))
    after = project(before, [PendingJob(1, "other"), PendingJob(2, "add", (m2,))])
    assert state(after) == {"m1": (P, True), "m2": (A, False)}
    after = project(before, [PendingJob(2, "add", (m2,)), PendingJob(3, "install")])
    assert changed(after) == [("m2", 2), ("m1", 3)]
    assert project(before, [PendingJob(1, "other")]) == Projection(before, ())


def test_warning_names_the_job_and_the_nodes() -> None:
    refusal = GuardrailViolation("G1", "Initial master 'm1' is not active (status: P).")
    after = project(view(("m1", "server", P)), [PendingJob(3, "install")])
    assert deferred_warning(refusal, after, ["m1"]) == (
        "G1 refuses this now (\"Initial master 'm1' is not active (status: P).\"), but job 3 "
        "ahead of this one installs 'm1': G1 is checked again when this job starts."
    )
    assert deferred_warning(refusal, after, ["w1"]) is None


def test_warning_with_several_jobs() -> None:
    refusal = GuardrailViolation("G2", "Removing 1 server(s) would break etcd quorum.")
    new = [NewNode(f"m{i}", f"10.0.0.{i}", "server") for i in (3, 4)]
    after = project(
        view(("m1", "server", A), ("m2", "server", INST)),
        [PendingJob(5, "install"), PendingJob(6, "add", tuple(new))],
    )
    assert deferred_warning(refusal, after, ["m1", "m2", "m3", "m4"]) == (
        'G2 refuses this now ("Removing 1 server(s) would break etcd quorum."), but jobs 5 '
        "and 6 ahead of this one change 'm2', 'm3' and 'm4': G2 is checked again when this "
        "job starts."
    )


@given(
    statuses=st.lists(st.sampled_from(STATUSES), min_size=1, max_size=5),
    adds=st.integers(min_value=0, max_value=3),
    installs=st.booleans(),
    data=st.data(),
)
def test_a_removal_only_the_jobs_ahead_make_safe_is_always_explained(
    statuses: list[str], adds: int, installs: bool, data: st.DataObject
) -> None:
    """Whenever G2 refuses now but passes once the jobs ahead succeeded, the warning can name
    a job ahead that changes a server; and with no job ahead nothing ever changes."""
    before = view(*((f"m{i + 1}", "server", s) for i, s in enumerate(statuses)))
    count = data.draw(st.integers(min_value=1, max_value=len(statuses)))
    names = {f"m{i + 1}" for i in range(count)}
    new = tuple(NewNode(f"n{i}", f"10.0.1.{i}", "server") for i in range(adds))
    ahead = [PendingJob(1, "add", new)] + ([PendingJob(2, "install")] if installs else [])
    after = project(before, ahead)
    assert project(before, []) == Projection(before, ())
    try:
        check_master_removal(before, [n for n in before.nodes if n.hostname in names], True)
    except GuardrailViolation as refusal:
        removing = [n for n in after.view.nodes if n.hostname in names]
        try:
            check_master_removal(after.view, removing, True)
        except GuardrailViolation:
            return
        servers = [n.hostname for n in (*before.servers, *after.view.servers)]
        assert deferred_warning(refusal, after, servers) is not None


@pytest.mark.parametrize("kind", ["install", "other"])
def test_projection_keeps_the_registration_address(kind: Literal["install", "other"]) -> None:
    before = ClusterView(view(("m1", "server", P)).nodes, registration_address="rke2.example")
    assert project(before, [PendingJob(1, kind)]).view.registration_address == "rke2.example"
