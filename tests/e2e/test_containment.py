"""A run that is stopped from outside leaves nothing behind, on the manager or on the nodes,
before its lock moves on (issue 8).

For cancel, force-unlock, SIGTERM of ``serve`` and ``kill -9`` of ``serve`` (then a restart),
with an install's long step (the start of rke2-server, made slow on the host) under way:

- no process of the old run is left on the manager (``RKE2M_RUN=<run tag>``,
  :mod:`rke2_manager.execution.procs`) nor on its host (``RKE2M_FENCE=<cluster>:<token>:<job>:``,
  docs/fencing.md);
- the next job, queued behind it, never overlaps it: in the host's journal no step of the old
  job starts after the new job raised its fence;
- the old job ends with its documented status and reason, the lock passes to the next job, and
  that job succeeds.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
from fastapi.testclient import TestClient

from rke2_manager.config import PACKAGE_DIR, Settings
from rke2_manager.db import Database
from rke2_manager.execution import procs
from rke2_manager.execution.ssh import master_title
from rke2_manager.models import Cluster, Job
from tests.e2e.support import E2E_VARS, Api
from tests.factories import TEST_SECRET_KEY
from tests.lab.hosts import Lab

pytestmark = pytest.mark.lab

#: How long the stand-in rke2-server takes to become ready: the install's start step waits
#: that long, so it is under way when the run is stopped.
READY_DELAY = 20
#: The step (``rke2m_step``) that starts rke2-server, as the node's journal names it.
START_STEP = "start"


# --- what runs where ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Old:
    """The job whose run is stopped: what its processes carry."""

    job: int
    cluster: int
    token: int
    run_tag: str

    @property
    def fence_tag(self) -> str:
        return f"RKE2M_FENCE={self.cluster}:{self.token}:{self.job}:"


def job_row(db: Database, job_id: int) -> Job:
    with db.read_session() as s:
        job = s.get(Job, job_id)
        assert job is not None
        return job


def lock_of(db: Database, cluster_id: int) -> tuple[str, int | None]:
    with db.read_session() as s:
        cluster = s.get(Cluster, cluster_id)
        assert cluster is not None
        return cluster.operation_status, cluster.current_job_id


def old_run(db: Database, job_id: int) -> Old:
    job = job_row(db, job_id)
    assert job.run_tag is not None and job.fencing_token is not None, "the run has not begun"
    return Old(job_id, job.cluster_id, job.fencing_token, job.run_tag)


def describe(pid: int) -> str:
    """``pid (comm) cmdline``: what a survivor is, for the assertion message."""
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return f"{pid} (gone)"
    return f"{pid} ({comm}) {cmd.strip()}"


def on_manager(old: Old) -> list[str]:
    """Live processes on the manager's machine of the old run: those that carry its
    ``RKE2M_RUN`` tag, and its ssh masters (whose title replaces their environment)."""
    title = master_title(old.cluster, old.run_tag)
    return [describe(pid) for pid in procs.tagged(old.run_tag, title)]


def on_host(lab: Lab, host: str, old: Old) -> list[str]:
    """Live processes on ``host`` that carry the old job's fence tag (zombies excluded)."""
    out = subprocess.run(
        ["ip", "netns", "pids", lab.host(host).netns], capture_output=True, text=True, check=True
    ).stdout
    needle = old.fence_tag.encode()
    found = []
    for pid in map(int, out.split()):
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes()
        except OSError:
            continue
        if any(var.startswith(needle) for var in environ.split(b"\0")):
            found.append(describe(pid))
    return found


