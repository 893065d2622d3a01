"""POST /api/clusters/{id}/upgrade: validation, G5 through the API, the lock, and how a run's
end is recorded (nodes, versions, the cluster's version) — with a local stand-in playbook."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from rke2_manager.config import Settings
from rke2_manager.db import Database
from rke2_manager.models import AuditEntry, Cluster, Job, JobStatus, Node, utcnow
from tests.factories import PLAY_HEADER, make_cluster

V131 = "v1.31.4+rke2r1"
V132 = "v1.32.1+rke2r1"
NODES = [
    ("m1", "127.0.40.1", "server", "ACTIVE"),
    ("m2", "127.0.40.2", "server", "ACTIVE"),
    ("m3", "127.0.40.3", "server", "ACTIVE"),
    ("w1", "127.0.40.11", "agent", "ACTIVE"),
]
GUARDRAIL = "urn:rke2-manager:guardrail"


@pytest.fixture
def artifacts(settings: Settings) -> Path:
    """An artifact directory for the new release, under the artifact root."""
    path = settings.artifact_root_dir / "v1.32.1"
    path.mkdir(parents=True)
    return path


def cluster(db: Database, version: str | None = V131, **statuses: str) -> int:
    """The 3 + 1 cluster, every node recorded on ``version``; ``statuses`` override some."""
    cid = make_cluster(db, nodes=[(h, ip, r, statuses.get(h, s)) for h, ip, r, s in NODES])
    with db.transaction() as s:
        for node in s.scalars(select(Node).where(Node.cluster_id == cid)):
            node.rke2_version = version
    return cid


def upgrade(client: TestClient, cid: int, **body: Any) -> Any:
    return client.post(f"/api/clusters/{cid}/upgrade", json={"version": V132, **body})


def counts(db: Database) -> tuple[int, str, list[tuple[str, str, str | None]]]:
    """Jobs, the lock, and every node's (name, status, version): what a refusal must not change."""
    with db.read_session() as s:
        lock = s.scalars(select(Cluster.operation_status)).first() or ""
        nodes = [(n.hostname, n.status, n.rke2_version) for n in s.scalars(select(Node))]
        return s.scalar(select(func.count(Job.id))) or 0, lock, sorted(nodes)


def test_accepted_upgrade_holds_the_lock_and_records_the_request(
    client: TestClient, db: Database, artifacts: Path
) -> None:
    cid = cluster(db)
    r = upgrade(
        client, cid, artifact_dir=str(artifacts), drain=False, agent_concurrency=2, skip=["w1"]
    )
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["status"] == "running" and body["warnings"] == []
    assert [n["hostname"] for n in body["job"]["nodes"]] == ["m1", "m2", "m3"]
    with db.read_session() as s:
        job = s.get(Job, body["job_id"])
        assert job is not None and job.operation == "upgrade"
        assert job.params == {
            "version": V132,
            "artifact_dir": str(artifacts),
            "drain": False,
            "agent_concurrency": 2,
            "skip": ["w1"],
        }
        c = s.get(Cluster, cid)
        assert c is not None and c.operation_status == "running" and c.current_job_id == job.id
        # nothing is UPGRADING before the run reaches it
        assert {n.status for n in s.scalars(select(Node))} == {"ACTIVE"}
        audit = s.scalars(select(AuditEntry).where(AuditEntry.action == "job.upgrade")).one()
        assert audit.job_id == job.id
    # busy: 409, and queued with on_busy=queue
    r = upgrade(client, cid)
    assert r.status_code == 409 and r.json()["type"] == "urn:rke2-manager:cluster-busy"
    r = client.post(f"/api/clusters/{cid}/upgrade?on_busy=queue", json={"version": V132})
    assert r.status_code == 202 and r.json()["status"] == "queued" and r.json()["position"] == 1


