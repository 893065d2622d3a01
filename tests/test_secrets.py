"""Secrets: secret rke2.config keys are encrypted and write-only; secrets are redacted from every
job, node, log and audit row and every log record; the data directory is private."""

from __future__ import annotations

import json
import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from rke2_manager.clusters.rke2config import is_secret_key
from rke2_manager.config import Settings
from rke2_manager.db import Database
from rke2_manager.models import AuditEntry, Cluster, Job, JobLogLine, Node
from rke2_manager.redaction import (
    MASK,
    RedactingFilter,
    Redactor,
    SecretRegistry,
    install_log_redaction,
)
from tests.factories import TEST_BOX, TEST_SECRET_KEY, lock_cluster, make_cluster

NODES = [{"hostname": "m1", "ip": "127.0.40.1", "role": "server"}]
S3_SECRET = 'wJalr"XUtnFEMI\\K7MDENG\nbPxRfiCY'  # quotes, backslash, newline: escaped forms differ
SECRETS = {"etcd-s3-secret-key": S3_SECRET, "etcd-s3-access-key": "AKIAIOSFODNN7EXAMPLE"}


def _stored_secrets(db: Database) -> dict[str, Any]:
    with db.read_session() as s:
        cluster = s.scalars(select(Cluster)).one()
        assert cluster.rke2_config_secrets_enc is not None
        assert S3_SECRET not in cluster.rke2_config_secrets_enc
        value: dict[str, Any] = json.loads(TEST_BOX.decrypt(cluster.rke2_config_secrets_enc))
        return value


def _assert_hidden(text: str, *values: str) -> None:
    for value in values:
        assert value not in text and json.dumps(value)[1:-1] not in text


@pytest.mark.parametrize(
    ("key", "secret"),
    [
        ("token", True),
        ("agent-token", True),
        ("etcd-s3-access-key", True),
        ("etcd-s3-secret-key", True),
        ("etcd-s3-session-token", True),
        ("datastore-endpoint", True),
        ("db-password", True),
        ("my-secret", True),
        ("token-file", False),
        ("secrets-encryption", False),
        ("cni", False),
        ("tls-san", False),
    ],
)
def test_secret_key_names(key: str, secret: bool) -> None:
    assert is_secret_key(key) is secret


def test_secret_config_keys_are_write_only(client: TestClient, db: Database) -> None:
    r = client.post(
        "/api/clusters",
        json={"name": "prod", "nodes": NODES, "rke2": {"config": {"cni": "canal", **SECRETS}}},
    )
    assert r.status_code == 201, r.text
    cid = r.json()["id"]
    expected = {"config": {"cni": "canal"}, "keys": sorted(SECRETS)}
    shown = [r, client.get(f"/api/clusters/{cid}"), client.get("/api/clusters")]
    for response in shown:
        assert response.status_code == 200 or response.status_code == 201
        _assert_hidden(response.text, *SECRETS.values())
    for body in (shown[0].json(), shown[1].json(), shown[2].json()[0]):
        rke2 = body["rke2"]
        assert {"config": rke2["config"], "keys": rke2["secret_config_keys"]} == expected
    assert _stored_secrets(db) == SECRETS
    with db.read_session() as s:
        assert s.scalars(select(Cluster.rke2_config)).one() == {"cni": "canal"}
        audit = s.scalars(select(AuditEntry)).one()
        _assert_hidden(json.dumps(audit.detail), *SECRETS.values())