def wait_until(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting until {what}"
        time.sleep(0.2)
    return value


def wait_gone(lab: Lab, host: str, old: Old, timeout: float = 20) -> None:
    """Poll until nothing of the old run is left on ``host``: the node's channel watcher ends
    a step within seconds of its SSH channel closing (SIGTERM, SIGKILL after 5 s)."""
    deadline = time.monotonic() + timeout
    while left := on_host(lab, host, old):
        assert time.monotonic() < deadline, (
            f"{timeout}s after job {old.job}'s run was ended, its processes still run on "
            f"{host}:\n" + "\n".join(left)
        )
        time.sleep(0.2)


# --- the node's journal ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Line:
    job: int
    step: str
    fields: dict[str, str]


def journal(lab: Lab, host: str) -> list[Line]:
    """The host's ``/var/lib/rke2-manager/fence.log``, read from its overlay's upper layer."""
    path = lab.host(host).dir / "fs" / "var-lib.upper" / "rke2-manager" / "fence.log"
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    lines = []
    for raw in text.splitlines():
        head, _, name = raw.partition(" name=")
        fields = dict(pair.split("=", 1) for pair in head.split()[1:])
        if name:
            fields["name"] = name
        lines.append(Line(int(fields.pop("job")), fields.pop("step"), fields))
    return lines


def in_long_step(lab: Lab, host: str, job_id: int) -> bool:
    return any(
        x.job == job_id and x.step == "start" and x.fields.get("name") == START_STEP
        for x in journal(lab, host)
    )


def check_no_overlap(lab: Lab, host: str, old: int, new: int) -> None:
    """No step of ``old`` starts on ``host`` after ``new`` raised its fence there."""
    lines = journal(lab, host)
    raised = [i for i, x in enumerate(lines) if x.job == new and x.step == "raise"]
    assert raised, f"job {new} never raised its fence on {host}: {lines}"
    late = [x for x in lines[raised[0] :] if x.job == old and x.step == "start"]
    assert late == [], f"job {old}'s steps started on {host} after job {new} raised: {late}"
    # what the new job's raise still had to end on the host (the watcher should have)
    kills = [x for x in lines if x.job == new and x.step == "kill"]
    ended = [x for x in lines if x.job == old and x.step in ("hangup", "kill")]
    print(f"{host}: job {new} raised {lines[raised[0]].fields}; its kills: {kills}")
    print(f"{host}: job {old} ended by its watcher: {ended}")


def slow_start(lab: Lab, host: str) -> None:
    lab.run(
        host, f"echo RKE2_STANDIN_READY_DELAY={READY_DELAY} > /etc/default/rke2-server", check=True
    )


def queue_install(client: httpx.Client, cluster_id: int) -> int:
    r = client.post(f"/api/jobs/install/{cluster_id}", params={"on_busy": "queue"})
    assert r.status_code == 202, r.text
    assert r.json()["status"] == "queued", r.text
    return int(r.json()["job_id"])


def start_behind(api: Api, db: Database, lab: Lab, host: str, cluster_id: int) -> tuple[Old, int]:
    """An install under way in its long step on ``host``, and a second one queued behind it.

    Before returning, checks that the old run's processes are there to be found, on the
    manager and on the host, so that finding none later means something.
    """
    first = api.install(cluster_id)
    second = queue_install(api.client, cluster_id)
    wait_until(lambda: in_long_step(lab, host, first), 90, f"job {first} starts rke2 on {host}")
    old = old_run(db, first)
    assert on_manager(old), f"job {first}: no process carries RKE2M_RUN={old.run_tag}"
    assert on_host(lab, host, old), f"job {first}: no process on {host} has {old.fence_tag}"
    return old, second


def check_next(api: Api, db: Database, lab: Lab, host: str, old: Old, new: int) -> None:
    """The next job ran after the old one, never alongside it, and succeeded."""
    api.succeed(new, timeout=150)
    check_no_overlap(lab, host, old.job, new)
    assert lock_of(db, old.cluster) == ("idle", None)
    assert on_manager(old) == [] and on_host(lab, host, old) == []


# --- (1), (2): cancel and force-unlock, through the API with its worker in-process -------------
def test_cancel_and_force_unlock_end_the_run_on_the_manager_and_the_host_before_the_next_job(
    api: Api, make_lab: Callable[[list[str]], Lab], db: Database
) -> None:
    lab = make_lab(["m1", "m2"])
    for host in ("m1", "m2"):
        slow_start(lab, host)
    canceled = api.create_cluster("cancel", lab, [("m1", "server")])
    unlocked = api.create_cluster("unlock", lab, [("m2", "server")])
    a1, b1 = start_behind(api, db, lab, "m1", canceled)
    a2, b2 = start_behind(api, db, lab, "m2", unlocked)

    # (1) cancel: the answer comes once the run has ended
    r = api.client.post(f"/api/jobs/{a1.job}/cancel")
    assert r.status_code == 200, r.text
    assert (r.json()["status"], r.json()["reason"]) == ("canceled", "canceled by local")
    assert on_manager(a1) == [], "processes of the canceled run survive on the manager"
    assert lock_of(db, canceled) == ("running", b1)
    wait_gone(lab, "m1", a1)

    # (2) force-unlock
    body = {"job_id": a2.job, "reason": "stuck in test"}
    r = api.client.post(f"/api/admin/clusters/{unlocked}/force-unlock", json=body)
    assert r.status_code == 200, r.text
    assert (r.json()["status"], r.json()["reason"]) == (
        "canceled",
        "force-unlocked by local: stuck in test",
    )
    assert on_manager(a2) == [], "processes of the force-unlocked run survive on the manager"
    assert lock_of(db, unlocked) == ("running", b2)
    wait_gone(lab, "m2", a2)

    check_next(api, db, lab, "m1", a1, b1)
    check_next(api, db, lab, "m2", a2, b2)
    assert job_row(db, a1.job).reason == "canceled by local"
    assert job_row(db, a2.job).reason == "force-unlocked by local: stuck in test"


# --- (3), (4): SIGTERM and kill -9 of a ``serve`` process -----------------------------------------
@dataclass
class Serve:
    """``rke2-manager serve`` as a subprocess (API and worker) on a free loopback port."""

    env: dict[str, str]
    log: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> httpx.Client:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        env = {**self.env, "RKE2M_PORT": str(port)}
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "rke2_manager", "serve"],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # signals from the test reach serve alone
            )
        client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120)

        def up() -> bool:
            assert self.proc is not None and self.proc.poll() is None, self.text()
            with contextlib.suppress(httpx.TransportError):
                return client.get("/healthz").status_code == 200
            return False

        wait_until(up, 60, "serve answers")
        return client

    def signal(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, sig)

    def wait(self, timeout: float) -> int:
        """Wait for serve to exit and reap it (a zombie's pid would still look alive)."""
        assert self.proc is not None
        return self.proc.wait(timeout)

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