@pytest.mark.parametrize(
    ("version", "message"),
    [
        (
            "v1.30.2+rke2r1",
            "Cannot downgrade RKE2 from v1.31.4+rke2r1 to v1.30.2+rke2r1 (node 'm1'). "
            "Roll back by restoring a snapshot taken before the upgrade.",
        ),
        (
            "v1.33.0+rke2r1",
            "Cannot upgrade RKE2 from v1.31.4+rke2r1 to v1.33.0+rke2r1 (node 'm1'): at most "
            "one minor version at a time. Upgrade to a v1.32 release first.",
        ),
    ],
)
def test_g5_refuses_downgrades_and_minor_skips(
    client: TestClient, db: Database, version: str, message: str
) -> None:
    cid = cluster(db)
    before = counts(db)
    r = upgrade(client, cid, version=version)
    assert r.status_code == 400
    assert r.json()["type"] == GUARDRAIL and r.json()["guardrail"] == "G5"
    assert r.json()["detail"] == message
    assert counts(db) == before


def test_g5_refuses_a_failed_node_unless_skipped(client: TestClient, db: Database) -> None:
    cid = cluster(db, m2="FAILED")
    before = counts(db)
    r = upgrade(client, cid)
    assert r.status_code == 400 and r.json()["type"] == GUARDRAIL
    assert r.json()["detail"] == (
        "Node 'm2' is not active (status: FAILED). Cannot upgrade unless it is named in skip."
    )
    assert counts(db) == before
    r = upgrade(client, cid, skip=["m2"])
    assert r.status_code == 202
    assert [n["hostname"] for n in r.json()["job"]["nodes"]] == ["m1", "m3", "w1"]


def test_same_version_and_unknown_versions_are_warnings(client: TestClient, db: Database) -> None:
    cid = cluster(db, version=V132)
    r = upgrade(client, cid)
    assert r.status_code == 202
    assert r.json()["warnings"] == [
        "Every node to upgrade already runs v1.32.1+rke2r1: the job checks that on the nodes "
        "and changes nothing."
    ]
    other = make_cluster(db, name="fresh", nodes=[("n1", "127.0.41.1", "server", "ACTIVE")])
    r = upgrade(client, other)
    assert r.status_code == 202
    assert r.json()["warnings"] == [
        "The running RKE2 version of 'n1' is not recorded: the job checks G5 on the nodes "
        "themselves before it changes anything."
    ]


@pytest.mark.parametrize(
    ("body", "where"),
    [
        ({"version": "1.32.1"}, "version"),
        ({"version": "v1.32.1+rke2r1; rm -rf /"}, "version"),
        ({"version": "v1.32.1-rc1+rke2r1"}, "version"),
        ({"version": V132, "agent_concurrency": 0}, "agent_concurrency"),
        ({"version": V132, "agent_concurrency": 101}, "agent_concurrency"),
        ({"version": V132, "drain": "sometimes"}, "drain"),
        ({"version": V132, "skip": ["not a host!"]}, "skip"),
        ({"version": V132, "artifact_dir": "relative/dir"}, "artifact_dir"),
        ({"version": V132, "confirm": True}, "confirm"),
        ({}, "version"),
    ],
)
def test_bad_bodies_are_422_and_change_nothing(
    client: TestClient, db: Database, body: dict[str, Any], where: str
) -> None:
    cid = cluster(db)
    before = counts(db)
    r = client.post(f"/api/clusters/{cid}/upgrade", json=body)
    assert r.status_code == 422, r.text
    assert where in r.text
    assert counts(db) == before


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/etc", "artifact_dir '/etc' is not under the artifact root"),
        ("{root}/../x", "artifact_dir '{root}/../x' is not a normalised path"),
        ("{root}/missing", "artifact_dir '{root}/missing' is not a directory"),
        ("{root}/a$(id)", "artifact_dir must be an absolute path of letters, digits"),
    ],
)
def test_artifact_dir_must_be_an_existing_directory_under_the_root(
    client: TestClient, db: Database, settings: Settings, path: str, message: str
) -> None:
    cid = cluster(db)
    root = str(settings.artifact_root_dir)
    before = counts(db)
    r = upgrade(client, cid, artifact_dir=path.format(root=root))
    assert r.status_code == 422
    assert r.json()["detail"].startswith(message.format(root=root)), r.json()
    assert counts(db) == before


