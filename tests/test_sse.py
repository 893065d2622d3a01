"""``GET /api/jobs/{id}/events``: real jobs (ansible-runner, local playbooks) streamed to their
end, resumed from an id on another API process of the same database, 404, auth, bounds."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from rke2_manager.api.app import create_app
from rke2_manager.config import Settings
from rke2_manager.db import Database
from rke2_manager.execution.events import task_result
from rke2_manager.jobs import sse
from rke2_manager.models import ApiRole, Cluster, Job, JobEvent, JobLogLine
from rke2_manager.tokens.service import create_token, revoke_token
from rke2_manager.vault import SecretBox
from tests.conftest import LOOPBACK
from tests.factories import PLAY_HEADER, FakeProber, write_playbooks
from tests.sse_support import Frame, frames
from tests.test_worker import real_cluster, wait_job

REMOTE = ("10.9.8.7", 40000)  # never contacted: the client address the app sees


def stream(client: TestClient, job_id: int, **headers: str) -> list[Frame]:
    with client.stream("GET", f"/api/jobs/{job_id}/events", headers=headers) as r:
        assert r.status_code == 200, r.read()
        assert r.headers["content-type"].startswith("text/event-stream")
        assert r.headers["cache-control"] == "no-cache"
        return list(frames(r.iter_lines()))


def durable(found: list[Frame]) -> list[Frame]:
    return [f for f in found if f.id is not None]


def run_install(client: TestClient, db: Database) -> int:
    cid = real_cluster(db, client)
    job_id = int(client.post(f"/api/jobs/install/{cid}").json()["job_id"])
    return job_id


def test_a_failing_install_streamed_to_its_end(
    worker_client: TestClient, db: Database, playbook_dir: Path
) -> None:
    write_playbooks(playbook_dir, mode="fail_one")
    job_id = run_install(worker_client, db)
    found = stream(worker_client, job_id)  # from the start, while the job runs

    assert found[0].event == "job" and found[0].id is None
    assert found[0].data["id"] == job_id and found[0].data["operation"] == "install"
    ids = [f.id for f in durable(found)]
    assert ids == list(range(1, len(ids) + 1))  # one gapless sequence, in order
    end = found[-1]
    assert end.event == "end" and end.data == {
        "id": ids[-1],
        "status": "failed",
        "reason": "w1: task 'break one host' failed: disk full on w1",
        "finished_at": end.data["finished_at"],
    }
    with db.read_session() as s:
        job = s.get(Job, job_id)
        assert job is not None and job.event_seq == ids[-2] == ids[-1] - 1
        assert end.data["finished_at"] == job.finished_at.isoformat()  # type: ignore[union-attr]

    ends = {
        (f.data["host"], f.data["task"]): (f.data["result"], f.data.get("reason"))
        for f in found
        if f.event == "task_end"
    }
    assert ends == {
        ("m1", "work"): ("changed", None),
        ("w1", "work"): ("changed", None),
        ("w2", "work"): ("changed", None),
        ("m1", "break one host"): ("skipped", None),
        ("w1", "break one host"): ("failed", "task 'break one host' failed: disk full on w1"),
        ("w2", "break one host"): ("skipped", None),
        ("m1", "[rke2m] node ready"): ("ok", None),
        ("w2", "[rke2m] node ready"): ("ok", None),
    }
    for f in found:  # every task's end on a host follows its start there
        if f.event == "task_end":
            start = next(
                g
                for g in found
                if g.event == "task_start"
                and (g.data["host"], g.data["task"])
                == (
                    f.data["host"],
                    f.data["task"],
                )
            )
            assert start.id is not None and f.id is not None and start.id < f.id

    node_events = [(f.data["hostname"], f.data["status"]) for f in found if f.event == "node"]
    assert node_events[:3] == [("m1", "INSTALLING"), ("w1", "INSTALLING"), ("w2", "INSTALLING")]
    assert sorted(node_events[3:]) == [("m1", "ACTIVE"), ("w1", "FAILED"), ("w2", "ACTIVE")]
    failed = next(f for f in found if f.event == "node" and f.data["status"] == "FAILED")
    assert failed.data["reason"] == "task 'break one host' failed: disk full on w1"

    # the log lines are the job's log, with the same numbers
    log = worker_client.get(f"/api/jobs/{job_id}/log").json()["lines"]
    assert [(f.id, f.data["text"]) for f in found if f.event == "log"] == [
        (line["seq"], line["text"]) for line in log
    ]
    assert any("TASK [break one host]" in line["text"] for line in log)
    assert all(f.data["at"] for f in durable(found)[:-1])


def test_resume_from_an_id_on_another_process_of_the_same_database(
    worker_client: TestClient, db: Database, settings: Settings, prober: FakeProber
) -> None:
    job_id = run_install(worker_client, db)
    wait_job(worker_client, job_id)
    full = durable(stream(worker_client, job_id))
    assert len(full) > 20 and full[-1].event == "end"
    other = create_app(settings, prober=prober, run_migrations=False, start_worker=False)
    with TestClient(other, base_url="http://localhost", client=LOOPBACK) as second:
        for cut in (0, 1, 7, len(full) // 2, len(full) - 2):
            resumed = stream(second, job_id, **{"Last-Event-ID": str(full[cut].id)})
            assert resumed[0].event == "job" and resumed[0].data["status"] == "succeeded"
            assert [(f.id, f.event, f.data) for f in durable(resumed)] == [
                (f.id, f.event, f.data) for f in full[cut + 1 :]
            ]
        # after the end: the end again, nothing else
        again = durable(stream(second, job_id, **{"Last-Event-ID": str(full[-1].id)}))
        assert [(f.id, f.event) for f in again] == [(full[-1].id, "end")]
        # ?after= for a first connection; a Last-Event-ID header (a reconnect) wins over it
        with second.stream("GET", f"/api/jobs/{job_id}/events?after=5") as r:
            assert durable(list(frames(r.iter_lines())))[0].id == 6
        with second.stream(
            "GET", f"/api/jobs/{job_id}/events?after=5", headers={"Last-Event-ID": "9"}
        ) as r:
            assert durable(list(frames(r.iter_lines())))[0].id == 10


def test_small_batches_give_the_same_stream(
    worker_client: TestClient, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    job_id = run_install(worker_client, db)
    wait_job(worker_client, job_id)
    whole = durable(stream(worker_client, job_id))
    monkeypatch.setattr(sse, "BATCH", 3)
    assert [(f.id, f.data) for f in durable(stream(worker_client, job_id))] == [
        (f.id, f.data) for f in whole
    ]


def test_keepalive_while_a_job_runs_and_the_end_of_a_canceled_job(
    worker_client: TestClient, db: Database, playbook_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_playbooks(playbook_dir, mode="slow")
    monkeypatch.setattr(sse, "KEEPALIVE", 0.0)
    monkeypatch.setattr(sse, "POLL", 0.05)
    job_id = run_install(worker_client, db)
    comments: list[str] = []
    seen: list[Frame] = []
    with worker_client.stream("GET", f"/api/jobs/{job_id}/events") as r:
        for frame in frames(r.iter_lines(), comments):
            seen.append(frame)
            started = [f for f in seen if f.event == "task_start"]
            if frame.event == "task_start" and len(started) == 3:
                assert worker_client.post(f"/api/jobs/{job_id}/cancel").status_code == 200
    assert ": keep-alive" in comments
    assert seen[-1].event == "end" and seen[-1].data["status"] == "canceled"
    assert seen[-1].data["reason"] == "canceled by local"
    statuses = {f.data["hostname"]: f.data["status"] for f in seen if f.event == "node"}
    assert statuses == {"m1": "FAILED", "w1": "FAILED", "w2": "FAILED"}
    reasons = {f.data["reason"] for f in seen if f.event == "node" and f.data["status"] == "FAILED"}
    assert reasons == {"state unknown: canceled by local during task 'take a while'"}


def test_secrets_in_event_data_are_masked(
    worker_client: TestClient, db: Database, playbook_dir: Path, settings: Settings
) -> None:
    (playbook_dir / "install.yml").write_text(
        PLAY_HEADER
        + """
    - name: leak
      ansible.builtin.fail: {msg: "bad token {{ rke2m_token }}"}
      when: inventory_hostname == 'w1'
    - name: "[rke2m] node ready"
      ansible.builtin.debug: {msg: done}
