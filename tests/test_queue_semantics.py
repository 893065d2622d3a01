"""SPEC §4.3 queue semantics: a refusal that rests on nodes a job ahead changes is a warning.

The first tests check queue time only (no worker: a fake holder keeps the cluster busy); the
last ones run "install, then add w2" and "add m3, then remove m2" with the real worker, through
playbooks that wait for the test's signal, so the queued request always meets the first job
mid-run.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from rke2_manager.config import Settings
from rke2_manager.db import Database
from rke2_manager.models import Job, Node
from tests.factories import PLAY_HEADER, lock_cluster, make_cluster
from tests.test_worker import lock_state, nodes, wait_job

QUORUM = "Removing 1 server(s) would break etcd quorum."
CONFIRM = "Removing control-plane nodes requires explicit confirmation."
LAST = "Cannot remove all control-plane nodes. At least 1 required."
EVEN_2 = (
    "After this removal the cluster has 2 etcd members; an even number tolerates no more "
    "failures than one fewer. Prefer an odd number of servers."
)
W2 = {"nodes": [{"hostname": "w2", "ip": "127.0.41.12", "role": "agent"}]}
M2 = {"nodes": [{"hostname": "m2"}]}
M3 = {"nodes": [{"hostname": "m3", "ip": "127.0.41.3", "role": "server"}]}


def g1(status: str) -> str:
    return f"Initial master 'm1' is not active (status: {status}). Cannot add nodes."


def g1_note(status: str, job: int) -> str:
    return (
        f'G1 refuses this now ("{g1(status)}"), but job {job} ahead of this one installs '
        "'m1': G1 is checked again when this job starts."
    )


def g2_note(job: int) -> str:
    return (
        f'G2 refuses this now ("{QUORUM}"), but job {job} ahead of this one adds '
        "'m3': G2 is checked again when this job starts."
    )


def job_rows(db: Database, cid: int) -> list[tuple[int, str, str, str | None]]:
    with db.read_session() as s:
        rows = s.scalars(select(Job).where(Job.cluster_id == cid).order_by(Job.id)).all()
        return [(j.id, j.operation, j.status, j.reason) for j in rows]


def job_warnings(db: Database, job_id: int) -> list[Any]:
    with db.read_session() as s:
        job = s.get(Job, job_id)
        assert job is not None
        return list(job.warnings)


def hold_adding_m3(db: Database, cid: int) -> int:
    """A running scale_add_masters job (of an absent worker) that is installing m3."""
    holder = lock_cluster(db, cid, "scale_add_masters")
    with db.transaction() as s:
        m3 = Node(cluster_id=cid, hostname="m3", ip="127.0.41.3", role="server")
        m3.status = "INSTALLING"
        s.add(m3)
        s.flush()
        job = s.get(Job, holder)
        assert job is not None
        job.targets = [{"id": m3.id, "hostname": "m3", "ip": m3.ip, "role": "server"}]
    return holder


def two_servers(db: Database, name: str = "prod", net: str = "127.0.41") -> int:
    """m1 (initial master) and m2, both ACTIVE: removing either alone breaks quorum."""
    servers = [("m1", f"{net}.1", "server", "ACTIVE"), ("m2", f"{net}.2", "server", "ACTIVE")]
    return make_cluster(db, name=name, nodes=servers)


# --- queue time ---------------------------------------------------------------------------------
def test_add_queued_behind_a_queued_install_is_accepted_with_a_warning(
    client: TestClient, db: Database
) -> None:
    cid = make_cluster(db, nodes=[("m1", "127.0.41.1", "server", "PENDING")])
    holder = lock_cluster(db, cid, "scale_remove_workers")
    install = client.post(f"/api/jobs/install/{cid}?on_busy=queue")
    assert install.status_code == 202, install.text
    install_id = install.json()["job_id"]

    r = client.post(f"/api/clusters/{cid}/scale/add?on_busy=queue", json=W2)
    assert r.status_code == 202, r.text
    body = r.json()
    assert (body["status"], body["position"]) == ("queued", 2)
    assert body["warnings"] == [g1_note("PENDING", install_id)]
    assert job_rows(db, cid) == [
        (holder, "scale_remove_workers", "running", None),
        (install_id, "install", "queued", None),
        (body["job_id"], "scale_add_workers", "queued", None),
    ]
    assert job_warnings(db, body["job_id"]) == [g1_note("PENDING", install_id)]
    assert nodes(db, cid) == {"m1": ("PENDING", None)}  # w2 is created only when the job starts


def test_servers_and_agents_queued_behind_the_install_share_one_warning(
    client: TestClient, db: Database
) -> None:
    cid = make_cluster(db, nodes=[("m1", "127.0.41.1", "server", "INSTALLING")])
    holder = lock_cluster(db, cid, "install")
    both = {"nodes": [*M3["nodes"], *W2["nodes"]]}
    r = client.post(f"/api/clusters/{cid}/scale/add?on_busy=queue", json=both)
    assert r.status_code == 202, r.text
    body = r.json()
    assert (body["status"], body["position"], body["sequenced"]) == ("queued", 1, True)
    assert body["warnings"] == [g1_note("INSTALLING", holder)]
    assert job_rows(db, cid) == [
        (holder, "install", "running", None),
        (body["job_id"], "scale_add_masters", "queued", None),
        (body["workers_job_id"], "scale_add_workers", "queued", None),
    ]
    assert job_warnings(db, body["workers_job_id"]) == [g1_note("INSTALLING", holder)]


@pytest.mark.parametrize(
    ("status", "holder_op"), [("PENDING", "scale_remove_workers"), ("FAILED", "scale_add_workers")]
)
def test_g1_without_an_install_ahead_refuses_at_once(
    client: TestClient, db: Database, status: str, holder_op: str
) -> None:
    cid = make_cluster(db, nodes=[("m1", "127.0.41.1", "server", status)])
    holder = lock_cluster(db, cid, holder_op)
    r = client.post(f"/api/clusters/{cid}/scale/add?on_busy=queue", json=W2)
    assert (r.status_code, r.json()["detail"]) == (400, g1(status))
    assert job_rows(db, cid) == [(holder, holder_op, "running", None)]
    assert nodes(db, cid) == {"m1": (status, None)}


def test_idle_cluster_refuses_as_before_even_when_asked_to_queue(
    client: TestClient, db: Database
) -> None:
    cid = make_cluster(db, nodes=[("m1", "127.0.41.1", "server", "INSTALLING")])
    for on_busy in ("reject", "queue"):
        r = client.post(f"/api/clusters/{cid}/scale/add?on_busy={on_busy}", json=W2)
        assert (r.status_code, r.json()["detail"]) == (400, g1("INSTALLING"))
    assert job_rows(db, cid) == []
    assert lock_state(db, cid) == ("idle", None, None)


@pytest.mark.parametrize(
    ("node", "detail"),
    [
        (
            {"hostname": "w1", "ip": "127.0.41.99", "role": "agent"},
            "Node with hostname 'w1' already exists in cluster",
        ),
        (
            {"hostname": "w9", "ip": "127.0.41.11", "role": "agent"},
            "Node with IP '127.0.41.11' already exists in cluster",
        ),
    ],
)
def test_duplicates_refuse_at_once_while_the_install_runs(
    client: TestClient, db: Database, node: dict[str, str], detail: str
) -> None:
    cid = make_cluster(
        db,
        nodes=[
            ("m1", "127.0.41.1", "server", "INSTALLING"),
            ("w1", "127.0.41.11", "agent", "INSTALLING"),
        ],
    )
    holder = lock_cluster(db, cid, "install")
    r = client.post(f"/api/clusters/{cid}/scale/add?on_busy=queue", json={"nodes": [node]})
    assert (r.status_code, r.json()["detail"]) == (400, detail)
    assert job_rows(db, cid) == [(holder, "install", "running", None)]


def test_server_removal_behind_a_server_add(client: TestClient, db: Database) -> None:
    cid = two_servers(db)
    holder = hold_adding_m3(db, cid)
    # without confirmation: refused at once, whatever the add ahead does
    r = client.post(f"/api/clusters/{cid}/scale/remove?on_busy=queue", json=M2)
    assert (r.status_code, r.json()["detail"]) == (400, CONFIRM)
    assert job_rows(db, cid) == [(holder, "scale_add_masters", "running", None)]
    # the same removal with confirmation waits for the add: quorum holds once m3 is ACTIVE
    r = client.post(
        f"/api/clusters/{cid}/scale/remove?on_busy=queue&confirm_master_removal=true", json=M2
    )
    assert r.status_code == 202, r.text
    assert (r.json()["status"], r.json()["position"]) == ("queued", 1)
    assert r.json()["warnings"] == [g2_note(holder), EVEN_2]
    assert job_rows(db, cid) == [
        (holder, "scale_add_masters", "running", None),
        (r.json()["job_id"], "scale_remove_masters", "queued", None),
    ]
    assert nodes(db, cid) == {
        "m1": ("ACTIVE", None),
        "m2": ("ACTIVE", None),
        "m3": ("INSTALLING", None),
    }
    # on an idle cluster the same removal is refused as the seed says
    idle = two_servers(db, "other", "127.0.42")
    r = client.post(
        f"/api/clusters/{idle}/scale/remove?on_busy=queue&confirm_master_removal=true", json=M2
    )
    assert (r.status_code, r.json()["detail"]) == (400, QUORUM)


def test_removing_every_server_refuses_when_no_job_ahead_adds_one(
    client: TestClient, db: Database
) -> None:
    cid = make_cluster(
        db,
        nodes=[("m1", "127.0.41.1", "server", "ACTIVE"), ("w1", "127.0.41.11", "agent", "PENDING")],
    )
    holder = lock_cluster(db, cid, "install")  # installs w1: no server comes
    r = client.post(
        f"/api/clusters/{cid}/scale/remove?on_busy=queue&confirm_master_removal=true",
        json={"nodes": [{"hostname": "m1"}]},
    )
    assert (r.status_code, r.json()["detail"]) == (400, LAST)
    assert job_rows(db, cid) == [(holder, "install", "running", None)]


def test_removing_a_node_a_queued_job_adds_is_not_found(client: TestClient, db: Database) -> None:
    cid = two_servers(db)
    holder = lock_cluster(db, cid, "scale_remove_workers")
    add = client.post(f"/api/clusters/{cid}/scale/add?on_busy=queue", json=M3)
    assert add.status_code == 202, add.text
    r = client.post(
        f"/api/clusters/{cid}/scale/remove?on_busy=queue&confirm_master_removal=true",
        json={"nodes": [{"hostname": "m3"}]},
    )
    assert (r.status_code, r.json()["detail"]) == (404, "Node 'm3' not found in cluster 'prod'")
    assert job_rows(db, cid) == [
        (holder, "scale_remove_workers", "running", None),
        (add.json()["job_id"], "scale_add_masters", "queued", None),
    ]


# --- with the worker ----------------------------------------------------------------------------
GATED = """
    - name: wait for the test's signal
      ansible.builtin.wait_for: {path: "{{ release_file }}", timeout: 60}
    - name: break one host
      ansible.builtin.fail: {msg: "disk full on {{ inventory_hostname }}"}
      when: inventory_hostname == fail_host
    - name: "[rke2m] node ready"
      ansible.builtin.debug: {msg: done}