def test_patch_keeps_sets_and_removes_secret_keys(client: TestClient, db: Database) -> None:
    r = client.post(
        "/api/clusters",
        json={"name": "prod", "nodes": NODES, "rke2": {"config": {"cni": "canal", **SECRETS}}},
    )
    cid = r.json()["id"]
    # plain keys replace; secret keys not mentioned are kept
    r = client.patch(f"/api/clusters/{cid}", json={"rke2": {"config": {"cni": "calico"}}})
    assert r.status_code == 200, r.text
    assert r.json()["rke2"]["config"] == {"cni": "calico"}
    assert r.json()["rke2"]["secret_config_keys"] == sorted(SECRETS)
    assert _stored_secrets(db) == SECRETS
    # a secret key given is set (others kept); one given as null is removed
    r = client.patch(
        f"/api/clusters/{cid}",
        json={
            "rke2": {
                "config": {
                    "etcd-s3-access-key": None,
                    "etcd-s3-session-token": "session-123456",
                    "db-password": "hunter2-hunter2",
                }
            }
        },
    )
    assert r.status_code == 200, r.text
    _assert_hidden(r.text, S3_SECRET, "session-123456", "hunter2-hunter2")
    assert r.json()["rke2"]["config"] == {}
    assert r.json()["rke2"]["secret_config_keys"] == [
        "db-password",
        "etcd-s3-secret-key",
        "etcd-s3-session-token",
    ]
    assert _stored_secrets(db) == {
        "etcd-s3-secret-key": S3_SECRET,
        "etcd-s3-session-token": "session-123456",
        "db-password": "hunter2-hunter2",
    }
    # removing every secret key clears the column
    r = client.patch(
        f"/api/clusters/{cid}",
        json={
            "rke2": {
                "config": {
                    "etcd-s3-secret-key": None,
                    "etcd-s3-session-token": None,
                    "db-password": None,
                }
            }
        },
    )
    assert r.json()["rke2"]["secret_config_keys"] == []
    with db.read_session() as s:
        assert s.scalars(select(Cluster.rke2_config_secrets_enc)).one() is None


def test_patch_of_a_locked_cluster_keeps_its_secrets(client: TestClient, db: Database) -> None:
    r = client.post(
        "/api/clusters", json={"name": "prod", "nodes": NODES, "rke2": {"config": SECRETS}}
    )
    cid = r.json()["id"]
    lock_cluster(db, cid)
    r = client.patch(f"/api/clusters/{cid}", json={"rke2": {"config": {"db-password": None}}})
    assert r.status_code == 409
    assert _stored_secrets(db) == SECRETS


# --- redaction ------------------------------------------------------------------------------------
KUBECONFIG = """apiVersion: v1
clusters:
- cluster: {server: "https://127.0.0.1:6443"}
  name: default
users:
- name: default
  user:
    client-key-data: c2VjcmV0LWNsaWVudC1rZXktZGF0YQ==
    token: kube-bearer-token-0123456789
"""


@pytest.fixture
def redacting_db(settings: Settings, db: Database) -> Iterator[Database]:
    """A second Database on the test database, with redaction attached."""
    database = Database(settings.database_url, box=TEST_BOX)
    yield database
    database.dispose()


def _secret_cluster(db: Database) -> tuple[int, dict[str, str]]:
    cid = make_cluster(db)
    with db.transaction() as s:
        cluster = s.get(Cluster, cid)
        assert cluster is not None
        cluster.rke2_config_secrets_enc = TEST_BOX.encrypt(json.dumps(SECRETS))
        cluster.kubeconfig_enc = TEST_BOX.encrypt(KUBECONFIG)
        token = TEST_BOX.decrypt(cluster.token_enc)
        key = TEST_BOX.decrypt(cluster.ssh_private_key_enc)
    return cid, {
        "token": token,
        "ssh key": key,
        "ssh key line": key.splitlines()[2],
        "secret config value": S3_SECRET,
        "its JSON-escaped form": json.dumps(S3_SECRET)[1:-1],
        "the master key": TEST_SECRET_KEY,
        "kubeconfig client key": "c2VjcmV0LWNsaWVudC1rZXktZGF0YQ==",
        "kubeconfig token": "kube-bearer-token-0123456789",
    }


def _leaks(text: str, secrets: dict[str, str]) -> list[str]:
    found = [name for name, value in secrets.items() if value in text]
    for name, value in secrets.items():
        lines = [line for line in value.splitlines() if len(line) >= 8] if "\n" in value else []
        found += [f"a line of the {name}" for line in lines if line in text]
    return found


