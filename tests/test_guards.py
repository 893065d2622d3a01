"""Request guards: Host (DNS rebinding), cross-site browsers, body size and nesting."""

from __future__ import annotations

import json
import socket
import subprocess
import tracemalloc
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from rke2_manager.api.app import create_app
from rke2_manager.api.guards import MAX_DEPTH, nesting_depth
from rke2_manager.config import Settings
from rke2_manager.db import Database
from rke2_manager.models import Cluster
from tests.factories import FakeProber
from tests.live import live_server

SEED_BODY = '{"name": "prod", "nodes": [{"hostname": "m1", "ip": "127.0.1.1", "role": "server"}]}'
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def clusters(db: Database) -> int:
    with db.read_session() as s:
        return int(s.scalar(select(func.count()).select_from(Cluster)) or 0)


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "http://evil.example"},
        {"Origin": "null"},
        {"Origin": "http://localhost.evil.example"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
    ],
)
def test_cross_site_form_post_is_refused(
    client: TestClient, db: Database, headers: dict[str, str]
) -> None:
    r = client.post("/api/clusters", content=SEED_BODY, headers={**FORM, **headers})
    assert r.status_code == 403
    detail = r.json()["detail"]
    if "Origin" in headers:
        assert detail == (
            f"Cross-origin request refused: Origin '{headers['Origin']}' is not this service"
        )
    else:
        assert detail == f"Cross-site request refused (Sec-Fetch-Site: {headers['Sec-Fetch-Site']})"
    assert clusters(db) == 0


def test_same_origin_and_plain_clients_are_served(client: TestClient, db: Database) -> None:
    r = client.post(
        "/api/clusters",
        content=SEED_BODY,
        headers={**FORM, "Origin": "http://localhost", "Sec-Fetch-Site": "same-origin"},
    )
    assert r.status_code == 201, r.text
    # reading carries no risk of a change: a cross-site GET is answered (CORS keeps the body
    # from the page, as there are no CORS headers)
    r = client.get("/api/clusters", headers={"Origin": "http://evil.example"})
    assert r.status_code == 200
    assert "access-control-allow-origin" not in r.headers


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8000", "127.0.0.2", "[::2]"])
def test_foreign_host_header_is_refused(client: TestClient, db: Database, host: str) -> None:
    for method in ("GET", "POST"):
        r = client.request(method, "/api/clusters", headers={"Host": host}, content=SEED_BODY)
        assert r.status_code == 400
        assert r.json()["detail"] == (
            f"Host '{host}' is not a name of this service (RKE2M_ALLOWED_HOSTS)"
        )
    assert clusters(db) == 0


@pytest.mark.parametrize("host", ["localhost", "localhost:8000", "127.0.0.1:9", "[::1]:8000"])
def test_own_host_names_are_served(client: TestClient, host: str) -> None:
    assert client.get("/api/clusters", headers={"Host": host}).status_code == 200


def test_allowed_hosts_setting(settings: Settings, db: Database, prober: FakeProber) -> None:
    settings.allowed_hosts = ["rke2m.internal"]
    app = create_app(settings, prober=prober, run_migrations=False, start_worker=False)
    with TestClient(app, base_url="http://rke2m.internal", client=("127.0.0.1", 1)) as c:
        assert c.get("/api/clusters").status_code == 200
        assert c.get("/api/clusters", headers={"Host": "localhost"}).status_code == 400


@pytest.fixture
def live(settings: Settings, db: Database, prober: FakeProber) -> Iterator[str]:
    app = create_app(settings, prober=prober, run_migrations=False, start_worker=False)
    with live_server(app) as url:
        yield url


def test_seed_curl_commands_work_verbatim(live: str, db: Database) -> None:
    """curl -d sends a form content type and neither Origin nor Sec-Fetch-Site."""

    def curl(*args: str) -> tuple[int, dict[str, Any]]:
        out = subprocess.run(
            ["curl", "-s", "-w", "\n%{http_code}", *args], capture_output=True, text=True
        ).stdout
        body, _, code = out.rpartition("\n")
        return int(code), json.loads(body)

    code, created = curl("-X", "POST", f"{live}/api/clusters", "-d", SEED_BODY)
    assert code == 201 and created["name"] == "prod"
    code, accepted = curl("-X", "POST", f"{live}/api/jobs/install/{created['id']}")
    assert code == 202 and accepted["status"] == "running"
    code, busy = curl(
        "-X",
        "POST",
        f"{live}/api/clusters/{created['id']}/scale/add",
        "-d",
        '{"nodes": [{"hostname": "w2", "ip": "10.0.0.5", "role": "agent"}]}',
    )
    assert code == 409
    assert busy["detail"] == (
        f"Cluster is busy with operation 'install' (job {accepted['job_id']}). Please wait."
    )


def _raw_request(url: str, head: str) -> bytes:
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(head.encode())
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
        return b"".join(chunks)


def test_oversized_body_is_refused_before_it_is_read(live: str, db: Database) -> None:
    # Only the headers are sent: the 413 comes without the server waiting for 50 MB.
    answer = _raw_request(
        live,
        "POST /api/clusters HTTP/1.1\r\nHost: localhost\r\n"
        f"Content-Length: {50 * 1024 * 1024}\r\n\r\n",
    )
    status, _, rest = answer.partition(b"\r\n")
    assert status == b"HTTP/1.1 413 Request Entity Too Large" or b" 413 " in status
    assert json.loads(rest.partition(b"\r\n\r\n")[2])["detail"] == (
        "request body is larger than 1048576 bytes (RKE2M_MAX_BODY)"
    )
    assert clusters(db) == 0


def test_streamed_50mb_body_keeps_memory_flat(live: str, db: Database) -> None:
    """Chunked, with no Content-Length: the server stops at the limit, holding ~1 MiB."""
    sent = 0
    block = b"[" * 65536

    def body() -> Iterator[bytes]:
        nonlocal sent
        while sent < 50 * 1024 * 1024:
            sent += len(block)
            yield block

    tracemalloc.start()
    try:
        with httpx.Client(timeout=30) as c:
            try:
                r = c.post(f"{live}/api/clusters", content=body())
                status = r.status_code
            except httpx.HTTPError:  # the server may close while the client still sends
                status = 413
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    print(f"refusing a streamed 50 MB body: peak traced memory {peak / 1e6:.1f} MB")
    assert status == 413
    assert peak < 12 * 1024 * 1024, f"peak {peak / 1e6:.1f} MB while refusing a 50 MB body"
    assert sent < 50 * 1024 * 1024
    assert clusters(db) == 0


def test_deep_nesting_is_refused_and_reads_still_work(client: TestClient, db: Database) -> None:
    deep: Any = "x"
    for _ in range(300):
        deep = [deep]
    body = {**json.loads(SEED_BODY), "rke2": {"config": {"cni": deep}}}
    r = client.post("/api/clusters", json=body)
    assert r.status_code == 422
    assert r.json()["detail"] == f"request body nests deeper than {MAX_DEPTH} levels"
    assert clusters(db) == 0
    assert client.get("/api/clusters").status_code == 200


def test_nesting_depth_skips_strings() -> None:
    assert nesting_depth(b'{"a": [1, {"b": "[[[[{{{{"}]}') == 3
    assert nesting_depth(b'["\\"[[[", [[]]]') == 3
    assert nesting_depth(b"not json") == 0


def test_bad_content_length(live: str) -> None:
    answer = _raw_request(
        live, "POST /api/clusters HTTP/1.1\r\nHost: localhost\r\nContent-Length: x1\r\n\r\n"
    )
    assert b" 400 " in answer.partition(b"\r\n")[0]