def test_unknown_cluster_and_unknown_skipped_node_are_404(client: TestClient, db: Database) -> None:
    cid = cluster(db)
    assert upgrade(client, cid + 100).status_code == 404
    r = upgrade(client, cid, skip=["nope"])
    assert r.status_code == 404
    assert r.json()["detail"] == "Node 'nope' (in skip) not found in cluster 'prod'"


def test_viewer_may_not_upgrade(client: TestClient, db: Database, settings: Settings) -> None:
    from rke2_manager.models import ApiRole
    from rke2_manager.tokens.service import create_token

    cid = cluster(db)
    with db.transaction() as s:
        viewer = create_token(s, "ro", ApiRole.VIEWER, "test")[1]
    r = client.post(
        f"/api/clusters/{cid}/upgrade",
        json={"version": V132},
        headers={"Authorization": f"Bearer {viewer}"},
    )
    assert r.status_code == 403


# The run's end, with a local playbook that reports like upgrade.yml does ----------------------
_FAKE_TASKS = """
    - name: "[rke2m] node upgrading"
      ansible.builtin.debug: {msg: "{{ inventory_hostname }}"}
    - name: "Gate: the node is Ready on {{ rke2m_upgrade_version }}"
      ansible.builtin.fail: {msg: "timed out waiting on {{ inventory_hostname }}"}
      when: inventory_hostname == fail_host | default('')
    - name: "[rke2m] node version"
      ansible.builtin.debug: {msg: "{{ rke2m_upgrade_version }}"}
    - name: "[rke2m] node ready"
      ansible.builtin.debug: {msg: done}
"""
#: Servers one at a time, then agents; the first failure stops the run (as upgrade.yml does).
FAKE_UPGRADE = "".join(
    PLAY_HEADER.replace("rke2_targets", group).replace(
        "  tasks:", "  serial: 1\n  any_errors_fatal: true\n  tasks:"
    )
    + _FAKE_TASKS
    for group in ("rke2_servers:&rke2_targets", "rke2_agents:&rke2_targets")
)


def wait(db: Database, job_id: int) -> Job:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with db.read_session() as s:
            job = s.get(Job, job_id)
            assert job is not None
            if JobStatus(job.status).is_final:
                s.expunge(job)
                return job
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} did not end")


def nodes_of(db: Database) -> dict[str, tuple[str, str | None, str | None]]:
    with db.read_session() as s:
        return {
            n.hostname: (n.status, n.status_reason, n.rke2_version) for n in s.scalars(select(Node))
        }


def cluster_version(db: Database) -> tuple[str | None, str | None]:
    with db.read_session() as s:
        c = s.scalars(select(Cluster)).one()
        return c.rke2_version, c.rke2_artifact_dir


def test_a_run_records_versions_and_the_cluster_version_only_when_all_run_it(
    worker_client: TestClient,
    db: Database,
    settings: Settings,
    playbook_dir: Path,
    artifacts: Path,
) -> None:
    (playbook_dir / "upgrade.yml").write_text(FAKE_UPGRADE)
    settings.ansible_extra_vars = {"fail_host": "m2"}
    cid = cluster(db)
    with db.transaction() as s:
        c = s.get(Cluster, cid)
        assert c is not None
        c.rke2_version = V131

    # m2 fails its gate: the rollout stops there, m3 and w1 stay as they were
    r = upgrade(worker_client, cid, artifact_dir=str(artifacts))
    assert r.status_code == 202
    job = wait(db, r.json()["job_id"])
    assert job.status == "failed"
    reason = "task 'Gate: the node is Ready on v1.32.1+rke2r1' failed: timed out waiting on m2"
    assert job.reason == f"m2: {reason}"
    assert nodes_of(db) == {
        "m1": ("ACTIVE", None, V132),
        "m2": ("FAILED", reason, V131),
        "m3": ("ACTIVE", None, V131),
        "w1": ("ACTIVE", None, V131),
    }
    assert cluster_version(db) == (V131, None)

    # the node is fixed; running the same upgrade again retries m2 (G5 lets it through)
    settings.ansible_extra_vars = {}
    r = upgrade(worker_client, cid, artifact_dir=str(artifacts))
    assert r.status_code == 202, r.text
    assert r.json()["warnings"] == [
        "Node 'm2' is FAILED where the last upgrade to v1.32.1+rke2r1 stopped: it is upgraded "
        "again."
    ]
    job = wait(db, r.json()["job_id"])
    assert job.status == "succeeded", job.reason
    assert nodes_of(db) == {h: ("ACTIVE", None, V132) for h in ("m1", "m2", "m3", "w1")}
    assert cluster_version(db) == (V132, str(artifacts))


