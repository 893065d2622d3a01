"""Issue 7's input attacks: IPv6 zone ids, rke2.config rules and nesting, artifact_dir escapes.

Every bad input is a 422 with a clear message and changes nothing; nothing stored can make a
later read fail (legacy rows written straight into the database still read 200).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, text

from rke2_manager.clusters.rke2config import check_config
from rke2_manager.config import Settings
from rke2_manager.db import Database
from rke2_manager.models import Cluster
from tests.factories import make_cluster
from tests.test_bad_input import snapshot

NODES = [{"hostname": "m1", "ip": "127.0.30.1", "role": "server"}]


def _create(client: TestClient, **extra: Any) -> Any:
    return client.post("/api/clusters", json={"name": "prod", "nodes": NODES, **extra})


def _nested(depth: int) -> Any:
    value: Any = "x"
    for _ in range(depth):
        value = {"a": value}
    return value


@pytest.mark.parametrize(
    "ip", ["::1%{{lookup('pipe','id')}}", "fe80::1%eth0", "fe80::1%25eth0", "::1%1"]
)
def test_ipv6_zone_id_is_422(client: TestClient, db: Database, ip: str) -> None:
    cid = make_cluster(db)
    before = snapshot(db)
    r = client.post(
        f"/api/clusters/{cid}/scale/add",
        json={"nodes": [{"hostname": "w9", "ip": ip, "role": "agent"}]},
    )
    assert r.status_code == 422, r.text
    assert "is not a valid IP address (zone ids are not allowed)" in r.json()["detail"]
    assert snapshot(db) == before
    r = client.post("/api/clusters", json={"name": "z", "nodes": [{**NODES[0], "ip": ip}]})
    assert r.status_code == 422 and "zone ids are not allowed" in r.json()["detail"]
    r = client.patch(f"/api/clusters/{cid}", json={"registration_address": ip})
    assert r.status_code == 422, r.text
    assert snapshot(db) == before


def test_plain_ipv6_still_accepted(client: TestClient) -> None:
    r = client.post("/api/clusters", json={"name": "v6", "nodes": [{**NODES[0], "ip": "::1"}]})
    assert r.status_code == 201, r.text
    assert r.json()["nodes"][0]["ip"] == "::1"


CONFIG_CASES: list[tuple[str, dict[str, Any], str]] = [
    ("uppercase key", {"CNI": "canal"}, 'rke2.config key "CNI" is not an RKE2 option name'),
    ("underscore key", {"write_kubeconfig": "x"}, "is not an RKE2 option name"),
    ("long key", {"a" * 64: 1}, "at most 63 characters"),
    ("empty key", {"": 1}, 'rke2.config key "" is not an RKE2 option name'),
    ("dict value", {"cni": {"name": "canal"}}, "value of 'cni' is an object"),
    ("list of dicts", {"tls-san": [{"a": 1}]}, "value of 'tls-san' has an item that is not a"),
    ("list of lists", {"tls-san": [["a"]]}, "(lists are flat)"),
    ("null in list", {"tls-san": ["a", None]}, "value of 'tls-san' has an item"),
    ("long list", {"tls-san": ["a"] * 101}, "is a list of more than 100 items"),
    ("overlong string", {"cni": "x" * 4097}, "value of 'cni' is longer than 4096 characters"),
    ("overlong item", {"tls-san": ["x" * 4097]}, "has an item that is longer than 4096"),
    ("NUL", {"cni": "can\x00al"}, "value of 'cni' contains a NUL character"),
    ("newline in key", {"cni\n": "canal"}, 'rke2.config key "cni\\n" is not an RKE2 option name'),
    ("huge int", {"x": 2**70}, "value of 'x' is an integer out of 64-bit range"),
    ("too many keys", {f"k{i}": i for i in range(101)}, "rke2.config has more than 100 keys"),
    ("reserved", {"server": "https://evil:9345"}, "rke2.config may not set server"),
    ("deep nesting", {"cni": _nested(20)}, "value of 'cni' is an object"),
]


@pytest.mark.parametrize(
    ("config", "message"), [c[1:] for c in CONFIG_CASES], ids=[c[0] for c in CONFIG_CASES]
)
def test_config_rules(client: TestClient, db: Database, config: Any, message: str) -> None:
    r = _create(client, rke2={"config": config})
    assert r.status_code == 422, r.text
    assert message in r.json()["detail"], r.json()["detail"]
    assert r.headers["content-type"] == "application/problem+json"
    assert snapshot(db) == (0, 0, 0, 0)
    cid = make_cluster(db)
    before = snapshot(db)
    r = client.patch(f"/api/clusters/{cid}", json={"rke2": {"config": config}})
    assert r.status_code == 422 and message in r.json()["detail"], r.text
    assert snapshot(db) == before
    with db.read_session() as s:
        assert s.scalars(select(Cluster.rke2_config)).one() == {}


def test_config_messages_never_echo_a_value() -> None:
    with pytest.raises(ValueError) as err:
        check_config({"etcd-s3-secret-key": "s3cr3t-value" * 400})
    assert "s3cr3t" not in str(err.value) and "etcd-s3-secret-key" in str(err.value)


def test_nan_is_refused() -> None:
    with pytest.raises(ValueError, match="is not a finite number"):
        check_config({"x": float("nan")})


def test_good_config_is_stored_as_given(client: TestClient, db: Database) -> None:
    config = {
        "cni": "canal",
        "tls-san": ["a.example", "b.example"],
        "disable": [],
        "max-pods": 250,
        "ratio": 0.5,
        "secrets-encryption": True,
        "node-label": None,
    }
    r = _create(client, rke2={"config": config})
    assert r.status_code == 201, r.text
    expected = {k: v for k, v in config.items() if v is not None}
    assert r.json()["rke2"]["config"] == expected
    with db.read_session() as s:
        assert s.scalars(select(Cluster.rke2_config)).one() == expected


def test_deep_nesting_is_4xx_and_the_list_still_reads(client: TestClient, db: Database) -> None:
    r = _create(client, rke2={"config": {"cni": _nested(300)}})
    assert 400 <= r.status_code < 500, r.text
    assert snapshot(db) == (0, 0, 0, 0)
    assert _create(client).status_code == 201
    r = client.get("/api/clusters")
    assert r.status_code == 200 and [c["name"] for c in r.json()] == ["prod"]


def _write_raw_config(db: Database, cluster_id: int, raw: str) -> None:
    """Store ``raw`` as the cluster's rke2_config text, bypassing every check (a legacy row)."""
    with db.engine.begin() as conn:
        conn.execute(
            text("UPDATE clusters SET rke2_config = :raw WHERE id = :id"),
            {"raw": raw, "id": cluster_id},
        )