"""


def gate(playbook_dir: Path, settings: Settings, tmp_path: Path, operation: str, fail: str) -> Path:
    """``operation``'s playbook waits for the returned file, then fails on host ``fail``."""
    (playbook_dir / f"{operation}.yml").write_text(PLAY_HEADER + GATED)
    release = tmp_path / "release"
    settings.ansible_extra_vars = {"release_file": str(release), "fail_host": fail}
    return release


def wait_status(db: Database, cid: int, hostname: str, status: str) -> None:
    deadline = time.monotonic() + 30
    while nodes(db, cid).get(hostname, ("", None))[0] != status:
        assert time.monotonic() < deadline, f"{hostname} never became {status}"
        time.sleep(0.05)


@pytest.mark.parametrize("install_ok", [True, False], ids=["install-succeeds", "install-fails"])
def test_install_then_add_w2(
    worker_client: TestClient,
    db: Database,
    settings: Settings,
    playbook_dir: Path,
    tmp_path: Path,
    install_ok: bool,
) -> None:
    release = gate(playbook_dir, settings, tmp_path, "install", "none" if install_ok else "m1")
    cid = make_cluster(db, nodes=[("m1", "127.0.41.1", "server", "PENDING")])
    install = worker_client.post(f"/api/jobs/install/{cid}").json()["job_id"]
    wait_status(db, cid, "m1", "INSTALLING")

    r = worker_client.post(f"/api/clusters/{cid}/scale/add?on_busy=queue", json=W2)
    assert r.status_code == 202, r.text
    add = r.json()["job_id"]
    assert (r.json()["status"], r.json()["position"]) == ("queued", 1)
    assert r.json()["warnings"] == [g1_note("INSTALLING", install)]
    assert job_rows(db, cid) == [
        (install, "install", "running", None),
        (add, "scale_add_workers", "queued", None),
    ]
    assert nodes(db, cid) == {"m1": ("INSTALLING", None)}

    release.touch()
    first, second = wait_job(worker_client, install), wait_job(worker_client, add)
    if install_ok:
        assert (first["status"], second["status"]) == ("succeeded", "succeeded")
        assert second["started_at"] >= first["finished_at"]
        assert nodes(db, cid) == {"m1": ("ACTIVE", None), "w2": ("ACTIVE", None)}
    else:
        assert (first["status"], second["status"]) == ("failed", "failed")
        assert second["reason"] == g1("FAILED")
        assert [n for n in nodes(db, cid)] == ["m1"]  # nothing was added
        assert nodes(db, cid)["m1"][0] == "FAILED"
    assert job_warnings(db, add)[0] == g1_note("INSTALLING", install)
    assert lock_state(db, cid) == ("idle", None, None)