def test_rows_are_stored_redacted(db: Database, redacting_db: Database) -> None:
    cid, secrets = _secret_cluster(db)
    with db.read_session() as s:
        node_id = s.scalars(select(Node.id)).one()
    for what, secret in secrets.items():
        message = f"failed ({what}): <{secret}> and again {secret}!"
        with redacting_db.transaction() as s:
            job = Job(
                cluster_id=cid,
                operation="install",
                status="failed",
                reason=message,
                warnings=[message, {"nested": [message]}],
            )
            s.add(job)
            s.flush()
            s.add(JobLogLine(job_id=job.id, seq=1, text=message))
            s.add(AuditEntry(actor="t", action="x", job_id=job.id, detail={"why": [message]}))
            s.add(
                AuditEntry(
                    actor="t", action="y", cluster_id=cid, detail={message: "k"}, result=message
                )
            )
            node = s.get(Node, node_id)
            assert node is not None
            node.status_reason = message  # an existing row changed (dirty), not only new rows
            job_id = job.id
        with db.read_session() as s:
            job = s.get(Job, job_id)
            assert job is not None and job.reason is not None
            stored = [
                job.reason,
                json.dumps(job.warnings),
                s.scalars(select(JobLogLine.text).where(JobLogLine.job_id == job_id)).one(),
                s.scalars(select(Node.status_reason)).one() or "",
                *(
                    json.dumps([a.detail, a.result])
                    for a in s.scalars(select(AuditEntry).order_by(AuditEntry.id.desc())).all()[:2]
                ),
            ]
        for text in stored:
            assert not _leaks(text, secrets), (what, text)
            assert MASK in text, (what, text)
        assert job.reason.startswith(f"failed ({what}): <********>")


def test_new_cluster_rows_in_one_flush_are_redacted(redacting_db: Database) -> None:
    """A cluster and its nodes created in the same flush: the nodes' cluster is not stored yet."""
    token = "a-brand-new-cluster-token-value"
    with redacting_db.transaction() as s:
        cluster = Cluster(
            name="fresh",
            ssh_private_key_enc=TEST_BOX.encrypt("not-a-real-key-material"),
            token_enc=TEST_BOX.encrypt(token),
        )
        cluster.nodes = [
            Node(hostname="m1", ip="127.0.40.9", role="server", status_reason=f"saw {token}")
        ]
        s.add(cluster)
    with redacting_db.read_session() as s:
        assert s.scalars(select(Node.status_reason)).one() == f"saw {MASK}"


def test_force_unlock_reason_is_redacted(client: TestClient, db: Database) -> None:
    cid, secrets = _secret_cluster(db)
    job_id = lock_cluster(db, cid)
    reason = f"leaked {secrets['token']} and {TEST_SECRET_KEY}"
    r = client.post(
        f"/api/admin/clusters/{cid}/force-unlock", json={"job_id": job_id, "reason": reason}
    )
    assert r.status_code == 200, r.text
    with db.read_session() as s:
        job = s.get(Job, job_id)
        assert job is not None and job.reason is not None
        assert secrets["token"] not in job.reason and TEST_SECRET_KEY not in job.reason
        assert f"leaked {MASK} and {MASK}" in job.reason
        # the stop asked of the job's worker carries the reason too
        assert job.stop_reason == f"force-unlocked by local: leaked {MASK} and {MASK}"
        for entry in s.scalars(select(AuditEntry)).all():
            assert not _leaks(json.dumps(entry.detail), secrets)
    assert secrets["token"] not in client.get(f"/api/jobs/{job_id}").text


def test_redactor_forms() -> None:
    key = "-----BEGIN KEY-----\nAAAAB3NzaC1yc2EAAAADAQABAAABAQ\nshort\n-----END KEY-----\n"
    r = Redactor(['it\'s a "secret"', key, "abc", ""])
    assert r.text('x it\'s a "secret" y') == f"x {MASK} y"
    assert r.text(json.dumps({"v": 'it\'s a "secret"'})) == json.dumps({"v": MASK})
    assert MASK in r.text(repr('it\'s a "secret"'))
    assert r.text("line AAAAB3NzaC1yc2EAAAADAQABAAABAQ end") == f"line {MASK} end"
    assert r.text(json.dumps(key)) == f'"{MASK}"'
    assert r.text("abc short") == "abc short"  # too short to redact
    assert r.value({'k it\'s a "secret"': [1, None, 'it\'s a "secret"']}) == {
        f"k {MASK}": [1, None, MASK]
    }