LEGACY_ROWS = {
    "nested 300": json.dumps({"cni": _nested(300)}),
    "nested 5000": '{"cni": ' + "[" * 5000 + "]" * 5000 + "}",
    "huge string": json.dumps({"cni": "x" * 200_000}),
    "odd keys": json.dumps({"Bad Key!": [{"a": 1}], "ok": "yes", "etcd-s3-secret-key": "s3"}),
    "not an object": json.dumps([1, 2, 3]),
    "string": json.dumps("hello"),
    "many keys": json.dumps({f"k{i}": i for i in range(150)}),
}


@pytest.mark.parametrize("raw", LEGACY_ROWS.values(), ids=LEGACY_ROWS.keys())
def test_legacy_rows_still_read(client: TestClient, db: Database, raw: str) -> None:
    cid = make_cluster(db)
    _write_raw_config(db, cid, raw)
    listed = client.get("/api/clusters")
    assert listed.status_code == 200, listed.text
    shown = client.get(f"/api/clusters/{cid}")
    assert shown.status_code == 200, shown.text
    rke2 = shown.json()["rke2"]
    assert len(shown.text) < 30_000  # rendered truncated, not echoed whole
    for value in rke2["config"].values():
        assert isinstance(value, str | int | float | bool | list)
    assert "s3" not in json.dumps(rke2["config"])  # a clear legacy secret is still hidden
    assert client.get(f"/api/clusters/{cid}/nodes").status_code == 200