@pytest.mark.parametrize("add_ok", [True, False], ids=["add-succeeds", "add-fails"])
def test_add_m3_then_remove_m2(
    worker_client: TestClient,
    db: Database,
    settings: Settings,
    playbook_dir: Path,
    tmp_path: Path,
    add_ok: bool,
) -> None:
    release = gate(
        playbook_dir, settings, tmp_path, "scale_add_masters", "none" if add_ok else "m3"
    )
    cid = two_servers(db)
    adding = worker_client.post(f"/api/clusters/{cid}/scale/add", json=M3).json()["job_id"]
    wait_status(db, cid, "m3", "INSTALLING")

    r = worker_client.post(
        f"/api/clusters/{cid}/scale/remove?on_busy=queue&confirm_master_removal=true", json=M2
    )
    assert r.status_code == 202, r.text
    removing = r.json()["job_id"]
    assert (r.json()["status"], r.json()["position"]) == ("queued", 1)
    assert r.json()["warnings"] == [g2_note(adding), EVEN_2]

    release.touch()
    first, second = wait_job(worker_client, adding), wait_job(worker_client, removing)
    if add_ok:
        assert (first["status"], second["status"]) == ("succeeded", "succeeded")
        assert second["started_at"] >= first["finished_at"]
        assert nodes(db, cid) == {"m1": ("ACTIVE", None), "m3": ("ACTIVE", None)}
        # re-checked at start: its warnings are not repeated
        assert second["warnings"] == [g2_note(adding), EVEN_2]
    else:
        assert (first["status"], second["status"]) == ("failed", "failed")
        assert second["reason"] == QUORUM
        current = nodes(db, cid)
        assert (current["m1"], current["m2"]) == (("ACTIVE", None), ("ACTIVE", None))
        assert current["m3"][0] == "FAILED"
    assert lock_state(db, cid) == ("idle", None, None)
