"""Bad input gets a clear 4xx with a message and changes nothing; never a 500."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from rke2_manager.db import Database
from rke2_manager.models import AuditEntry, Cluster, Job, Node
from tests.factories import make_cluster

CASES: list[tuple[str, Any, str]] = [
    (
        "hostname",
        {"hostname": "-bad-", "ip": "127.0.0.5", "role": "agent"},
        "not a valid RFC 1123 hostname",
    ),
    (
        "hostname",
        {"hostname": "a" * 64, "ip": "127.0.0.5", "role": "agent"},
        "not a valid RFC 1123 hostname",
    ),
    ("hostname", {"hostname": "under_score", "ip": "127.0.0.5", "role": "agent"}, "RFC 1123"),
    # Python's `$` also matches before a final newline: a label must match in full
    ("hostname", {"hostname": "a\n.b", "ip": "127.0.0.5", "role": "agent"}, "RFC 1123"),
    ("hostname", {"hostname": "w9\n.", "ip": "127.0.0.5", "role": "agent"}, "RFC 1123"),
    ("ip", {"hostname": "w9", "ip": "10.0.0.300", "role": "agent"}, "not a valid IP address"),
    ("ip", {"hostname": "w9", "ip": "not-an-ip", "role": "agent"}, "not a valid IP address"),
    ("ip", {"hostname": "w9", "ip": "0.0.0.0", "role": "agent"}, "not a unicast address"),
    ("role", {"hostname": "w9", "ip": "127.0.0.5", "role": "master"}, "nodes.0.role"),
    ("extra", {"hostname": "w9", "ip": "127.0.0.5", "role": "agent", "x": 1}, "nodes.0.x"),
    ("missing", {"hostname": "w9", "role": "agent"}, "nodes.0.ip: Field required"),
]


def snapshot(db: Database) -> tuple[int, ...]:
    """Row counts of what a call can change (a refusal is audited, but changes nothing)."""
    with db.read_session() as s:
        counts = [s.scalar(select(func.count(model.id))) or 0 for model in (Cluster, Node, Job)]
        changes = s.scalar(select(func.count(AuditEntry.id)).where(AuditEntry.result == "ok"))
        return (*counts, changes or 0)


@pytest.mark.parametrize(("what", "node", "message"), CASES, ids=[c[0] for c in CASES])
def test_bad_node_is_422_with_message(
    client: TestClient, db: Database, what: str, node: dict[str, Any], message: str
) -> None:
    cid = make_cluster(db)
    before = snapshot(db)
    r = client.post(f"/api/clusters/{cid}/scale/add", json={"nodes": [node]})
    assert r.status_code == 422, r.text
    assert message in r.json()["detail"]
    assert r.headers["content-type"] == "application/problem+json"
    assert snapshot(db) == before


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"nodes": []}, "nodes: List should have at least 1 item"),
        (
            {
                "nodes": [
                    {"hostname": f"w{i}", "ip": f"127.1.0.{i % 250 + 1}", "role": "agent"}
                    for i in range(101)
                ]
            },
            "nodes: List should have at most 100 items",
        ),
        ({}, "nodes: Field required"),
        ("[1, 2", "request body is not valid JSON"),
        ("hostname=w1&ip=1.2.3.4", "request body is not valid JSON"),
    ],
)
def test_bad_bodies(client: TestClient, db: Database, body: Any, message: str) -> None:
    cid = make_cluster(db)
    before = snapshot(db)
    content = body if isinstance(body, str) else json.dumps(body)
    r = client.post(
        f"/api/clusters/{cid}/scale/add",
        content=content,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert r.status_code == 422, r.text
    assert message in r.json()["detail"]
    assert snapshot(db) == before


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            {"name": "Prod!", "nodes": [{"hostname": "m1", "ip": "127.0.0.1", "role": "server"}]},
            "name",
        ),
        (
            {"name": "x", "nodes": [{"hostname": "w1", "ip": "127.0.0.1", "role": "agent"}]},
            "a cluster needs at least one server",
        ),
        (
            {
                "name": "x",
                "nodes": [{"hostname": "m1", "ip": "127.0.0.1", "role": "server"}],
                "rke2": {"config": {"token": "mine"}},
            },
            "rke2.config may not set token",
        ),
        (
            {
                "name": "x",
                "nodes": [{"hostname": "m1", "ip": "127.0.0.1", "role": "server"}],
                "ssh": {"private_key": "not a key"},
            },
            "ssh.private_key is not an unencrypted",
        ),
        (
            {
                "name": "x",
                "nodes": [{"hostname": "m1", "ip": "127.0.0.1", "role": "server"}],
                "ssh": {"port": 70000},
            },
            "ssh.port",
        ),
        (
            {
                "name": "x",
                "nodes": [{"hostname": "m1", "ip": "127.0.0.1", "role": "server"}],
                "rke2": {"version": "latest"},
            },
            "rke2.version",
        ),
    ],
)
def test_bad_cluster_bodies(client: TestClient, db: Database, body: Any, message: str) -> None:
    r = client.post("/api/clusters", json=body)
    assert r.status_code == 422, r.text
    assert message in r.json()["detail"]
    assert snapshot(db) == (0, 0, 0, 0)


@pytest.mark.parametrize(
    "url",
    [
        "/api/clusters/abc",
        "/api/clusters/0",
        "/api/clusters/-1",
        "/api/clusters/99999999999999999999",
        "/api/jobs/abc",
        "/api/jobs?limit=0",
        "/api/jobs?status=nope",
    ],
)
def test_bad_ids_and_queries(client: TestClient, url: str) -> None:
    r = client.get(url)
    assert r.status_code == 422, r.text
    assert r.json()["detail"]


def test_unknown_route_and_method(client: TestClient) -> None:
    assert client.get("/api/nothing").status_code == 404
    r = client.put("/api/clusters")
    assert r.status_code == 405 and r.json()["detail"]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)
node_like = st.fixed_dictionaries(
    {},
    optional={
        "hostname": st.one_of(
            st.text(max_size=70), st.sampled_from(["m1", "w1", "W1", "a.b", "m1."])
        ),
        "ip": st.one_of(
            st.text(max_size=50), st.ip_addresses().map(str), st.sampled_from(["127.0.10.1"])
        ),
        "role": st.one_of(st.sampled_from(["server", "agent", "master", ""]), json_values),
        "extra": json_values,
    },
)
bodies = st.one_of(
    json_values,
    st.fixed_dictionaries({"nodes": st.lists(node_like, max_size=5)}),
    st.fixed_dictionaries(
        {"name": st.text(max_size=70), "nodes": st.lists(node_like, max_size=4)},
        optional={"ssh": json_values, "rke2": json_values, "registration_address": json_values},
    ),
)
targets = st.sampled_from(
    [
        ("POST", "/api/clusters"),
        ("POST", "/api/clusters/{cid}/scale/add"),
        ("POST", "/api/clusters/{cid}/scale/remove?confirm_master_removal=true"),
        ("POST", "/api/clusters/{cid}/scale/remove?confirm_master_removal=maybe"),
        ("PATCH", "/api/clusters/{cid}"),
    ]
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(target=targets, body=bodies, raw=st.booleans())
def test_fuzz_never_500(
    client: TestClient, db: Database, target: tuple[str, str], body: Any, raw: bool
) -> None:
    with db.read_session() as s:
        cid = s.scalar(select(Cluster.id).where(Cluster.name == "fuzz"))
    if cid is None:
        cid = make_cluster(
            db,
            name="fuzz",
            nodes=[
                ("m1", "127.0.10.1", "server", "ACTIVE"),
                ("m2", "127.0.10.2", "server", "ACTIVE"),
                ("m3", "127.0.10.3", "server", "ACTIVE"),
                ("w1", "127.0.10.4", "agent", "ACTIVE"),
            ],
        )
    method, url = target
    content = json.dumps(body)
    if raw:
        content = content[: max(1, len(content) // 2)]  # truncated JSON
    r = client.request(method, url.format(cid=cid), content=content)
    assert r.status_code < 500, (method, url, content, r.text)
    if r.status_code >= 400:
        assert r.json().get("detail"), r.text
    if r.status_code == 202:  # free the cluster for the next example
        with db.transaction() as s:
            cluster = s.get(Cluster, cid)
            assert cluster is not None
            cluster.operation_status, cluster.current_job_id = "idle", None
            cluster.operation_locked_by = None