def test_log_records_are_redacted(caplog: pytest.LogCaptureFixture) -> None:
    registry = SecretRegistry(limit=2)
    registry.pin(["master-key-material"])
    registry.remember('{"etcd-s3-secret-key": "s3-value-123"}')
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "got %s / %s", None, None)
    record.args = ("s3-value-123", "master-key-material")
    RedactingFilter(registry).filter(record)
    assert record.getMessage() == f"got {MASK} / {MASK}"
    for value in ("first-evicted", "second-value", "third-value"):  # bounded: oldest go first
        registry.remember(value)
    masked = registry.redactor().text("first-evicted third-value master-key-material")
    assert masked == f"first-evicted {MASK} {MASK}"

    previous = logging.getLogRecordFactory()
    try:
        install_log_redaction()
        install_log_redaction()  # idempotent
        token = TEST_BOX.decrypt(TEST_BOX.encrypt("decrypted-in-this-process"))
        log = logging.getLogger("rke2_manager.test")
        with caplog.at_level(logging.INFO):
            log.info("token %s key %s", token, TEST_SECRET_KEY)
            try:
                raise RuntimeError(f"boom {token}")
            except RuntimeError:
                log.exception("failed")
        text = caplog.text
        assert token not in text and TEST_SECRET_KEY not in text, text
        assert f"token {MASK} key {MASK}" in text and f"boom {MASK}" in text
    finally:
        logging.setLogRecordFactory(previous)


# --- the data directory ---------------------------------------------------------------------------
def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _loose_data_dir(tmp_path: Path) -> Settings:
    data = tmp_path / "loose"
    data.mkdir(mode=0o755, parents=True)
    data.chmod(0o755)
    (data / "secret.key").write_text("old-key-material-123")
    (data / "secret.key").chmod(0o644)
    (data / "rke2-manager.db").touch(mode=0o644)
    (data / "rke2-manager.db").chmod(0o644)
    return Settings(data_dir=data, allowed_hosts=["*"], _env_file=None)  # type: ignore[call-arg]


def test_create_app_makes_the_data_dir_private(tmp_path: Path) -> None:
    from rke2_manager.api.app import create_app

    fresh = Settings(data_dir=tmp_path / "fresh", _env_file=None)  # type: ignore[call-arg]
    app = create_app(fresh, start_worker=False)
    assert app.state.ctx.db.box is app.state.ctx.box  # redaction attached
    data = fresh.data_dir
    assert _mode(data) == 0o700
    assert _mode(data / "secret.key") == 0o600 and _mode(data / "rke2-manager.db") == 0o600
    with TestClient(app, base_url="http://localhost", client=("127.0.0.1", 5000)) as c:
        assert c.get("/healthz").status_code == 200
    for name in os.listdir(data):
        assert _mode(data / name) == 0o600, name

    loose = _loose_data_dir(tmp_path)
    elsewhere = tmp_path / "shared.txt"
    elsewhere.write_text("not ours to change")
    elsewhere.chmod(0o644)
    (loose.data_dir / "link").symlink_to(elsewhere)
    create_app(loose, run_migrations=False, start_worker=False).state.ctx.db.dispose()
    assert _mode(loose.data_dir) == 0o700
    assert _mode(loose.data_dir / "secret.key") == 0o600
    assert _mode(loose.data_dir / "rke2-manager.db") == 0o600
    assert _mode(elsewhere) == 0o644  # a symlink's target is not followed


