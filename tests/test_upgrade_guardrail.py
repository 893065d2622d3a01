"""G5 (version skew) as a pure function, at its boundaries; RKE2 version parsing."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rke2_manager.errors import GuardrailViolation
from rke2_manager.skew import VersionedNode, check_version_skew
from rke2_manager.versions import Version, minor_steps, parse_version, try_version

V131 = "v1.31.4+rke2r1"
V132 = "v1.32.1+rke2r1"


def nodes(*specs: tuple[str, str | None, str]) -> list[VersionedNode]:
    """``(hostname, version, status)``; m* are servers, the rest agents."""
    return [
        VersionedNode(h, "server" if h.startswith("m") else "agent", status, version)
        for h, version, status in specs
    ]


def three(version: str | None, status: str = "ACTIVE") -> list[VersionedNode]:
    return nodes(("m1", version, status), ("m2", version, status), ("w1", version, status))


def refusal(nodes_: list[VersionedNode], target: str, **kw: object) -> str:
    with pytest.raises(GuardrailViolation) as caught:
        check_version_skew(nodes_, target, **kw)  # type: ignore[arg-type]
    assert caught.value.guardrail == "G5"
    return caught.value.detail


@pytest.mark.parametrize(
    ("current", "target"),
    [
        (V131, "v1.31.5+rke2r1"),  # same minor, patch up
        (V131, "v1.31.4+rke2r2"),  # same patch, RKE2 revision up
        (V131, V132),  # one minor up
        ("v1.31.9+rke2r3", "v1.32.0+rke2r1"),  # one minor up, lower patch and revision
    ],
)
def test_allowed_upgrades_pass_without_warnings(current: str, target: str) -> None:
    plan = check_version_skew(three(current), target)
    assert [n.hostname for n in plan.nodes] == ["m1", "m2", "w1"]
    assert plan.warnings == []


@pytest.mark.parametrize(
    ("current", "target", "message"),
    [
        (
            "v1.30.9+rke2r1",
            V132,
            "Cannot upgrade RKE2 from v1.30.9+rke2r1 to v1.32.1+rke2r1 (node 'm1'): at most "
            "one minor version at a time. Upgrade to a v1.31 release first.",
        ),
        (
            V132,
            "v2.0.0+rke2r1",
            "Cannot upgrade RKE2 from v1.32.1+rke2r1 to v2.0.0+rke2r1 (node 'm1'): at most "
            "one minor version at a time.",
        ),
        (
            V131,
            "v1.31.3+rke2r1",
            "Cannot downgrade RKE2 from v1.31.4+rke2r1 to v1.31.3+rke2r1 (node 'm1'). "
            "Roll back by restoring a snapshot taken before the upgrade.",
        ),
        (
            "v1.31.4+rke2r2",
            V131,
            "Cannot downgrade RKE2 from v1.31.4+rke2r2 to v1.31.4+rke2r1 (node 'm1'). "
            "Roll back by restoring a snapshot taken before the upgrade.",
        ),
        (
            V132,
            V131,
            "Cannot downgrade RKE2 from v1.32.1+rke2r1 to v1.31.4+rke2r1 (node 'm1'). "
            "Roll back by restoring a snapshot taken before the upgrade.",
        ),
    ],
)
def test_downgrades_and_skipped_minors_are_refused(current: str, target: str, message: str) -> None:
    assert refusal(three(current), target) == message


def test_same_version_is_nothing_to_do() -> None:
    plan = check_version_skew(three(V132), V132)
    assert plan.warnings == [
        "Every node to upgrade already runs v1.32.1+rke2r1: the job checks that on the nodes "
        "and changes nothing."
    ]


def test_mixed_versions_downgrade_names_the_highest_and_skip_the_lowest() -> None:
    mixed = nodes(
        ("m1", V131, "ACTIVE"), ("m2", V132, "ACTIVE"), ("w1", "v1.30.2+rke2r1", "ACTIVE")
    )
    assert "from v1.32.1+rke2r1 to v1.31.5+rke2r1 (node 'm2')" in refusal(mixed, "v1.31.5+rke2r1")
    assert refusal(mixed, V132).startswith(
        "Cannot upgrade RKE2 from v1.30.2+rke2r1 to v1.32.1+rke2r1 (node 'w1')"
    )
    # a partly upgraded cluster (a rollout that stopped) goes on to the same version
    partial = nodes(("m1", V132, "ACTIVE"), ("m2", V131, "ACTIVE"), ("w1", V131, "ACTIVE"))
    assert check_version_skew(partial, V132).warnings == []


def test_a_failed_node_is_refused_unless_skipped() -> None:
    cluster = nodes(("m1", V131, "ACTIVE"), ("m2", V131, "FAILED"), ("w1", V131, "ACTIVE"))
    assert refusal(cluster, V132) == (
        "Node 'm2' is not active (status: FAILED). Cannot upgrade unless it is named in skip."
    )
    plan = check_version_skew(cluster, V132, skip={"m2"})
    assert [n.hostname for n in plan.nodes] == ["m1", "w1"]
    assert plan.warnings == []


@pytest.mark.parametrize("status", ["PENDING", "INSTALLING", "REMOVING", "UPGRADING"])
def test_other_statuses_are_refused(status: str) -> None:
    cluster = nodes(("m1", V131, "ACTIVE"), ("w1", V131, status))
    assert refusal(cluster, V132) == (
        f"Node 'w1' is not active (status: {status}). Cannot upgrade unless it is named in skip."
    )


def test_versions_are_checked_before_statuses() -> None:
    cluster = nodes(("m1", V132, "ACTIVE"), ("m2", V131, "FAILED"))
    assert refusal(cluster, V131).startswith("Cannot downgrade RKE2 from v1.32.1+rke2r1")


def test_a_node_the_last_upgrade_failed_is_retried() -> None:
    cluster = [
        VersionedNode("m1", "server", "ACTIVE", V132),
        VersionedNode("m2", "server", "FAILED", V131, retry=True),
        VersionedNode("m3", "server", "ACTIVE", V131),
    ]
    plan = check_version_skew(cluster, V132)
    assert [n.hostname for n in plan.nodes] == ["m1", "m2", "m3"]
    assert plan.warnings == [
        "Node 'm2' is FAILED where the last upgrade to v1.32.1+rke2r1 stopped: it is "
        "upgraded again."
    ]


def test_a_skipped_node_does_not_count_for_versions_either() -> None:
    cluster = nodes(("m1", V131, "ACTIVE"), ("w1", "v1.29.1+rke2r1", "FAILED"))
    assert check_version_skew(cluster, V132, skip=["w1"]).warnings == []


def test_unknown_current_version_warns_and_falls_back_to_the_clusters() -> None:
    plan = check_version_skew(three(None), V132)
    assert [n.hostname for n in plan.nodes] == ["m1", "m2", "w1"]
    assert plan.warnings == [
        "The running RKE2 version of 'm1', 'm2' and 'w1' is not recorded: the job checks G5 "
        "on the nodes themselves before it changes anything."
    ]
    # the cluster's recorded version stands in for a node's unknown one
    assert check_version_skew(three(None), V132, cluster_version=V131).warnings == []
    assert refusal(three(None), V131, cluster_version=V132).startswith("Cannot downgrade")
    # a malformed recorded version counts as unknown
    mixed = nodes(("m1", V131, "ACTIVE"), ("w1", "garbage", "ACTIVE"))
    assert check_version_skew(mixed, V132).warnings == [
        "The running RKE2 version of 'w1' is not recorded: the job checks G5 on the nodes "
        "themselves before it changes anything."
    ]


def test_skipping_every_node_is_refused() -> None:
    assert refusal(three(V131), V132, skip={"m1", "m2", "w1"}) == (
        "Every node is named in skip: nothing to upgrade."
    )


@pytest.mark.parametrize(
    "text",
    ["1.32.1+rke2r1", "v1.32+rke2r1", "v1.32.1", "v1.32.1-rc1+rke2r1", "v1.32.1+k3s1", "", " "],
)
def test_malformed_versions(text: str) -> None:
    with pytest.raises(ValueError, match=r"is not an RKE2 release version like v1\.32\.1"):
        parse_version(text)
    assert try_version(text) is None


def test_version_order() -> None:
    assert parse_version(V131) < parse_version("v1.31.4+rke2r2") < parse_version(V132)
    assert parse_version("v1.31.10+rke2r1") > parse_version("v1.31.9+rke2r1")  # not lexical
    assert parse_version(V132) == Version(1, 32, 1, 1, "other text")
    assert parse_version(V132).minor_line == "v1.32"
    assert minor_steps(parse_version(V131), parse_version(V132)) == 1
    assert minor_steps(parse_version(V132), parse_version("v2.0.0+rke2r1")) is None
    assert try_version(None) is None


def _version(major: int, minor: int, patch: int, revision: int) -> str:
    return f"v{major}.{minor}.{patch}+rke2r{revision}"


_parts = st.tuples(st.integers(1, 2), st.integers(0, 40), st.integers(0, 20), st.integers(1, 5))


@given(st.lists(_parts, min_size=1, max_size=5), _parts)
def test_g5_refuses_exactly_downgrades_and_minor_jumps(
    running: list[tuple[int, int, int, int]], target: tuple[int, int, int, int]
) -> None:
    cluster = [
        VersionedNode(f"n{i}", "server", "ACTIVE", _version(*v)) for i, v in enumerate(running)
    ]
    downgrade = max(running) > target
    low = min(running)
    jump = low[0] != target[0] or target[1] - low[1] > 1
    try:
        plan = check_version_skew(cluster, _version(*target))
    except GuardrailViolation as refusal:
        assert downgrade or jump
        verb = "downgrade" if downgrade else "upgrade"
        assert refusal.detail.startswith(f"Cannot {verb} RKE2 from ")
        assert f" to {_version(*target)} (node 'n" in refusal.detail
    else:
        assert not downgrade and not jump
        assert len(plan.nodes) == len(running)
