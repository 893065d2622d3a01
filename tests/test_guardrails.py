"""Table and property tests of the pure guardrails G1 to G4 (SPEC §3 messages, §5 rules)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from itertools import product

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rke2_manager.errors import GuardrailViolation
from rke2_manager.guardrails import (
    ClusterView,
    NewNode,
    NodeView,
    ProbePolicy,
    ProbeResult,
    check_bootstrap,
    check_identity,
    check_master_removal,
    split_by_role,
    supervisor_target,
)
from rke2_manager.models import NodeStatus

A, F, INST, P, R = (
    NodeStatus.ACTIVE,
    NodeStatus.FAILED,
    NodeStatus.INSTALLING,
    NodeStatus.PENDING,
    NodeStatus.REMOVING,
)
LAST = "Cannot remove all control-plane nodes. At least 1 required."
QUORUM = "Removing {k} server(s) would break etcd quorum."
CONFIRM = "Removing control-plane nodes requires explicit confirmation."


def even_warning(members: int) -> str:
    return (
        f"After this removal the cluster has {members} etcd members; an even number tolerates "
        "no more failures than one fewer. Prefer an odd number of servers."
    )


def servers(*statuses: str, initial: int | None = 0) -> list[NodeView]:
    """Servers m1..mN with the given statuses; server number ``initial + 1`` is initial master."""
    return [
        NodeView(f"m{i + 1}", f"10.0.0.{i + 1}", "server", s, is_initial_master=i == initial)
        for i, s in enumerate(statuses)
    ]


def agents(count: int) -> list[NodeView]:
    return [NodeView(f"w{i + 1}", f"10.0.1.{i + 1}", "agent", A) for i in range(count)]


def cluster(*nodes: NodeView, registration_address: str | None = None) -> ClusterView:
    return ClusterView(tuple(nodes), registration_address)


@contextmanager
def refused(guardrail: str, detail: str) -> Iterator[None]:
    with pytest.raises(GuardrailViolation) as caught:
        yield
    assert (caught.value.guardrail, caught.value.detail) == (guardrail, detail)
    assert str(caught.value) == detail and caught.value.status_code == 400


# G2: tables ---------------------------------------------------------------------------------------
PROFILES: dict[str, Callable[[int], list[NodeStatus]]] = {
    "all-active": lambda n: [A] * n,
    "failed-installing-first": lambda n: [F, INST, *[A] * n][:n],
    "failed-installing-last": lambda n: [*[A] * n, F, INST][-n:],
    "pending-first": lambda n: [P, *[A] * (n - 1)],
    "all-pending": lambda n: [P] * n,
}
# Removing the first k servers, one character per k = 0..n (row i is n = i + 1):
# "-" no server removed (empty plan, no confirmation needed), "o" accepted, "e" accepted with the
# even-count warning, "Q" quorum refused, "L" last-server refused.
G2_TABLE: dict[str, list[str]] = {
    "all-active": ["-L", "-QL", "-eQL", "-oQQL", "-eoQQL", "-oeQQQL", "-eoeQQQL"],
    "failed-installing-first": ["-L", "-QL", "-QQL", "-QQQL", "-eoQQL", "-oeQQQL", "-eoeQQQL"],
    "failed-installing-last": ["-L", "-QL", "-QQL", "-QQQL", "-QQQQL", "-QQQQQL", "-eQQQQQL"],
    "pending-first": ["-L", "-oL", "-eQL", "-oeQL", "-eoQQL", "-oeoQQL", "-eoeQQQL"],
    "all-pending": ["-" + "o" * (n - 1) + "L" for n in range(1, 8)],
}
G2_CASES = [
    pytest.param(profile, n, k, outcome, confirmed, id=f"{profile}-n{n}-k{k}-{confirmed=}")
    for profile, rows in G2_TABLE.items()
    for n, row in enumerate(rows, start=1)
    for k, outcome in enumerate(row)
    for confirmed in (True, False)
]


@pytest.mark.parametrize(("profile", "n", "k", "outcome", "confirmed"), G2_CASES)
def test_g2_table(profile: str, n: int, k: int, outcome: str, confirmed: bool) -> None:
    nodes = servers(*PROFILES[profile](n))
    view = cluster(*nodes, *agents(2))
    if outcome in "QL" or (outcome in "oe" and not confirmed):
        detail = {"Q": QUORUM.format(k=k), "L": LAST}.get(outcome, CONFIRM)
        with refused("G2", detail):
            check_master_removal(view, nodes[:k], confirmed)
        return
    plan = check_master_removal(view, nodes[:k], confirmed)
    left = sum(1 for s in nodes[k:] if s.status != P)
    assert plan.warnings == ([even_warning(left)] if outcome == "e" else [])
    if k == 0:
        assert plan.new_initial_master is None
    else:  # m1, the initial master, was removed: the first ACTIVE server that stays takes over
        stay_active = [s for s in nodes[k:] if s.status == A]
        assert plan.new_initial_master == (stay_active or nodes[k:])[0]


def test_g2_seed_messages_and_agents_not_counted() -> None:
    nodes = servers(A, A, A)
    view = cluster(*nodes, *agents(3))
    with refused("G2", "Removing 2 server(s) would break etcd quorum."):
        check_master_removal(view, [nodes[0], *agents(3), nodes[1]], confirmed=True)
    with refused("G2", LAST):
        check_master_removal(cluster(*servers(A)), servers(A), confirmed=True)
    plan = check_master_removal(view, agents(3), confirmed=False)  # agents only: no G2 at all
    assert plan.warnings == [] and plan.new_initial_master is None


@pytest.mark.parametrize(
    ("statuses", "remove", "expected"),
    [
        ((A, F, A, A, A), 0, "m3"),  # skips the FAILED server
        ((A, INST, R, A, A, A, A), 0, "m4"),  # skips INSTALLING and REMOVING
        ((A, A, A), 1, None),  # not the initial master: no handoff
        ((P, P), 0, "m2"),  # nothing installed yet: another server stays
    ],
)
def test_g2_initial_master_handoff(
    statuses: tuple[str, ...], remove: int, expected: str | None
) -> None:
    nodes = servers(*statuses)
    plan = check_master_removal(
        cluster(*nodes, registration_address="rke2.lan"), [nodes[remove]], confirmed=True
    )
    got = plan.new_initial_master
    assert (got.hostname if got else None) == expected


def test_g2_unconfirmed_initial_master_removal_is_refused() -> None:
    nodes = servers(A, A, A)
    with refused("G2", CONFIRM):
        check_master_removal(cluster(*nodes), [nodes[0]], confirmed=False)


# G2: oracle and property ------------------------------------------------------------------------
def oracle(statuses: list[str], removed: set[int], confirmed: bool) -> str | None:
    """SPEC §5 G2 restated independently; the expected refusal, or None when accepted."""
    if not removed:
        return None
    if len(removed) == len(statuses):
        return LAST
    members = [i for i, s in enumerate(statuses) if s != P]
    still_active = [i for i, s in enumerate(statuses) if s == A and i not in removed]
    if members and not 2 * len(still_active) > len(members):  # a strict majority of members
        return QUORUM.format(k=len(removed))
    return None if confirmed else CONFIRM


def check_against_oracle(
    statuses: list[str],
    removed: set[int],
    confirmed: bool,
    initial: int | None = 0,
    with_agents: bool = False,
) -> None:
    nodes = servers(*statuses, initial=initial)
    workers = agents(2)
    view = cluster(*nodes, *workers)
    removing = [nodes[i] for i in sorted(removed)] + (workers if with_agents else [])
    expected = oracle(statuses, removed, confirmed)
    if expected is not None:
        with refused("G2", expected):
            check_master_removal(view, removing, confirmed)
        return
    plan = check_master_removal(view, removing, confirmed)
    stay = [s for i, s in enumerate(nodes) if i not in removed]
    members = sum(1 for s in statuses if s != P)
    left_members = sum(1 for s in stay if s.status != P)
    left_active = [s for s in stay if s.status == A]
    if removed:  # an accepted removal never removes every server nor loses quorum
        assert stay and (members == 0 or len(left_active) >= members // 2 + 1)
    warn = removed and left_members > 0 and left_members % 2 == 0
    assert plan.warnings == ([even_warning(left_members)] if warn else [])
    if removed and initial is not None and initial in removed:
        new = plan.new_initial_master
        assert new is not None and new in stay
        assert new.status == A or not left_active
    else:
        assert plan.new_initial_master is None


MIXED = [A, F, A, INST, P, A, R]


@pytest.mark.parametrize("n", range(1, 8))
@pytest.mark.parametrize("pattern", [MIXED, MIXED[::-1]], ids=["mixed", "mixed-reversed"])
def test_g2_every_subset_matches_oracle(n: int, pattern: list[str]) -> None:
    statuses = pattern[:n]
    for mask, confirmed in product(product((False, True), repeat=n), (True, False)):
        removed = {i for i, gone in enumerate(mask) if gone}
        check_against_oracle(statuses, removed, confirmed)


@settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    statuses=st.lists(st.sampled_from(list(NodeStatus)), min_size=1, max_size=9),
    mask=st.lists(st.booleans(), min_size=9, max_size=9),
    initial=st.one_of(st.none(), st.integers(0, 8)),
    confirmed=st.booleans(),
    with_agents=st.booleans(),
)
def test_g2_property_matches_oracle(
    statuses: list[str], mask: list[bool], initial: int | None, confirmed: bool, with_agents: bool
) -> None:
    removed = {i for i in range(len(statuses)) if mask[i]}
    initial = None if initial is None else initial % len(statuses)
    check_against_oracle(statuses, removed, confirmed, initial, with_agents)


# G1 ---------------------------------------------------------------------------------------------
PROBES: dict[str, ProbeResult | None] = {
    "ok": ProbeResult("10.0.0.1", ok=True),
    "failed": ProbeResult("10.0.0.1", ok=False, error="Connection refused"),
    "none": None,
}
SUPERVISOR_DOWN = (
    "Initial master 'm1' supervisor at 10.0.0.1:9345 did not answer (Connection refused)"
)


@pytest.mark.parametrize("probe", list(PROBES))
@pytest.mark.parametrize("policy", ["off", "warn", "enforce"])
@pytest.mark.parametrize("status", list(NodeStatus))
def test_g1_table(status: str, policy: ProbePolicy, probe: str) -> None:
    view = cluster(*servers(status, A), *agents(1))
    if status != A:
        detail = f"Initial master 'm1' is not active (status: {status}). Cannot add nodes."
        with refused("G1", detail):
            check_bootstrap(view, PROBES[probe], policy)
    elif probe == "failed" and policy == "enforce":
        with refused("G1", f"{SUPERVISOR_DOWN}. Cannot add nodes."):
            check_bootstrap(view, PROBES[probe], policy)
    elif probe == "failed" and policy == "warn":
        assert check_bootstrap(view, PROBES[probe], policy) == [
            f"{SUPERVISOR_DOWN}; continuing because the probe policy is 'warn'."
        ]
    else:
        assert check_bootstrap(view, PROBES[probe], policy) == []


def test_g1_seed_message() -> None:
    with refused("G1", "Initial master 'm1' is not active (status: INSTALLING). Cannot add nodes."):
        check_bootstrap(cluster(*servers(INST)), None, "warn")


@pytest.mark.parametrize("policy", ["off", "warn", "enforce"])
@pytest.mark.parametrize(
    "nodes", [[], servers(A, A, initial=None) + agents(1)], ids=["empty", "no-flag"]
)
def test_g1_no_initial_master(policy: ProbePolicy, nodes: list[NodeView]) -> None:
    with refused("G1", "Cluster has no initial master. Cannot add nodes."):
        check_bootstrap(cluster(*nodes), PROBES["ok"], policy)


def test_supervisor_target() -> None:
    assert supervisor_target(cluster(*servers(A, A, initial=1))) == "10.0.0.2"
    assert supervisor_target(cluster(*servers(A), registration_address="rke2.lan")) == "rke2.lan"
    assert supervisor_target(cluster(*servers(A, initial=None))) is None


# G4 ---------------------------------------------------------------------------------------------
EXISTING = cluster(
    NodeView("m1", "10.0.0.1", "server", A, True), NodeView("worker-01", "10.0.0.5", "agent", A)
)


def new(hostname: str, ip: str, role: str = "agent") -> NewNode:
    return NewNode(hostname, ip, role)


@pytest.mark.parametrize(
    ("request_nodes", "detail"),
    [
        (
            [new("worker-01", "10.0.0.9")],
            "Node with hostname 'worker-01' already exists in cluster",
        ),
        ([new("w2", "10.0.0.5")], "Node with IP '10.0.0.5' already exists in cluster"),
        ([new("m1", "10.0.0.5", "server")], "Node with hostname 'm1' already exists in cluster"),
        (
            [new("w2", "10.0.0.6"), new("w3", "10.0.0.1"), new("worker-01", "10.0.0.7")],
            "Node with IP '10.0.0.1' already exists in cluster",
        ),
        (
            [new("w2", "10.0.0.6"), new("w2", "10.0.0.7")],
            "Node with hostname 'w2' appears more than once in the request",
        ),
        (
            [new("w2", "10.0.0.6"), new("w3", "10.0.0.6")],
            "Node with IP '10.0.0.6' appears more than once in the request",
        ),
        (
            [
                new("w2", "10.0.0.6"),
                new("w3", "10.0.0.7", "server"),
                new("w4", "10.0.0.7"),
                new("w2", "10.0.0.8"),
            ],
            "Node with IP '10.0.0.7' appears more than once in the request",
        ),
    ],
    ids=[
        "host-in-cluster",
        "ip-in-cluster",
        "host-before-ip",
        "first-in-cluster",
        "host-in-request",
        "ip-in-request",
        "first-in-request",
    ],
)
def test_g4_refuses(request_nodes: list[NewNode], detail: str) -> None:
    with refused("G4", detail):
        check_identity(EXISTING, request_nodes)


def test_g4_accepts_unique_nodes() -> None:
    check_identity(EXISTING, [])
    check_identity(EXISTING, [new("w2", "10.0.0.6"), new("m2", "10.0.0.7", "server")])
    check_identity(cluster(), [new("m1", "10.0.0.1", "server"), new("w1", "10.0.0.2")])


def test_g4_reports_one_of_both_kinds_when_both_occur() -> None:
    """A cluster duplicate before a request duplicate: refused; which is named is not specified."""
    nodes = [new("worker-01", "10.0.0.9"), new("w2", "10.0.0.6"), new("w2", "10.0.0.7")]
    with pytest.raises(GuardrailViolation) as caught:
        check_identity(EXISTING, nodes)
    assert caught.value.detail in {
        "Node with hostname 'worker-01' already exists in cluster",
        "Node with hostname 'w2' appears more than once in the request",
    }


# G3 ---------------------------------------------------------------------------------------------
def test_g3_split_keeps_order() -> None:
    nodes = [
        new("w1", "10.0.1.1"),
        new("m2", "10.0.0.2", "server"),
        new("w2", "10.0.1.2"),
        new("m3", "10.0.0.3", "server"),
        new("w3", "10.0.1.3"),
    ]
    assert split_by_role(iter(nodes)) == ([nodes[1], nodes[3]], [nodes[0], nodes[2], nodes[4]])
    assert split_by_role(nodes[1::2]) == (nodes[1::2], [])
    assert split_by_role(nodes[::2]) == ([], nodes[::2])
    assert split_by_role([]) == ([], [])