def test_a_skipped_node_keeps_the_clusters_version(
    worker_client: TestClient, db: Database, playbook_dir: Path
) -> None:
    (playbook_dir / "upgrade.yml").write_text(FAKE_UPGRADE)
    cid = cluster(db, w1="FAILED")
    r = upgrade(worker_client, cid, skip=["w1"])
    assert r.status_code == 202
    assert wait(db, r.json()["job_id"]).status == "succeeded"
    nodes = nodes_of(db)
    assert nodes["w1"] == ("FAILED", None, V131) and nodes["m1"] == ("ACTIVE", None, V132)
    assert cluster_version(db) == (None, None)  # not every node runs it


@pytest.mark.parametrize("status", ["failed", "canceled"])
def test_a_retry_needs_the_same_version_right_after_the_failed_upgrade(
    client: TestClient, db: Database, status: str
) -> None:
    cid = cluster(db, m2="FAILED")
    with db.transaction() as s:
        s.add(
            Job(
                cluster_id=cid,
                operation="upgrade",
                status=status,
                targets=[{"id": None, "hostname": "m2", "ip": "127.0.40.2", "role": "server"}],
                params={"version": "v1.32.0+rke2r1"},
                finished_at=utcnow(),
            )
        )
    r = upgrade(client, cid)  # another version: m2 is refused
    assert r.status_code == 400 and "Node 'm2' is not active" in r.json()["detail"]
    r = upgrade(client, cid, version="v1.32.0+rke2r1")
    assert r.status_code == 202
    assert "it is upgraded again" in r.json()["warnings"][0]


def test_no_retry_once_another_job_ran_since(client: TestClient, db: Database) -> None:
    cid = cluster(db, m2="FAILED")
    m2 = {"id": None, "hostname": "m2", "ip": "127.0.40.2", "role": "server"}
    with db.transaction() as s:
        for operation, params in (("upgrade", {"version": V132}), ("install", {})):
            s.add(
                Job(
                    cluster_id=cid,
                    operation=operation,
                    status="failed",
                    targets=[m2],
                    params=params,
                    finished_at=utcnow(),
                )
            )
    r = upgrade(client, cid)
    assert r.status_code == 400
    assert r.json()["detail"] == (
        "Node 'm2' is not active (status: FAILED). Cannot upgrade unless it is named in skip."
    )


def test_an_install_records_the_version_each_node_reports(
    worker_client: TestClient, db: Database, playbook_dir: Path
) -> None:
    """Any job whose nodes report "[rke2m] node version" records it; a malformed one is not."""
    (playbook_dir / "install.yml").write_text(
        PLAY_HEADER
        + """
    - name: "[rke2m] node version"
      ansible.builtin.debug:
        msg: "{{ 'v1.31.4+rke2r1' if inventory_hostname != 'w1' else 'rke2 version ?' }}"
    - name: "[rke2m] node ready"
      ansible.builtin.debug: {msg: done}
"""
    )
    cid = cluster(db, version=None)
    r = worker_client.post(f"/api/jobs/install/{cid}")
    assert r.status_code == 202
    assert wait(db, r.json()["job_id"]).status == "succeeded"
    assert nodes_of(db) == {
        "m1": ("ACTIVE", None, V131),
        "m2": ("ACTIVE", None, V131),
        "m3": ("ACTIVE", None, V131),
        "w1": ("ACTIVE", None, None),
    }
