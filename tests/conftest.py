"""Shared fixtures: a fresh database per test on SQLite and on PostgreSQL, the app, a client.

Network safety: every test runs with ``allowed_networks`` limited to loopback (plus the lab's own
subnets), and an autouse guard refuses in-process connections anywhere else, so a seed address
such as 10.0.0.5 can never be contacted by a job or a probe.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from rke2_manager.api.app import create_app
from rke2_manager.config import Settings
from rke2_manager.db import Database
from rke2_manager.models import Base
from tests.factories import TEST_SECRET_KEY, FakeProber, write_playbooks

pytest_plugins = ["tests.lab.fixtures"]

CI = os.environ.get("CI") == "true"
PG_ADMIN_URL = os.environ.get(
    "RKE2M_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
LOOPBACK = ("127.0.0.1", 50000)
#: Networks tests may connect to; lab fixtures add their own subnets here.
TEST_NETWORKS: list[str] = ["127.0.0.0/8", "::1/128"]


def _pg_available() -> str | None:
    try:
        engine = create_engine(PG_ADMIN_URL)
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        engine.dispose()
        return None
    except Exception as exc:
        return str(exc).splitlines()[0]


_PG_PROBLEM = _pg_available()


def skip_or_fail(reason: str) -> None:
    """Skip on a laptop; in CI a missing prerequisite is a failure, never a skip."""
    if CI:
        pytest.fail(f"required in CI: {reason}")
    print(f"SKIP: {reason}")
    pytest.skip(reason)


# --- network guard --------------------------------------------------------------------------------
_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex


def _allowed(address: object) -> bool:
    if not isinstance(address, tuple):
        return True  # AF_UNIX
    try:
        ip = ipaddress.ip_address(str(address[0]))
    except ValueError:
        return False
    return any(
        ip in ipaddress.ip_network(n)
        for n in TEST_NETWORKS
        if ip.version == ipaddress.ip_network(n).version
    )


def _guarded(real):  # type: ignore[no-untyped-def]
    def connect(self, address):  # type: ignore[no-untyped-def]
        if not _allowed(address):
            raise AssertionError(f"test tried to connect to {address!r}, outside {TEST_NETWORKS}")
        return real(self, address)

    return connect


@pytest.fixture(autouse=True)
def network_guard(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(socket.socket, "connect", _guarded(_real_connect))
    monkeypatch.setattr(socket.socket, "connect_ex", _guarded(_real_connect_ex))


# --- databases ------------------------------------------------------------------------------------
@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database: a SQLite file, or a PostgreSQL schema of its own."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'test.db'}"
        return
    if _PG_PROBLEM:
        skip_or_fail(f"PostgreSQL at {PG_ADMIN_URL} is not available: {_PG_PROBLEM}")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    sep = "&" if "?" in PG_ADMIN_URL else "?"
    yield f"{PG_ADMIN_URL}{sep}options=-csearch_path%3D{schema}"
    with admin.connect() as conn:
        conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
    admin.dispose()


@pytest.fixture
def playbook_dir(tmp_path: Path) -> Path:
    """Test playbooks that act on the local machine only (``connection: local``)."""
    path = tmp_path / "playbooks"
    write_playbooks(path, mode="ok")
    return path


@pytest.fixture
def settings(database_url: str, tmp_path: Path, playbook_dir: Path) -> Settings:
    return Settings(
        database_url=database_url,
        data_dir=tmp_path / "data",
        secret_key=TEST_SECRET_KEY,
        allowed_networks=list(TEST_NETWORKS),
        playbook_dir=playbook_dir,
        worker_poll_interval=0.05,
        lock_ttl=60,
        # a test's service shuts down with its jobs still running: end them at once
        shutdown_grace=0,
        kill_grace=2,
        # a job locked by a worker "elsewhere" never answers a cancel: end it sooner than 30 s
        stop_timeout=10,
        _env_file=None,  # type: ignore[call-arg]
    )


@pytest.fixture
def db(settings: Settings) -> Iterator[Database]:
    database = Database(settings.database_url)
    Base.metadata.create_all(database.engine)
    yield database
    database.dispose()


@pytest.fixture
def prober() -> FakeProber:
    return FakeProber()


def _client(settings: Settings, db: Database, prober: FakeProber, worker: bool) -> TestClient:
    app = create_app(settings, prober=prober, run_migrations=False, start_worker=worker)
    # A loopback client with no token yet: protected mode serves it as the local admin.
    return TestClient(
        app, raise_server_exceptions=False, base_url="http://localhost", client=LOOPBACK
    )


@pytest.fixture
def client(settings: Settings, db: Database, prober: FakeProber) -> Iterator[TestClient]:
    """The API without a job worker: jobs stay as the request left them."""
    with _client(settings, db, prober, worker=False) as c:
        yield c


@pytest.fixture
def worker_client(settings: Settings, db: Database, prober: FakeProber) -> Iterator[TestClient]:
    """The API with its embedded worker running jobs."""
    with _client(settings, db, prober, worker=True) as c:
        yield c
