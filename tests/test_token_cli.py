"""``rke2-manager token …`` and ``serve``'s refusal to listen unprotected beyond loopback."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.live import free_port

CLI = [sys.executable, "-m", "rke2_manager"]


def run(env: dict[str, str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args], env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "RKE2M_DATA_DIR": str(tmp_path / "data"),
        "RKE2M_SECRET_KEY": "test-key",
        "RKE2M_WORKER_ENABLED": "false",
    }


def test_token_create_list_revoke(env: dict[str, str], tmp_path: Path) -> None:
    created = run(env, "token", "create", "--name", "ops", "--role", "admin")
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip().splitlines()[-1].split()[-1]
    assert token.startswith("rke2m_")
    listed = run(env, "token", "list", "--output", "json")
    assert listed.returncode == 0 and '"name": "ops"' in listed.stdout
    assert token not in listed.stdout
    db_bytes = (tmp_path / "data" / "rke2-manager.db").read_bytes()
    assert token.encode() not in db_bytes
    again = run(env, "token", "create", "--name", "ops", "--role", "viewer")
    assert again.returncode == 1 and "A token named 'ops' already exists" in again.stderr
    bad = run(env, "token", "create", "--name", "Bad Name", "--role", "viewer")
    assert bad.returncode == 2
    revoked = run(env, "token", "revoke", "ops")
    assert revoked.returncode == 0 and "revoked" in revoked.stderr
    missing = run(env, "token", "revoke", "nobody")
    assert missing.returncode == 1 and "Token 'nobody' not found" in missing.stderr


def test_serve_refuses_a_public_address_without_tokens(env: dict[str, str]) -> None:
    port = str(free_port())
    refused = run(env, "serve", "--host", "0.0.0.0", "--port", port)
    assert refused.returncode == 2
    assert "refusing to listen on 0.0.0.0: no API token exists" in " ".join(refused.stderr.split())


def test_serve_starts_on_a_public_address_once_a_token_exists(env: dict[str, str]) -> None:
    created = run(env, "token", "create", "--name", "ops", "--role", "admin")
    token = created.stdout.split()[-1]
    port = free_port()
    proc = subprocess.Popen(
        [*CLI, "serve", "--host", "0.0.0.0", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                r = httpx.get(
                    f"http://127.0.0.1:{port}/api/clusters",
                    headers={"Authorization": f"Bearer {token}"},
                )
                break
            except httpx.TransportError:
                assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
                assert time.monotonic() < deadline, "serve did not start"
                time.sleep(0.2)
        assert r.status_code == 200 and r.json() == []
        assert httpx.get(f"http://127.0.0.1:{port}/api/clusters").status_code == 401
    finally:
        proc.terminate()
        proc.wait(20)