def test_legacy_odd_row_renders_what_fits(client: TestClient, db: Database) -> None:
    cid = make_cluster(db)
    _write_raw_config(db, cid, LEGACY_ROWS["odd keys"])
    rke2 = client.get(f"/api/clusters/{cid}").json()["rke2"]
    assert rke2["config"] == {'"Bad Key!"': '[{"a": 1}]', "ok": "yes"}
    assert rke2["secret_config_keys"] == ["etcd-s3-secret-key"]
    # an edit of rke2 moves the clear legacy secret into the encrypted column
    r = client.patch(f"/api/clusters/{cid}", json={"rke2": {"config": {"cni": "canal"}}})
    assert r.status_code == 200, r.text
    assert r.json()["rke2"]["config"] == {"cni": "canal"}
    assert r.json()["rke2"]["secret_config_keys"] == ["etcd-s3-secret-key"]
    with db.read_session() as s:
        stored = s.scalars(select(Cluster)).one()
        assert stored.rke2_config == {"cni": "canal"}
        assert stored.rke2_config_secrets_enc is not None


# --- artifact_dir ---------------------------------------------------------------------------------
def _artifact_cases(root: Path, outside: Path) -> list[tuple[str, str]]:
    (root / "v1").mkdir(parents=True)
    outside.mkdir()
    (root / "escape").symlink_to(outside)
    return [
        ("/srv/rke2-artifacts", "is not under the artifact root"),
        (str(root), "is not under the artifact root"),
        (f"{root}/../x", "is not a normalised path"),
        (f"{root}/./v1", "is not a normalised path"),
        (f"{root}//v1", "must be an absolute path of letters"),
        (f"{root}/v1/", "must be an absolute path of letters"),
        (f"{root}/v1;id", "must be an absolute path of letters"),
        (f"{root}/{{{{x}}}}", "must be an absolute path of letters"),
        (f"{root}/escape", "(symlinks resolved)"),
        ("relative/dir", "rke2.artifact_dir"),
    ]


def test_artifact_dir_outside_the_root_is_422(
    client: TestClient, db: Database, settings: Settings, tmp_path: Path
) -> None:
    root = settings.artifact_root_dir
    cid = make_cluster(db)
    before = snapshot(db)
    for value, message in _artifact_cases(root, tmp_path / "outside"):
        r = _create(client, rke2={"artifact_dir": value})
        assert r.status_code == 422, (value, r.text)
        assert message in r.json()["detail"], (value, r.json()["detail"])
        r = client.patch(f"/api/clusters/{cid}", json={"rke2": {"artifact_dir": value}})
        assert r.status_code == 422, (value, r.text)
        assert message in r.json()["detail"], (value, r.json()["detail"])
        assert snapshot(db) == before
    with db.read_session() as s:
        assert s.scalars(select(Cluster.rke2_artifact_dir)).one() is None


def test_artifact_dir_under_the_root_is_accepted(
    client: TestClient, db: Database, settings: Settings
) -> None:
    root = settings.artifact_root_dir
    (root / "v1").mkdir(parents=True)
    r = _create(client, rke2={"artifact_dir": f"{root}/v1"})
    assert r.status_code == 201, r.text
    assert r.json()["rke2"]["artifact_dir"] == f"{root}/v1"
    cid = r.json()["id"]
    # not created yet is fine (checked again, existing, when a job starts)
    r = client.patch(f"/api/clusters/{cid}", json={"rke2": {"artifact_dir": f"{root}/v2"}})
    assert r.status_code == 200, r.text
    with db.read_session() as s:
        assert s.scalars(select(Cluster.rke2_artifact_dir)).one() == f"{root}/v2"


def test_bounded_free_text(client: TestClient, db: Database) -> None:
    r = _create(client, ssh={"private_key": "x" * 20_000})
    assert r.status_code == 422 and "ssh.private_key" in r.json()["detail"], r.text
    r = _create(client, rke2={"version": "v1.1." + "1" * 100 + "+rke2r1"})
    assert r.status_code == 422 and "rke2.version" in r.json()["detail"], r.text
    assert snapshot(db) == (0, 0, 0, 0)
