"""Schemathesis over the API's OpenAPI schema, in process against the ASGI app.

Every operation gets the examples, coverage and fuzzing phases with valid and invalid data, on a
fresh SQLite database and with no job worker. Each response must satisfy the API's error contract:
no 5xx for any request, and every 4xx is JSON with a non-empty ``detail``. A failure names the
operation, the request (as a curl command), the seed and the response, so it reproduces.

The run is bounded for CI (fixed seed, derandomized, few fuzzing examples per operation).
"""

from __future__ import annotations

import itertools
import json
import tempfile
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from pathlib import Path
from typing import Any

import hypothesis
import pytest
import schemathesis
from hypothesis import strategies as st
from schemathesis.python import asgi

from rke2_manager.api.app import create_app
from rke2_manager.config import Settings
from rke2_manager.db import Database
from tests.factories import TEST_SECRET_KEY, FakeProber, lock_cluster, make_cluster

Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Any, Any], Awaitable[None]]

#: Requests come from here, with ``Host: localhost``, as the ``client`` fixture's do: in protected
#: mode (no API tokens yet) a loopback client is the admin.
CLIENT = ("127.0.0.1", 50000)
BASE_URL = "http://localhost"

CONFIG = schemathesis.Config.from_dict(
    {
        "seed": 20261202,
        "base-url": BASE_URL,
        "generation": {
            "mode": "all",  # valid and invalid data
            "max-examples": 25,  # per operation, in the fuzzing phase
            "deterministic": True,
            "database": "none",
        },
        # Stateful links need a schema with links; the other three phases cover each operation.
        "phases": {"stateful": {"enabled": False}},
    }
)


def _from_loopback(app: ASGIApp) -> ASGIApp:
    """``app`` as a server runs it for a client on 127.0.0.1.

    Schemathesis' own client calls itself ``testclient``, and it re-raises what the app raises
    after its 500 went out; a server logs that instead (the app's log is in the test's output),
    as ``TestClient(raise_server_exceptions=False)`` does, so the 500 is what the test sees.
    """

    async def call(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        started = False

        async def watch(message: MutableMapping[str, Any]) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await app({**scope, "client": CLIENT}, receive, watch)
        except Exception:
            if not started:
                raise

    return call


def _openapi() -> dict[str, Any]:
    """The app's OpenAPI document: it does not depend on the settings, so it is built once here.

    (Schemathesis' ``from_fixture`` would build it per test, but breaks on pytest 9.2.)
    """
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(
            database_url=f"sqlite:///{tmp}/unused.db",  # never opened
            data_dir=Path(tmp) / "data",
            secret_key=TEST_SECRET_KEY,
            _env_file=None,  # type: ignore[call-arg]
        )
        return create_app(settings, run_migrations=False, start_worker=False).openapi()


schema = schemathesis.openapi.from_dict(_openapi(), config=CONFIG)

#: Names and addresses the API accepts: three of the nodes ``_seed`` makes, and new ones.
USABLE_NODES = [
    ("m2", "127.0.10.2"),
    ("w1", "127.0.10.21"),
    ("m3", "127.0.10.3"),
    *((f"x{i}", f"127.0.20.{i}") for i in range(1, 6)),
]


def _with_usable_nodes(body: dict[str, Any]) -> dict[str, Any]:
    nodes = [
        {**node, "hostname": name, **({"ip": ip} if node.get("ip") is not None else {})}
        if isinstance(node, dict)
        else node
        for node, (name, ip) in zip(body["nodes"], itertools.cycle(USABLE_NODES))
    ]
    return {**body, "nodes": nodes}


@schema.hook
def flatmap_body(context: schemathesis.HookContext, body: Any) -> st.SearchStrategy[Any]:
    """Give half the bodies with nodes names and addresses the API accepts.

    The schema's patterns make generated names and addresses valid, but they name nodes the
    seeded clusters do not have: without this, removals would stop at 404/400 before the quorum
    and confirmation guardrails, and additions would rarely meet the duplicate checks (G4).
    """
    if isinstance(body, dict) and isinstance(body.get("nodes"), list):
        return st.sampled_from([body, _with_usable_nodes(body)])
    return st.just(body)


def _seed(db: Database) -> None:
    """Clusters 1 to 3 and job 1, so that small generated ids reach more than the 404 path:
    a healthy cluster (G2 and G3 apply), one whose job holds its lock (409s), one whose initial
    master is not active yet (G1)."""
    servers = [(f"m{i}", f"127.0.10.{i}", "server", "ACTIVE") for i in (1, 2, 3)]
    make_cluster(db, "prod", [*servers, ("w1", "127.0.10.21", "agent", "ACTIVE")])
    busy = make_cluster(db, "busy", [("b1", "127.0.11.1", "server", "ACTIVE")])
    lock_cluster(db, busy)
    make_cluster(db, "new", [("n1", "127.0.12.1", "server", "PENDING")])


@pytest.fixture
def app(settings: Settings, db: Database, prober: FakeProber) -> Iterator[ASGIApp]:
    """The API as the ``client`` fixture builds it, on a fresh SQLite file (``db``: its tables)."""
    _seed(db)
    # job 1's worker is "elsewhere" and never answers: a cancel ends it after this long
    settings.stop_timeout = 0.5
    app = create_app(settings, prober=prober, run_migrations=False, start_worker=False)
    try:
        yield _from_loopback(app)
    finally:
        asgi.shutdown_lifespans()  # the app's lifespan disposes its database engine


def _problem(case: schemathesis.Case, response: schemathesis.Response, why: str) -> str:
    body = response.content[:2000].decode("utf-8", "replace")
    content_type = ", ".join(response.headers.get("content-type", []))
    return (
        f"{case.operation.label}: {why}\n"
        f"request: {case.as_curl_command()}\n"
        f"response: {response.status_code} {content_type}: {body}\n"
        f"seed: {CONFIG.seed} (tests/test_schemathesis.py)"
    )


def _check_error_contract(case: schemathesis.Case, app: ASGIApp) -> None:
    response = case.call(base_url=BASE_URL, app=app)
    status = response.status_code
    assert status < 500, _problem(case, response, f"server error {status}")
    if 400 <= status < 500:
        try:
            body = json.loads(response.content)
        except ValueError:
            raise AssertionError(_problem(case, response, f"{status} body is not JSON")) from None
        detail = body.get("detail") if isinstance(body, dict) else None
        assert isinstance(detail, str) and detail.strip(), _problem(
            case, response, f'{status} body has no non-empty "detail"'
        )


# A test per operation, each on a database of its own, kept across that operation's examples
# (so after ``POST /api/tokens`` first succeeds, protected mode ends and its later requests get
# 401s). Following a job's log is left out: it streams until the job ends, and without a worker
# no job ever ends.
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@schema.exclude(method="GET", path="/api/jobs/{job_id}/log/follow").parametrize()
@hypothesis.settings(suppress_health_check=[hypothesis.HealthCheck.function_scoped_fixture])
def test_api_keeps_its_error_contract(case: schemathesis.Case, app: ASGIApp) -> None:
    _check_error_contract(case, app)