"""
    )
    job_id = run_install(worker_client, db)
    found = stream(worker_client, job_id)
    with db.read_session() as s:
        cluster = s.scalars(select(Cluster)).one()
        token = SecretBox.from_settings(settings).decrypt(cluster.token_enc)
        stored = [e.data for e in s.scalars(select(JobEvent).where(JobEvent.job_id == job_id))]
        lines = list(s.scalars(select(JobLogLine.text).where(JobLogLine.job_id == job_id)))
    failed = next(f for f in found if f.event == "task_end" and f.data["result"] == "failed")
    assert failed.data["reason"] == "task 'leak' failed: bad token ********"
    assert token not in str(stored) and token not in "\n".join(lines)
    assert all(token not in str(f.data) for f in found)


def test_unknown_job_and_bad_ids(client: TestClient, db: Database) -> None:
    r = client.get("/api/jobs/999/events")
    assert r.status_code == 404
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["detail"] == "Job 999 not found"
    r = client.get("/api/jobs/1/events", headers={"Last-Event-ID": "x1"})
    assert r.status_code == 400
    assert r.json()["detail"] == (
        "Last-Event-ID must be the id of an event of this stream (0 to 2147483647)"
    )
    assert client.get("/api/jobs/1/events?after=-1").status_code == 422


def test_streams_are_bounded_per_process(
    worker_client: TestClient, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    job_id = run_install(worker_client, db)
    wait_job(worker_client, job_id)
    monkeypatch.setattr(sse, "MAX_STREAMS", 0)
    r = worker_client.get(f"/api/jobs/{job_id}/events")
    assert r.status_code == 503
    assert r.json()["detail"] == "This process already serves 0 event streams; retry shortly"
    monkeypatch.setattr(sse, "MAX_STREAMS", 1)
    assert durable(stream(worker_client, job_id))[-1].event == "end"  # the count went down


@pytest.fixture
def app(settings: Settings, db: Database, prober: FakeProber) -> Iterator[Any]:
    yield create_app(settings, prober=prober, run_migrations=False, start_worker=True)


def test_protected_mode_and_tokens(app: Any, db: Database) -> None:
    with (
        TestClient(app, base_url="http://localhost", client=LOOPBACK) as local,
        TestClient(app, base_url="http://localhost", client=REMOTE) as remote,
    ):
        job_id = run_install(local, db)
        wait_job(local, job_id)
        # protected mode: loopback is served, anyone else is told how to get a token
        assert durable(stream(local, job_id))[-1].event == "end"
        r = remote.get(f"/api/jobs/{job_id}/events")
        assert r.status_code == 401 and "protected mode" in r.json()["detail"]
        with db.transaction() as s:
            _, viewer = create_token(s, "watcher", ApiRole.VIEWER, "test")
        auth = {"Authorization": f"Bearer {viewer}"}
        assert durable(stream(remote, job_id, **auth))[-1].event == "end"
        r = remote.get(f"/api/jobs/{job_id}/events")
        assert r.status_code == 401
        assert r.json()["detail"] == (
            "Authentication required: send `Authorization: Bearer <token>`"
        )
        with db.transaction() as s:
            revoke_token(s, "watcher", "test")
        r = remote.get(f"/api/jobs/{job_id}/events", headers=auth)
        assert r.status_code == 401
        assert r.json()["detail"] == "The API token is unknown or revoked"


def test_a_queued_job_says_so_then_running_when_it_gets_the_lock(
    worker_client: TestClient, db: Database, playbook_dir: Path, settings: Settings
) -> None:
    write_playbooks(playbook_dir, mode="slow")
    settings.ansible_extra_vars = {"sleep_seconds": 1}
    first = run_install(worker_client, db)
    r = worker_client.post("/api/jobs/install/1?on_busy=queue")
    assert r.status_code == 202 and r.json()["status"] == "queued"
    second = int(r.json()["job_id"])
    found = stream(worker_client, second)
    snapshots = [f.data["status"] for f in found if f.event == "job"]
    assert snapshots[:2] == ["queued", "running"]
    assert found[-1].event == "end" and found[-1].data["status"] == "succeeded"
    assert wait_job(worker_client, first)["status"] == "succeeded"


@pytest.mark.parametrize(
    ("kind", "data", "result"),
    [
        ("runner_on_ok", {"res": {"changed": False}}, "ok"),
        ("runner_on_ok", {"res": {"changed": True}}, "changed"),
        ("runner_on_ok", {"res": "censored"}, "ok"),
        ("runner_on_failed", {"res": {}}, "failed"),
        ("runner_on_failed", {"res": {}, "ignore_errors": True}, "ignored"),
        ("runner_on_skipped", {}, "skipped"),
        ("runner_on_unreachable", {"res": {"msg": "timed out"}}, "unreachable"),
        ("runner_on_start", {}, None),
        ("playbook_on_stats", {}, None),
    ],
)
def test_how_a_task_ended_on_a_host(kind: str, data: dict[str, Any], result: str | None) -> None:
    assert task_result({"event": kind, "event_data": {"host": "w1", "task": "t", **data}}) == (
        result
    )


def test_a_revoked_token_ends_an_open_stream(
    app: Any, db: Database, playbook_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Access is checked again while the stream is open: revoking the token ends it (no
    ``end``: the job runs on), and the reconnect is refused."""
    write_playbooks(playbook_dir, mode="slow")
    monkeypatch.setattr(sse, "POLL", 0.05)
    monkeypatch.setattr(sse, "RECHECK", 0.2)
    with (
        TestClient(app, base_url="http://localhost", client=LOOPBACK) as local,
        TestClient(app, base_url="http://localhost", client=REMOTE) as remote,
    ):
        job_id = run_install(local, db)
        with db.transaction() as s:
            _, viewer = create_token(s, "watcher", ApiRole.VIEWER, "test")
        auth = {"Authorization": f"Bearer {viewer}"}
        comments: list[str] = []
        seen: list[Frame] = []
        revoked = False
        with remote.stream("GET", f"/api/jobs/{job_id}/events", headers=auth) as r:
            assert r.status_code == 200
            for frame in frames(r.iter_lines(), comments):
                seen.append(frame)
                if frame.event == "task_start" and not revoked:
                    with db.transaction() as s:
                        revoke_token(s, "watcher", "test")
                    revoked = True
        assert revoked and ": access revoked" in comments
        assert all(f.event != "end" for f in seen)
        with db.read_session() as s:
            job = s.get(Job, job_id)
            assert job is not None and job.status == "running"  # the job goes on
        r = remote.get(f"/api/jobs/{job_id}/events", headers=auth)
        assert (r.status_code, r.json()["detail"]) == (401, "The API token is unknown or revoked")
        assert local.post(f"/api/jobs/{job_id}/cancel").status_code == 200
