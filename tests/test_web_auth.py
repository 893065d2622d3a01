"""How a browser is let in: the login form, the HttpOnly session cookie, CSRF for cookie
mutations, protected mode, and a role declared on every dashboard route."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from rke2_manager.api.app import create_app
from rke2_manager.api.auth import PROTECTED_MODE
from rke2_manager.config import Settings
from rke2_manager.db import Database
from rke2_manager.models import ApiRole, AuditEntry, Cluster
from rke2_manager.tokens.service import create_token, revoke_token
from rke2_manager.web.session import COOKIE, csrf_for
from tests.conftest import LOOPBACK
from tests.factories import TEST_BOX, FakeProber, make_cluster
from tests.test_auth import all_routes, declared_roles

REMOTE = ("10.9.8.7", 40000)  # never contacted: a client address the app sees, nothing more
CLUSTER = {"name": "prod", "nodes": [{"hostname": "m1", "ip": "127.0.1.1", "role": "server"}]}


@pytest.fixture
def app(settings: Settings, db: Database, prober: FakeProber) -> Iterator[Any]:
    yield create_app(settings, prober=prober, run_migrations=False, start_worker=False)


def browser(app: Any, address: tuple[str, int] = REMOTE) -> TestClient:
    return TestClient(
        app, raise_server_exceptions=False, base_url="http://localhost", client=address
    )


def make_token(db: Database, name: str, role: str) -> str:
    with db.transaction() as s:
        return create_token(s, name, ApiRole(role), "test")[1]


def login(client: TestClient, token: str, next_path: str = "/ui/") -> Any:
    return client.post(
        "/ui/login",
        content=f"token={token}&next={next_path}",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        follow_redirects=False,
    )


def test_every_dashboard_route_declares_one_role(app: Any) -> None:
    ui = next(r for r in app.routes if getattr(r, "path", None) == "/ui").app
    roles = {}
    for route in all_routes(ui):
        if isinstance(route, APIRoute):
            found = declared_roles(route)
            assert len(found) == 1, (route.path, found)
            roles[(next(iter(route.methods)), route.path)] = found[0]
        else:
            assert route.path == "/static", route.path  # the pages' own CSS and JS
    assert roles == {
        ("GET", "/login"): None,
        ("POST", "/login"): None,
        ("POST", "/logout"): None,
        ("GET", "/docs-assets/{name}"): None,
        ("GET", "/"): "viewer",
        ("GET", "/clusters/new"): "viewer",
        ("GET", "/clusters/{cluster_id}"): "viewer",
        ("GET", "/jobs/{job_id}"): "viewer",
        ("GET", "/admin"): "admin",
    }


def test_protected_mode_pages_answer_401_with_the_way_out(app: Any) -> None:
    with browser(app) as remote, browser(app, LOOPBACK) as local:
        r = remote.get("/ui/", follow_redirects=False)
        assert r.status_code == 401
        assert "rke2-manager token create --name NAME --role admin" in r.text
        assert PROTECTED_MODE.split(":")[0] in r.text
        assert local.get("/ui/").status_code == 200  # loopback: the local admin
        assert "local (admin)" in local.get("/ui/").text
        # the docs and the login form stay reachable
        assert remote.get("/docs").status_code == 200
        login_page = remote.get("/ui/login")
        assert login_page.status_code == 200
        assert "No API token exists yet" in login_page.text


def test_login_sets_an_httponly_strict_cookie_and_pages_work_with_it(
    app: Any, db: Database
) -> None:
    token = make_token(db, "alice", "operator")
    with browser(app) as remote:
        r = remote.get("/ui/clusters/new", follow_redirects=False)
        assert r.status_code == 303
        assert r.headers["location"] == "/ui/login?next=/ui/clusters/new"
        assert "No API token exists yet" not in remote.get("/ui/login").text
        bad = login(remote, "not-a-token")
        assert bad.status_code == 401
        assert "The API token is unknown or revoked" in bad.text
        assert COOKIE not in remote.cookies
        good = login(remote, token, "/ui/clusters/new")
        assert good.status_code == 303
        assert good.headers["location"] == "/ui/clusters/new"
        assert token not in good.headers["location"]
        cookie = good.headers["set-cookie"]
        assert cookie.startswith(f"{COOKIE}={token};")
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
        page = remote.get("/ui/clusters/new")
        assert page.status_code == 200
        assert "alice (operator)" in page.text
        assert f'data-csrf="{csrf_for(token)}"' in page.text  # what the page's scripts echo
        assert token not in page.text
        assert remote.get("/api/clusters").status_code == 200  # the cookie reaches the API


def test_cookie_mutations_need_the_csrf_value(app: Any, db: Database) -> None:
    token = make_token(db, "alice", "operator")
    with browser(app) as remote:
        assert login(remote, token).status_code == 303
        r = remote.post("/api/clusters", json=CLUSTER)
        assert r.status_code == 401
        assert r.json()["detail"] == "Authentication required: send `Authorization: Bearer <token>`"
        r = remote.post("/api/clusters", json=CLUSTER, headers={"X-CSRF-Token": "0" * 64})
        assert r.status_code == 401
        r = remote.post(
            "/api/clusters",
            json=CLUSTER,
            headers={"X-CSRF-Token": csrf_for(token), "Origin": "http://evil.example"},
        )
        assert r.status_code == 403  # the guards refuse cross-site requests first
        r = remote.post("/api/clusters", json=CLUSTER, headers={"X-CSRF-Token": csrf_for(token)})
        assert r.status_code == 201, r.text
    with db.read_session() as s:
        actors = {e.actor for e in s.query(AuditEntry).filter_by(action="cluster.create")}
    assert actors == {"alice"}  # the token's name, as for any API call


def test_a_revoked_token_sends_the_browser_back_to_login(app: Any, db: Database) -> None:
    token = make_token(db, "alice", "viewer")
    make_token(db, "admin", "admin")
    with browser(app) as remote:
        assert login(remote, token).status_code == 303
        assert remote.get("/ui/").status_code == 200
        with db.transaction() as s:
            revoke_token(s, "alice", "test")
        r = remote.get("/ui/", follow_redirects=False)
        assert r.status_code == 303
        assert r.headers["location"] == "/ui/login?next=/ui/"
        assert f'{COOKIE}=""' in r.headers["set-cookie"]  # the stale cookie is dropped


def test_a_viewer_sees_pages_but_the_api_refuses_its_operations(app: Any, db: Database) -> None:
    token = make_token(db, "val", "viewer")
    with browser(app) as remote:
        assert login(remote, token).status_code == 303
        assert remote.get("/ui/").status_code == 200
        r = remote.post("/api/clusters", json=CLUSTER, headers={"X-CSRF-Token": csrf_for(token)})
        assert r.status_code == 403
        assert r.json()["detail"] == "This needs the 'operator' role; the token 'val' has 'viewer'"


@pytest.mark.parametrize(
    "next_path",
    ["//evil.example/", "https://evil.example/", "/api/clusters", "/ui\\@evil", ""],
)
def test_login_never_redirects_off_the_dashboard(app: Any, db: Database, next_path: str) -> None:
    token = make_token(db, "alice", "viewer")
    with browser(app) as remote:
        r = login(remote, token, next_path)
        assert r.status_code == 303
        assert r.headers["location"] == "/ui/"


def test_logout_clears_the_cookie(app: Any, db: Database) -> None:
    token = make_token(db, "alice", "viewer")
    with browser(app) as remote:
        assert login(remote, token).status_code == 303
        r = remote.post("/ui/logout", follow_redirects=False)
        assert r.status_code == 303
        assert r.headers["location"] == "/ui/login"
        assert COOKIE not in remote.cookies
        assert remote.get("/ui/", follow_redirects=False).status_code == 303


@pytest.mark.parametrize(
    "body",
    [b"", b"token=", b"%%%", b"token=" + b"x" * 600, b"token=a%00b", b"\xff\xfe", b"{}"],
)
def test_bad_login_bodies_are_401_never_500(app: Any, db: Database, body: bytes) -> None:
    make_token(db, "alice", "viewer")
    with browser(app) as remote:
        r = remote.post("/ui/login", content=body, follow_redirects=False)
        assert r.status_code == 401, r.text
        assert COOKIE not in remote.cookies


@pytest.mark.parametrize(
    "cookie", ["rke2m_token=" + "a" * 600, 'rke2m_token="\\x00"', "rke2m_token", "=;;=="]
)
def test_malformed_cookies_are_no_session(app: Any, db: Database, cookie: str) -> None:
    make_token(db, "alice", "viewer")
    with browser(app) as remote:
        r = remote.get("/ui/", headers={"Cookie": cookie}, follow_redirects=False)
        assert r.status_code == 303
        assert remote.get("/api/clusters", headers={"Cookie": cookie}).status_code == 401


def test_the_cluster_page_follows_the_role(app: Any, db: Database) -> None:
    """A viewer is told the forms will refuse it; an admin gets the kubeconfig link, which
    works with the session cookie (a GET: no CSRF value needed)."""
    cluster_id = make_cluster(db, "prod", [("m1", "127.0.10.1", "server", "ACTIVE")])
    with db.transaction() as s:
        cluster = s.get(Cluster, cluster_id)
        assert cluster is not None
        cluster.kubeconfig_enc = TEST_BOX.encrypt(
            "apiVersion: v1\nclusters:\n- cluster:\n    server: https://127.0.0.1:6443\n"
        )
    tokens = {role: make_token(db, role, role) for role in ("viewer", "admin")}
    link = f'href="/api/clusters/{cluster_id}/kubeconfig"'
    with browser(app) as remote:
        assert login(remote, tokens["viewer"]).status_code == 303
        page = remote.get(f"/ui/clusters/{cluster_id}").text
        assert "Your token's role is viewer: the forms below answer 403 for it." in page
        assert link not in page
        assert login(remote, tokens["admin"]).status_code == 303
        page = remote.get(f"/ui/clusters/{cluster_id}").text
        assert "Your token's role is" not in page
        assert link in page
        r = remote.get(f"/api/clusters/{cluster_id}/kubeconfig")
        assert r.status_code == 200
        assert "server: https://127.0.10.1:6443" in r.text


def test_the_admin_page_needs_the_admin_role(app: Any, db: Database) -> None:
    tokens = {role: make_token(db, role, role) for role in ("operator", "admin")}
    with browser(app) as remote:
        assert remote.get("/ui/admin", follow_redirects=False).status_code == 303
        assert login(remote, tokens["operator"]).status_code == 303
        r = remote.get("/ui/admin")
        assert r.status_code == 403
        assert "This needs the &#39;admin&#39; role; the token &#39;operator&#39; has" in r.text
        assert 'href="/ui/admin"' not in remote.get("/ui/").text
        assert login(remote, tokens["admin"]).status_code == 303
        r = remote.get("/ui/admin")
        assert r.status_code == 200 and 'id="token-form"' in r.text
        assert 'href="/ui/admin"' in remote.get("/ui/").text