def test_serve_makes_the_data_dir_private(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import uvicorn
    from typer.testing import CliRunner

    from rke2_manager import cli
    from rke2_manager.config import get_settings

    loose = _loose_data_dir(tmp_path)
    started: list[Any] = []
    monkeypatch.setenv("RKE2M_DATA_DIR", str(loose.data_dir))
    monkeypatch.setattr(uvicorn, "run", lambda app, **_: started.append(app))
    get_settings.cache_clear()
    umask = os.umask(0o022)
    previous = logging.getLogRecordFactory()
    try:
        result = CliRunner().invoke(cli.app, ["serve", "--no-worker"])
        assert result.exit_code == 0, result.output
        assert os.umask(0o022) == 0o077
    finally:
        os.umask(umask)
        logging.setLogRecordFactory(previous)
        get_settings.cache_clear()
    assert len(started) == 1 and started[0].state.ctx.db.box is not None
    assert _mode(loose.data_dir) == 0o700
    assert _mode(loose.data_dir / "secret.key") == 0o600
    assert _mode(loose.data_dir / "rke2-manager.db") == 0o600


def test_worker_and_migrate_make_the_data_dir_private(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    from typer.testing import CliRunner

    from rke2_manager import cli
    from rke2_manager.config import get_settings
    from rke2_manager.jobs.runner import worker

    started: list[Any] = []

    class FakeWorker:
        id = "fake"

        def __init__(self, ctx: Any) -> None:
            started.append(ctx)

        def start(self) -> None: ...

        def stop(self) -> None: ...

    class Done(threading.Event):
        def wait(self, timeout: float | None = None) -> bool:
            return True

    monkeypatch.setattr(worker, "Worker", FakeWorker)
    monkeypatch.setattr(cli.threading, "Event", Done)
    previous = logging.getLogRecordFactory()
    umask = os.umask(0o022)
    try:
        for command in (["migrate"], ["worker"]):
            loose = _loose_data_dir(tmp_path / command[0])
            monkeypatch.setenv("RKE2M_DATA_DIR", str(loose.data_dir))
            get_settings.cache_clear()
            os.umask(0o022)
            result = CliRunner().invoke(cli.app, command)
            assert result.exit_code == 0, (command, result.output)
            assert os.umask(0o022) == 0o077, command
            assert _mode(loose.data_dir) == 0o700, command
            names = {"secret.key", "rke2-manager.db", *os.listdir(loose.data_dir)}
            for name in names:  # with the -wal and -shm files SQLite made
                assert _mode(loose.data_dir / name) == 0o600, (command, name)
    finally:
        os.umask(umask)
        logging.setLogRecordFactory(previous)
        get_settings.cache_clear()
    assert len(started) == 1 and started[0].db.box is started[0].box  # the worker redacts
    started[0].db.dispose()


def test_redactor_masks_deep_values_before_cutting_them() -> None:
    secret = "deep-secret-value-0123456789"
    value: Any = ["x" * 4032 + secret]  # the 4096-character cut falls inside the secret
    for _ in range(40):
        value = {"a": value}
    masked = json.dumps(Redactor([secret]).value(value))
    assert "deep-secret" not in masked and "0123456789" not in masked


def test_secrets_under_another_key_never_break_a_read(client: TestClient, db: Database) -> None:
    from rke2_manager.vault import SecretBox

    cid = make_cluster(db)
    foreign = SecretBox("another-service-key").encrypt(json.dumps(SECRETS))
    with db.transaction() as s:
        cluster = s.get(Cluster, cid)
        assert cluster is not None
        cluster.rke2_config_secrets_enc = foreign
    r = client.get(f"/api/clusters/{cid}")
    assert r.status_code == 200 and r.json()["rke2"]["secret_config_keys"] == []
    # plain keys can still be edited: the secrets stay as they are, unread
    r = client.patch(f"/api/clusters/{cid}", json={"rke2": {"config": {"cni": "canal"}}})
    assert r.status_code == 200, r.text
    # changing a secret key needs the stored ones: 409, nothing changed
    r = client.patch(f"/api/clusters/{cid}", json={"rke2": {"config": {"db-password": "x" * 9}}})
    assert r.status_code == 409, r.text
    assert "cannot be decrypted with this RKE2M_SECRET_KEY" in r.json()["detail"]
    with db.read_session() as s:
        cluster = s.get(Cluster, cid)
        assert cluster is not None
        assert (cluster.rke2_config, cluster.rke2_config_secrets_enc) == ({"cni": "canal"}, foreign)
