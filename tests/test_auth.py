"""Tokens, roles and protected mode: every route admits exactly the callers its role allows."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from sqlalchemy import select

from rke2_manager.api.app import create_app
from rke2_manager.api.auth import PROTECTED_MODE
from rke2_manager.config import Settings
from rke2_manager.db import Database
from rke2_manager.models import ApiRole, ApiToken, AuditEntry
from rke2_manager.tokens.service import create_token
from tests.conftest import LOOPBACK
from tests.factories import FakeProber

REMOTE = ("10.9.8.7", 40000)  # never contacted: a client address the app sees, nothing more
CLUSTER = {"name": "prod", "nodes": [{"hostname": "m1", "ip": "127.0.1.1", "role": "server"}]}

#: The role of every route of the app. A new route must be added here, with its role.
EXPECTED: dict[tuple[str, str], str | None] = {
    ("GET", "/healthz"): None,
    ("GET", "/readyz"): None,
    ("GET", "/metrics"): "viewer",
    ("POST", "/api/clusters"): "operator",
    ("GET", "/api/clusters"): "viewer",
    ("GET", "/api/clusters/{cluster_id}"): "viewer",
    ("PATCH", "/api/clusters/{cluster_id}"): "operator",
    ("DELETE", "/api/clusters/{cluster_id}"): "admin",
    ("GET", "/api/clusters/{cluster_id}/nodes"): "viewer",
    ("GET", "/api/clusters/{cluster_id}/lock"): "viewer",
    ("GET", "/api/clusters/{cluster_id}/queue"): "viewer",
    ("GET", "/api/clusters/{cluster_id}/kubeconfig"): "admin",
    ("POST", "/api/clusters/{cluster_id}/nodes/{hostname}/accept-host-key"): "admin",
    ("PATCH", "/api/clusters/{cluster_id}/nodes/{hostname}"): "operator",
    ("POST", "/api/clusters/{cluster_id}/preflight"): "operator",
    ("GET", "/api/jobs/{job_id}/preflight"): "viewer",
    ("POST", "/api/jobs/install/{cluster_id}"): "operator",
    ("POST", "/api/clusters/{cluster_id}/scale/add"): "operator",
    ("POST", "/api/clusters/{cluster_id}/scale/remove"): "operator",
    ("POST", "/api/clusters/{cluster_id}/upgrade"): "operator",
    ("POST", "/api/clusters/{cluster_id}/snapshots"): "operator",
    ("GET", "/api/clusters/{cluster_id}/snapshots"): "viewer",
    ("DELETE", "/api/clusters/{cluster_id}/snapshots/{name}"): "operator",
    ("POST", "/api/clusters/{cluster_id}/restore"): "operator",
    ("DELETE", "/api/clusters/{cluster_id}/nodes/{hostname}"): "operator",
    ("GET", "/api/jobs"): "viewer",
    ("GET", "/api/jobs/{job_id}"): "viewer",
    ("POST", "/api/jobs/{job_id}/cancel"): "operator",
    ("GET", "/api/jobs/{job_id}/log"): "viewer",
    ("GET", "/api/jobs/{job_id}/log/follow"): "viewer",
    ("GET", "/api/jobs/{job_id}/events"): "viewer",
    ("POST", "/api/admin/clusters/{cluster_id}/force-unlock"): "admin",
    ("GET", "/api/tokens"): "admin",
    ("POST", "/api/tokens"): "admin",
    ("DELETE", "/api/tokens/{ref}"): "admin",
    ("GET", "/api/audit"): "admin",
}
#: Starlette routes FastAPI adds for its documentation: public by design (no data in them).
DOC_PATHS = {"/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"}
#: The dashboard: "/" redirects to it; "/ui" is a sub-application whose routes each declare
#: a role the same way (tests/test_web_auth.py walks them).
DOC_PATHS |= {"/", "/ui"}
RANK = {None: -1, "viewer": 0, "operator": 1, "admin": 2}


def declared_roles(route: APIRoute) -> list[str | None]:
    """The roles the route's dependency tree declares (``public`` counts as None)."""
    found: list[str | None] = []
    stack = list(route.dependant.dependencies)
    while stack:
        dep = stack.pop()
        if hasattr(dep.call, "required_role"):
            role = dep.call.required_role
            found.append(role.value if role is not None else None)
        stack.extend(dep.dependencies)
    return found


@pytest.fixture
def app(settings: Settings, db: Database, prober: FakeProber) -> Iterator[Any]:
    application = create_app(settings, prober=prober, run_migrations=False, start_worker=False)
    yield application


def client_for(app: Any, address: tuple[str, int] = LOOPBACK) -> TestClient:
    return TestClient(
        app, raise_server_exceptions=False, base_url="http://localhost", client=address
    )


def make_token(db: Database, name: str, role: str) -> str:
    """A token made as ``rke2-manager token create`` makes it (on the server's database)."""
    with db.transaction() as s:
        _, token = create_token(s, name, ApiRole(role), "test")
    return token


VALUES = {"{hostname}": "m1", "{ref}": "nobody"}  # {ref}: revoking a real token would
# end the test's own access half-way


def concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", lambda m: VALUES.get(m.group(0), "1"), path)


def all_routes(app: Any) -> list[Any]:
    """Every route of the app, routers included (FastAPI ≥ 0.16x nests included routers)."""
    try:
        from fastapi.routing import iter_route_contexts
    except ImportError:  # older FastAPI: app.routes is flat
        return list(app.routes)
    return [context.original_route for context in iter_route_contexts(app.routes)]


def test_every_route_declares_exactly_one_role(app: Any) -> None:
    seen = {}
    for route in all_routes(app):
        if not isinstance(route, APIRoute):
            assert route.path in DOC_PATHS, f"{route.path}: not an API route, not documentation"
            continue
        roles = declared_roles(route)
        assert len(roles) == 1, f"{route.methods} {route.path} declares roles {roles}"
        for method in route.methods:
            seen[(method, route.path)] = roles[0]
    assert seen == EXPECTED
    # and the published schema lists no operation this test does not know
    schema = app.openapi()["paths"]
    published = {(m.upper(), p) for p, ops in schema.items() for m in ops}
    assert published == set(EXPECTED)


def test_route_role_matrix(app: Any, db: Database) -> None:
    """No route is reachable without its role: from a remote client with no token (401),
    with each role's token (403 below the route's role), and admitted at or above it."""
    with client_for(app) as local:
        assert local.post("/api/clusters", json=CLUSTER).status_code == 201
    tokens = {role: make_token(db, role, role) for role in ("viewer", "operator", "admin")}
    with client_for(app, REMOTE) as remote, client_for(app) as loopback:
        for (method, path), role in EXPECTED.items():
            url = concrete(path)
            if path.endswith("/log/follow"):
                continue  # a stream: checked below with a job that does not exist
            anonymous = [remote.request(method, url), loopback.request(method, url)]
            for r in anonymous:
                if role is None:
                    assert r.status_code not in (401, 403), (method, path, r.text)
                else:
                    assert r.status_code == 401, (method, path, r.status_code, r.text)
                    assert r.headers["www-authenticate"] == "Bearer"
            for has, token in tokens.items():
                r = remote.request(method, url, headers={"Authorization": f"Bearer {token}"})
                if RANK[has] < RANK[role]:
                    assert r.status_code == 403, (method, path, has, r.text)
                    assert r.json()["detail"] == (
                        f"This needs the '{role}' role; the token '{has}' has '{has}'"
                    )
                else:
                    assert r.status_code not in (401, 403), (method, path, has, r.text)
        r = remote.get("/api/jobs/999/log/follow")
        assert r.status_code == 401


def test_protected_mode_serves_loopback_only(app: Any, db: Database) -> None:
    with client_for(app, REMOTE) as remote:
        r = remote.get("/api/clusters")
        assert r.status_code == 401
        assert r.json()["detail"] == PROTECTED_MODE
        assert remote.post("/api/clusters", json=CLUSTER).status_code == 401
        assert remote.get("/healthz").status_code == 200
    with client_for(app) as local:
        # A request relayed by a proxy on this machine is not the local admin.
        r = local.get("/api/clusters", headers={"X-Forwarded-For": "10.9.8.7"})
        assert r.status_code == 401
        r = local.post("/api/clusters", json=CLUSTER, headers={"X-Forwarded-For": "127.0.0.1"})
        assert r.status_code == 401
        assert local.post("/api/clusters", json=CLUSTER).status_code == 201
    with db.read_session() as s:
        entry = s.scalars(select(AuditEntry).where(AuditEntry.action == "cluster.create")).one()
        assert entry.actor == "local"


def test_tokens_are_shown_once_stored_hashed_and_revocable(app: Any, db: Database) -> None:
    with client_for(app) as local:  # the local admin creates the first token through the API
        r = local.post("/api/tokens", json={"name": "ci-deployer", "role": "operator"})
        assert r.status_code == 201, r.text
        token = str(r.json()["token"])
    assert token.startswith("rke2m_") and len(token) > 40
    with client_for(app, REMOTE) as remote:
        auth = {"Authorization": f"Bearer {token}"}
        # The first token ends protected mode: loopback needs a token too now.
        with client_for(app) as local:
            assert local.get("/api/clusters").status_code == 401
        r = remote.post("/api/clusters", json=CLUSTER, headers={**auth, "X-Forwarded-For": "x"})
        assert r.status_code == 201, r.text
        admin = make_token(db, "root-admin", "admin")
        listed = remote.get("/api/tokens", headers={"Authorization": f"Bearer {admin}"})
        assert listed.status_code == 200
        names = {t["name"]: t for t in listed.json()}
        assert set(names) == {"ci-deployer", "root-admin"}
        assert all("token" not in t for t in listed.json())
        assert names["ci-deployer"]["last_used_at"] is not None
        assert token not in listed.text
        r = remote.delete("/api/tokens/ci-deployer", headers={"Authorization": f"Bearer {admin}"})
        assert r.status_code == 204
        r = remote.get("/api/clusters", headers=auth)
        assert r.status_code == 401
        assert r.json()["detail"] == "The API token is unknown or revoked"
        r = remote.get("/api/clusters", headers={"Authorization": f"Basic {token}"})
        assert r.json()["detail"] == "The Authorization header must be `Bearer <token>`"
        dup = remote.post(
            "/api/tokens",
            json={"name": "ci-deployer", "role": "viewer"},
            headers={"Authorization": f"Bearer {admin}"},
        )
        assert dup.status_code == 409
        assert dup.json()["detail"] == "A token named 'ci-deployer' already exists"
        reserved = remote.post(
            "/api/tokens",
            json={"name": "local", "role": "viewer"},
            headers={"Authorization": f"Bearer {admin}"},
        )
        assert reserved.status_code == 422
        assert reserved.json()["detail"] == (
            "The token name 'local' is reserved for the protected-mode caller"
        )
    with db.read_session() as s:
        rows = s.scalars(select(ApiToken)).all()
        stored = " ".join(f"{r.token_hash} {r.prefix} {r.name}" for r in rows)
        assert token not in stored
        create = s.scalars(select(AuditEntry).where(AuditEntry.action == "cluster.create")).one()
        assert create.actor == "ci-deployer"  # the token's name, never a client header