@pytest.fixture
def serve(
    lab_factory: Callable[[list[str]], Lab], settings: Settings, rke2_artifact: Path, tmp_path: Path
) -> Iterator[tuple[Serve, Lab]]:
    lab = lab_factory(["m1", "m2"])
    env = {k: v for k, v in os.environ.items() if not k.startswith("RKE2M_")}
    env.update(
        RKE2M_DATABASE_URL=settings.database_url,
        RKE2M_DATA_DIR=str(tmp_path / "data"),
        RKE2M_SECRET_KEY=TEST_SECRET_KEY,
        RKE2M_HOST="127.0.0.1",
        RKE2M_ALLOWED_NETWORKS=f"127.0.0.0/8,{lab.subnet}",
        RKE2M_ARTIFACT_ROOT=str(rke2_artifact.parent),
        RKE2M_PLAYBOOK_DIR=str(PACKAGE_DIR / "playbooks"),
        RKE2M_ANSIBLE_EXTRA_VARS=json.dumps(E2E_VARS),
        RKE2M_PROBE_POLICY="off",
        RKE2M_SHUTDOWN_GRACE="1",
        RKE2M_KILL_GRACE="2",
        RKE2M_LOCK_CHECK_INTERVAL="0.5",
        RKE2M_MAINTENANCE_INTERVAL="0.5",
        RKE2M_WORKER_POLL_INTERVAL="0.2",
        # recovery after kill -9 must come from the restart, not from the lease running out
        RKE2M_LOCK_TTL="600",
    )
    server = Serve(env, tmp_path / "serve.log")
    try:
        yield server, lab
    finally:
        server.close()
        print(server.text()[-6000:])


def test_sigterm_and_kill_9_of_serve_end_the_run_on_the_manager_and_the_host(
    serve: tuple[Serve, Lab], settings: Settings, rke2_artifact: Path
) -> None:
    server, lab = serve
    for host in ("m1", "m2"):
        slow_start(lab, host)
    db = Database(settings.database_url)
    try:
        api = Api(cast(TestClient, server.start()), rke2_artifact)
        termed = api.create_cluster("sigterm", lab, [("m1", "server")])
        killed = api.create_cluster("sigkill", lab, [("m2", "server")])

        # (3) SIGTERM: running jobs get RKE2M_SHUTDOWN_GRACE, then their runs are ended
        a1, b1 = start_behind(api, db, lab, "m1", termed)
        server.signal(signal.SIGTERM)
        server.wait(90)
        job = job_row(db, a1.job)
        assert job.worker_id is not None
        assert (job.status, job.reason) == (
            "failed",
            f"worker {job.worker_id} shut down while the job ran",
        )
        assert on_manager(a1) == [], "processes of the shut-down run survive serve's exit"
        assert lock_of(db, termed) == ("running", b1)
        wait_gone(lab, "m1", a1)

        api = Api(cast(TestClient, server.start()), rke2_artifact)
        check_next(api, db, lab, "m1", a1, b1)

        # (4) kill -9: the run is orphaned until serve starts again and recovers it
        a2, b2 = start_behind(api, db, lab, "m2", killed)
        server.signal(signal.SIGKILL)
        server.wait(30)
        # what the restart must find and end (ansible-playbook, its ssh master, ...)
        orphans = on_manager(a2)
        assert orphans, f"kill -9 of serve left no process of job {a2.job} to recover"
        print(f"after kill -9: {len(orphans)} orphaned process(es) of job {a2.job}:", orphans)
        api = Api(cast(TestClient, server.start()), rke2_artifact)  # start-up recovery
        job = job_row(db, a2.job)
        assert job.worker_id is not None
        assert (job.status, job.reason) == (
            "failed",
            f"worker {job.worker_id} stopped while the job ran (found at start-up; "
            "its run was ended)",
        )
        assert on_manager(a2) == [], "orphaned processes survive the restart's recovery"
        assert lock_of(db, killed)[1] == b2
        wait_gone(lab, "m2", a2)
        check_next(api, db, lab, "m2", a2, b2)
    finally:
        db.dispose()