def test_audit_log_filters(app: Any, db: Database) -> None:
    with client_for(app) as local:
        first = local.post("/api/clusters", json=CLUSTER).json()["id"]
        other = local.post("/api/clusters", json={**CLUSTER, "name": "other"}).json()["id"]
        local.patch(f"/api/clusters/{first}", json={"registration_address": "127.0.0.9"})
        everything = local.get("/api/audit").json()
        assert [(e["action"], e["cluster_id"], e["actor"]) for e in everything] == [
            ("cluster.create", first, "local"),
            ("cluster.create", other, "local"),
            ("cluster.update", first, "local"),
        ]
        only = local.get("/api/audit", params={"cluster_id": first}).json()
        assert [e["action"] for e in only] == ["cluster.create", "cluster.update"]
        assert local.get("/api/audit", params={"actor": "nobody"}).json() == []
        future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
        assert local.get("/api/audit", params={"since": future}).json() == []
        page = local.get("/api/audit", params={"after_id": everything[0]["id"], "limit": 1})
        assert [e["id"] for e in page.json()] == [everything[1]["id"]]
        r = local.get("/api/audit", params={"since": "2026-01-01T00:00:00"})
        assert r.status_code == 422
        assert r.json()["detail"] == "since: give a time zone, e.g. 2026-12-02T10:00:00Z"


def test_insecure_no_auth_serves_everyone_until_a_token_exists(
    settings: Settings, db: Database, prober: FakeProber
) -> None:
    settings.insecure_no_auth = True
    app = create_app(settings, prober=prober, run_migrations=False, start_worker=False)
    with client_for(app, REMOTE) as remote:
        assert remote.post("/api/clusters", json=CLUSTER).status_code == 201
        make_token(db, "root-admin", "admin")
        assert remote.get("/api/clusters").status_code == 401
    with db.read_session() as s:
        entry = s.scalars(select(AuditEntry).where(AuditEntry.action == "cluster.create")).one()
        assert entry.actor == "insecure-no-auth@10.9.8.7"


def test_audit_records_role_and_refusals(app: Any, db: Database) -> None:
    viewer = make_token(db, "watcher", "viewer")
    operator = make_token(db, "deployer", "operator")
    with client_for(app, REMOTE) as remote:
        as_op = {"Authorization": f"Bearer {operator}"}
        cid = remote.post("/api/clusters", json=CLUSTER, headers=as_op).json()["id"]
        assert remote.post("/api/clusters", json=CLUSTER, headers=as_op).status_code == 409
        r = remote.post(
            f"/api/clusters/{cid}/scale/remove",
            json={"nodes": [{"hostname": "m1"}]},
            headers=as_op,
        )
        assert r.status_code == 400
        r = remote.delete(f"/api/clusters/{cid}", headers={"Authorization": f"Bearer {viewer}"})
        assert r.status_code == 403
        assert remote.delete(f"/api/clusters/{cid}").status_code == 401  # not recorded
    with db.read_session() as s:
        rows = s.scalars(
            select(AuditEntry).where(AuditEntry.action != "token.create").order_by(AuditEntry.id)
        ).all()
        got = [(e.actor, e.role, e.action, e.cluster_id, e.result) for e in rows]
    assert got == [
        ("deployer", "operator", "cluster.create", cid, "ok"),
        (
            "deployer",
            "operator",
            "POST /api/clusters",
            None,
            "409 Cluster named 'prod' already exists",
        ),
        (
            "deployer",
            "operator",
            f"POST /api/clusters/{cid}/scale/remove",
            cid,
            "400 Cannot remove all control-plane nodes. At least 1 required.",
        ),
        (
            "watcher",
            "viewer",
            f"DELETE /api/clusters/{cid}",
            cid,
            "403 This needs the 'admin' role; the token 'watcher' has 'viewer'",
        ),
    ]
