"""Node-side fencing (docs/fencing.md): a node refuses a run older than the newest job that
touched it, ends what older runs still run there, and ends a step whose SSH channel is gone.

The node's journal (/var/lib/rke2-manager/fence.log) shows what happened on each host.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from rke2_manager.api.app import create_app
from rke2_manager.config import PACKAGE_DIR, Settings
from rke2_manager.db import Database
from rke2_manager.models import Job
from tests.conftest import LOOPBACK
from tests.e2e.support import E2E_VARS, Api, host_config, ready_since
from tests.factories import TEST_SECRET_KEY, FakeProber
from tests.lab.hosts import Lab

pytestmark = pytest.mark.lab

DIR = "/var/lib/rke2-manager"
FILES = PACKAGE_DIR / "playbooks" / "files"
SCRIPTS = ("rke2m-fence.sh", "rke2m-step.sh", "rke2m_watch.py")


# --- the node's fence and journal -----------------------------------------------------------------
@dataclass(frozen=True)
class Line:
    """One line of a node's journal: ``<time> job=J token=T step=S key=value ... [name=...]``."""

    time: int
    job: int
    token: int
    step: str
    fields: dict[str, str]


def journal(lab: Lab, host: str) -> list[Line]:
    out = lab.run(host, f"cat {DIR}/fence.log 2>/dev/null").stdout
    lines = []
    for text in out.splitlines():
        head, _, name = text.partition(" name=")
        stamp, *pairs = head.split()
        fields = dict(p.split("=", 1) for p in pairs)
        if name:
            fields["name"] = name
        lines.append(
            Line(
                int(stamp),
                int(fields.pop("job")),
                int(fields.pop("token")),
                fields.pop("step"),
                fields,
            )
        )
    return lines


def fence(lab: Lab, host: str) -> str:
    return lab.run(host, f"cat {DIR}/fence 2>/dev/null").stdout.strip()


def tagged(lab: Lab, host: str) -> list[str]:
    """Processes on ``host`` that carry a fence tag: ``pid comm RKE2M_FENCE=...``."""
    script = (
        "for e in $(grep -l -a -s RKE2M_FENCE= /proc/[0-9]*/environ); do p=${e#/proc/}; "
        "p=${p%/environ}; echo $p $(cat /proc/$p/comm 2>/dev/null) "
        "$(tr '\\0' '\\n' <$e 2>/dev/null | grep ^RKE2M_FENCE=); done"
    )
    out = lab.nsexec(host, ["sh", "-c", script]).stdout
    return [line for line in out.splitlines() if "RKE2M_FENCE=" in line]


def host_files(lab: Lab, host: str) -> dict[str, tuple[int, int, int]]:
    """What the host has changed in its file system (its overlays' upper layers and root's
    home), the fence's own directory aside: path -> (mode, size, mtime)."""
    base = lab.host(host).dir
    found = {}
    for root in [*sorted((base / "fs").glob("*.upper")), base / "root"]:
        for path in [root, *root.rglob("*")]:
            name = str(path.relative_to(base))
            if name.startswith("fs/var-lib.upper/rke2-manager"):
                continue
            st = path.lstat()
            if path.is_dir() and not path.is_symlink():
                found[name] = (st.st_mode, 0, 0)  # its files say what changed in it
            else:
                found[name] = (st.st_mode, st.st_size, st.st_mtime_ns)
    return found


def wait_until(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting until {what}"
        time.sleep(0.1)
    return value


def put_scripts(lab: Lab, host: str) -> None:
    lab.run(host, "mkdir -p /tmp/fence", check=True)
    for name in SCRIPTS:
        lab.put(host, FILES / name, f"/tmp/fence/{name}")


def raise_fence(lab: Lab, host: str, cluster: int, token: int, job: int) -> tuple[int, str]:
    """Run the raise as the playbooks do (installing the scripts); (exit status, stderr)."""
    texts = " ".join(f'"$(cat /tmp/fence/{name})"' for name in SCRIPTS)
    res = lab.run(
        host, f"sh /tmp/fence/rke2m-fence.sh raise {cluster} {token} {job} {host} {texts}"
    )
    return res.rc, res.stderr


def fenced_step(tag: str, body: str, name: str = "test") -> str:
    """A raw step as the playbooks write it (rke2m_fenced first), as one ``sh -c`` command."""
    return "sh -c " + shlex.quote(
        f"RKE2M_FENCE={tag} RKE2M_STEP={name}; . {DIR}/bin/rke2m-step\n{body}"
    )


# --- (b) the raise and the check, on a lab host ---------------------------------------------------
def test_the_raise_refuses_a_newer_fence_and_takes_over_an_older_one_or_another_cluster(
    lab_factory: Callable[..., Lab],
) -> None:
    lab = lab_factory(["m1"])
    put_scripts(lab, "m1")

    assert raise_fence(lab, "m1", 1, 5, 7) == (0, "")
    assert fence(lab, "m1") == "cluster=1 token=5 job=7 node=m1"
    assert raise_fence(lab, "m1", 1, 5, 7) == (0, "")  # the same job again: nothing to do
    assert raise_fence(lab, "m1", 1, 6, 8) == (0, "")  # older: raised
    assert fence(lab, "m1") == "cluster=1 token=6 job=8 node=m1"
    rc, err = raise_fence(lab, "m1", 1, 4, 9)  # newer: refused
    assert (rc, err) == (97, "fenced: node m1 was taken over by job 8\n")
    assert fence(lab, "m1") == "cluster=1 token=6 job=8 node=m1"
    assert raise_fence(lab, "m1", 2, 1, 10) == (0, "")  # another cluster's: taken over
    assert fence(lab, "m1") == "cluster=2 token=1 job=10 node=m1"

    lines = journal(lab, "m1")
    assert [(x.step, x.job, x.token) for x in lines] == [
        ("raise", 7, 5),
        ("raise", 8, 6),
        ("refused", 9, 4),
        ("raise", 10, 1),
    ]
    assert lines[0].fields == {"cluster": "1", "from": "none"}
    assert lines[1].fields == {"cluster": "1", "from_token": "5", "from_job": "7"}
    assert lines[2].fields["by_job"] == "8" and lines[2].fields["by_token"] == "6"
    assert lines[3].fields == {
        "cluster": "2",
        "from_cluster": "1",
        "from_token": "6",
        "from_job": "8",
    }

    # a step runs only where the fence names its own job
    ok = lab.run("m1", fenced_step("2:1:10", "echo ran"))
    assert (ok.rc, ok.stdout, ok.stderr) == (0, "ran\n", "")
    stale = lab.run("m1", fenced_step("1:6:8", "echo ran"))
    assert (stale.rc, stale.stdout) == (97, "")
    assert stale.stderr.splitlines()[-1] == "fenced: node m1 was taken over by job 10"
    unraised = lab.run("m1", fenced_step("2:2:11", "echo ran"))
    assert (unraised.rc, unraised.stdout) == (97, "")
    assert unraised.stderr.splitlines()[-1] == "node m1: the fence was not raised before this step"
    steps = [(x.step, x.job, x.fields.get("name")) for x in journal(lab, "m1")[4:]]
    assert steps == [("start", 10, "test"), ("refused", 8, "test"), ("refused", 11, "test")]

    # Python modules: the job's interpreter link checks the same way
    py = lab.run("m1", f"{DIR}/bin/rke2m-python.2.1.10 -c 'print(6 * 7)'")
    assert (py.rc, py.stdout) == (0, "42\n")
    py = lab.run("m1", f"{DIR}/bin/rke2m-python.1.6.8 -c 'print(6 * 7)'")
    assert py.rc == 97
    assert json.loads(py.stdout) == {
        "failed": True,
        "rc": 97,
        "msg": "fenced: node m1 was taken over by job 10",
    }

    # raises racing each other: the newest token wins, each raise is whole, none is lost
    races = " ".join(
        f"sh {DIR}/bin/rke2m-fence raise 3 {t} {100 + t} m1 2>/dev/null &" for t in range(1, 13)
    )
    lab.run("m1", f"{races} wait", check=True)
    assert fence(lab, "m1") == "cluster=3 token=12 job=112 node=m1"
    raced = [x for x in journal(lab, "m1") if x.fields.get("cluster") == "3"]
    assert sorted(x.token for x in raced) == list(range(1, 13))
    raised = [x.token for x in raced if x.step == "raise"]
    assert raised == sorted(raised) and raised[-1] == 12
    assert all(x.step in ("raise", "refused") for x in raced)


def test_a_raise_ends_what_older_jobs_of_the_cluster_still_run_and_nothing_else(
    lab_factory: Callable[..., Lab],
) -> None:
    lab = lab_factory(["m1"])
    put_scripts(lab, "m1")
    assert raise_fence(lab, "m1", 1, 5, 7)[0] == 0
    # a stale step: its shell, a child in its group, and one that left it (timeout(1) does)
    stale = subprocess.Popen(
        [*lab.ssh_args("m1"), fenced_step("1:5:7", "sleep 301 & timeout 300 sleep 302; wait")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    # not to be touched: another cluster's process, and one of the raising job itself
    lab.run("m1", "RKE2M_FENCE=2:1:1:1 setsid sleep 303 </dev/null >/dev/null 2>&1 &", check=True)
    lab.run("m1", "RKE2M_FENCE=1:6:8:1 setsid sleep 304 </dev/null >/dev/null 2>&1 &", check=True)
    wait_until(lambda: lab.nsexec("m1", ["pgrep", "-f", "sleep 302"]).ok, 20, "the step runs")
    assert len(tagged(lab, "m1")) >= 6  # sh, its watcher, 2 sleeps, timeout; and the 2 others

    started = time.monotonic()
    assert raise_fence(lab, "m1", 1, 6, 8) == (0, "")
    _, err = stale.communicate(timeout=30)
    assert time.monotonic() - started < 5  # SIGTERM did it, no wait for SIGKILL
    assert stale.returncode != 0
    assert err.splitlines()[-1] == "fenced: node m1 was taken over by job 8", err
    left = tagged(lab, "m1")
    assert sorted(line.split(" ", 2)[2] for line in left) == [
        "RKE2M_FENCE=1:6:8:1",
        "RKE2M_FENCE=2:1:1:1",
    ], left
    kills = [x for x in journal(lab, "m1") if x.step == "kill"]
    assert {x.fields["stale_token"] for x in kills} == {"5"}
    assert {x.job for x in kills} == {8}
    assert {x.fields["what"] for x in kills} >= {"step", "sleep", "timeout"}
    lab.nsexec("m1", ["pkill", "-f", "sleep 30[34]"])


@pytest.mark.parametrize("connection", ["own", "shared"])
def test_a_step_whose_ssh_channel_goes_away_is_ended(
    lab_factory: Callable[..., Lab], tmp_path: Path, connection: str
) -> None:
    """sshd does not end a command without a terminal when its channel closes (the manager's
    ssh killed); the fence's watcher does. ``shared``: over a ControlMaster connection, as
    Ansible's, which stays up when the client that opened the channel dies."""
    lab = lab_factory(["m1"])
    put_scripts(lab, "m1")
    assert raise_fence(lab, "m1", 1, 5, 7)[0] == 0
    ssh = lab.ssh_args("m1")
    # short: a socket's path must stay under 108 bytes, and %C is 40
    sockets = Path(tempfile.mkdtemp(prefix="rke2m-t-"))
    if connection == "shared":
        control = [
            "-o",
            "ControlMaster=auto",
            "-o",
            f"ControlPath={sockets}/%C",
            "-o",
            "ControlPersist=60",
        ]
        ssh = [ssh[0], *control, *ssh[1:]]

    def launch(cmd: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [*ssh, cmd],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
        )

    def running(pattern: str) -> bool:
        return lab.nsexec("m1", ["pgrep", "-f", pattern]).ok

    try:
        # without the fence's check, the step runs on after its channel is gone
        plain = launch("sleep 311; touch /tmp/plain-after")
        wait_until(lambda: running("sleep 311"), 20, "the plain step runs")
        plain.kill()
        plain.wait()
        time.sleep(2)
        assert running("sleep 311"), "sshd ended the step itself: the watcher is not needed"
        lab.nsexec("m1", ["pkill", "-f", "sleep 311"])

        # with it, the step ends with its channel, before it changed anything more
        step = launch(fenced_step("1:5:7", "sleep 312; touch /tmp/fenced-after", "wait"))
        wait_until(lambda: running("sleep 312"), 20, "the fenced step runs")
        step.kill()
        step.wait()
        wait_until(lambda: not running("sleep 312"), 10, "the fenced step has ended")
        wait_until(lambda: tagged(lab, "m1") == [], 10, "nothing of the step is left")
        steps = [(x.step, x.fields.get("what")) for x in journal(lab, "m1")]
        assert steps[-3:] == [("start", None), ("hangup", None), ("kill", "hangup")], steps
        assert not lab.run("m1", "test -e /tmp/fenced-after").ok
    finally:
        if connection == "shared":
            subprocess.run([*ssh[:1], *control, "-O", "exit", lab.host("m1").ip], check=False)
        shutil.rmtree(sockets, ignore_errors=True)


# --- (a) a job on a node fenced by a newer job ----------------------------------------------------
def test_a_job_on_a_node_a_newer_job_fenced_fails_saying_so_and_changes_nothing_there(
    api: Api, make_lab: Callable[[list[str]], Lab], db: Database
) -> None:
    lab = make_lab(["m1"])
    cid = api.create_cluster("fenced", lab, [("m1", "server")])
    before = host_files(lab, "m1")
    lab.run(
        "m1",
        f"mkdir -p {DIR} && echo 'cluster={cid} token=1000 job=999 node=m1' > {DIR}/fence",
        check=True,
    )
    job = api.wait(api.install(cid))
    why = "fenced: node m1 was taken over by job 999"
    assert job["status"] == "failed" and why in job["reason"], job["reason"]
    assert job["reason"] == f"m1: task 'Raise the fence' failed: {why}"
    status, reason = api.nodes(cid)["m1"]
    assert status == "FAILED" and why in str(reason)
    assert api.lock(cid) == ("idle", None)

    with db.read_session() as s:
        token = s.scalars(select(Job.fencing_token).where(Job.id == job["id"])).one()
    assert [(x.step, x.job, x.token) for x in journal(lab, "m1")] == [("refused", job["id"], token)]
    assert fence(lab, "m1") == f"cluster={cid} token=1000 job=999 node=m1"
    assert lab.run("m1", f"ls -A {DIR}").stdout.split() == ["fence", "fence.lock", "fence.log"]
    assert host_files(lab, "m1") == before
    assert tagged(lab, "m1") == []


# --- (c) a paused manager's run, after another manager took the cluster ------------------------
def descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                stat = (entry / "stat").read_text()
                ppid = int(stat[stat.rfind(")") + 2 :].split()[1])
                children.setdefault(ppid, []).append(int(entry.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def signal_all(pids: set[int], sig: signal.Signals) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def write_lock_free(db_file: Path) -> bool:
    """Whether SQLite's write lock can be taken now (a stopped worker may hold it)."""
    conn = sqlite3.connect(db_file, timeout=0.3)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.rollback()
        return True
    except sqlite3.OperationalError:
        return False
    finally:
        conn.close()


@dataclass
class WorkerProcess:
    proc: subprocess.Popen[bytes]
    log: Path
    env: dict[str, str]

    def text(self) -> str:
        return self.log.read_text(errors="replace")


def spawn_worker(name: str, env: dict[str, str], tmp: Path, machine: str | None) -> WorkerProcess:
    """``rke2-manager worker``; with ``machine``, as if on another machine: its own hostname,
    /etc/machine-id and temporary directory, so it can neither find nor end the other's runs."""
    log = tmp / f"{name}.log"
    argv = [sys.executable, "-m", "rke2_manager", "worker"]
    if machine is not None:
        (tmp / name).mkdir()
        (tmp / name / "machine-id").write_text(f"{machine}\n")
        # short: SSH's control sockets go there
        env = {**env, "TMPDIR": tempfile.mkdtemp(prefix="w", dir="/tmp")}
        script = (
            f"hostname {name} && mount --bind {tmp / name / 'machine-id'} /etc/machine-id "
            '&& exec "$@"'
        )
        argv = ["unshare", "--mount", "--uts", "--propagation", "private", "sh", "-c", script,
                "sh", *argv]  # fmt: skip
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            argv, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    worker = WorkerProcess(proc, log, env)
    wait_until(lambda: " started" in worker.text() or proc.poll() is not None, 60, f"{name} up")
    assert proc.poll() is None, worker.text()
    return worker


def test_a_paused_managers_run_is_refused_by_the_node_a_newer_job_touched(
    lab_factory: Callable[..., Lab], settings: Settings, rke2_artifact: Path, tmp_path: Path
) -> None:
    lab = lab_factory(["m1"])
    # the start waits 3 s for readiness: the moment to pause the manager that runs it
    lab.run("m1", "echo RKE2_STANDIN_READY_DELAY=3 > /etc/default/rke2-server", check=True)
    db_file = Path(settings.database_url.removeprefix("sqlite:///"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("RKE2M_")}
    env.update(
        RKE2M_DATABASE_URL=settings.database_url,
        RKE2M_SECRET_KEY=TEST_SECRET_KEY,
        RKE2M_ALLOWED_NETWORKS=lab.subnet,
        RKE2M_ARTIFACT_ROOT=str(rke2_artifact.parent),
        RKE2M_PLAYBOOK_DIR=str(PACKAGE_DIR / "playbooks"),
        RKE2M_ANSIBLE_EXTRA_VARS=json.dumps(E2E_VARS),
        RKE2M_PROBE_POLICY="off",
        RKE2M_LOCK_TTL="3",
        RKE2M_LOCK_CHECK_INTERVAL="0.5",
        RKE2M_MAINTENANCE_INTERVAL="0.5",
        RKE2M_WORKER_POLL_INTERVAL="0.2",
        RKE2M_KILL_GRACE="2",
    )
    settings.allowed_networks.append(lab.subnet)
    settings.artifact_root = rke2_artifact.parent
    app = create_app(settings, prober=FakeProber(), run_migrations=True, start_worker=False)
    workers: list[WorkerProcess] = []
    frozen: set[int] = set()
    with TestClient(app, base_url="http://localhost", client=LOOPBACK) as client:
        api = Api(client, rke2_artifact)
        try:
            cid = api.create_cluster("paused", lab, [("m1", "server")])
            a = spawn_worker(
                "worker-a", {**env, "RKE2M_DATA_DIR": str(tmp_path / "a")}, tmp_path, None
            )
            workers.append(a)
            stale = api.install(cid)
            wait_until(
                lambda: any(x.fields.get("name") == "start" for x in journal(lab, "m1")),
                60,
                "the stale run starts rke2-server on m1",
            )
            # pause worker A and its run (not holding SQLite's write lock), as a paused VM
            while True:
                os.kill(a.proc.pid, signal.SIGSTOP)
                if write_lock_free(db_file):
                    break
                os.kill(a.proc.pid, signal.SIGCONT)
                time.sleep(0.05)
            while more := descendants(a.proc.pid) - frozen:
                signal_all(more, signal.SIGSTOP)
                frozen |= more
            assert frozen, "worker A runs no playbook"
            stale_token = journal(lab, "m1")[0].token
            # the step on m1 ends by itself (rke2-server became ready); its result waits in
            # the paused manager, and nothing of the stale run is left on m1
            wait_until(lambda: tagged(lab, "m1") == [], 30, "the stale start step ended on m1")

            # another manager takes the cluster once the lease has run out, and installs again
            r = client.post(f"/api/jobs/install/{cid}", params={"on_busy": "queue"})
            assert r.status_code == 202, r.text
            newer = int(r.json()["job_id"])
            b = spawn_worker(
                "worker-b", {**env, "RKE2M_DATA_DIR": str(tmp_path / "b")}, tmp_path, "f" * 32
            )
            workers.append(b)
            api.succeed(newer, timeout=90)
            assert api.job(stale)["status"] == "failed"
            # worker B could not end the paused run (on "another machine"): it is still there
            assert all(Path(f"/proc/{pid}").exists() for pid in frozen)
            done = {
                "config": host_config(lab, "m1"),
                "ready": ready_since(lab, "m1", "server"),
                "fence": fence(lab, "m1"),
                "files": lab.run(
                    "m1", "ls -lR --time-style=+%s.%N /etc/rancher /usr/local/bin"
                ).stdout,
            }
            newer_token = int(done["fence"].split()[1].removeprefix("token="))
            assert done["fence"] == f"cluster={cid} token={newer_token} job={newer} node=m1"
            assert newer_token > stale_token
            assert tagged(lab, "m1") == []  # rke2-server runs, but never with a fence's tag

            # the paused run goes on: its next step on m1 is refused and changes nothing
            signal_all(frozen, signal.SIGCONT)
            refused = wait_until(
                lambda: [x for x in journal(lab, "m1") if x.step == "refused"],
                30,
                "the stale run's next step is refused on m1",
            )
            assert [(x.job, x.token) for x in refused] == [(stale, stale_token)]
            assert refused[0].fields["by_job"] == str(newer)
            time.sleep(1)  # the refusal's result reaches the paused worker's output first
            os.kill(a.proc.pid, signal.SIGCONT)
            frozen.clear()
            assert {
                "config": host_config(lab, "m1"),
                "ready": ready_since(lab, "m1", "server"),
                "fence": fence(lab, "m1"),
                "files": lab.run(
                    "m1", "ls -lR --time-style=+%s.%N /etc/rancher /usr/local/bin"
                ).stdout,
            } == done

            # the two jobs' steps never interleaved on m1: after the newer job's raise, the
            # stale one only had refusals
            lines = journal(lab, "m1")
            first_newer = next(i for i, x in enumerate(lines) if x.job == newer)
            assert lines[first_newer].step == "raise"
            assert all(x.job == newer or x.step == "refused" for x in lines[first_newer:])
            assert all(x.job == stale for x in lines[:first_newer])
            assert tagged(lab, "m1") == []

            # the paused worker, woken, says why its run failed (it may write nothing else:
            # the job is another's to record now)
            fenced = f"fenced: node m1 was taken over by job {newer}"

            def said() -> bool:
                return any(f"job {stale}" in x and fenced in x for x in a.text().splitlines())

            # Worker A, woken, writes nothing more for the job (it is another's to record now)
            # and says it lost its lock. Whether its line also carries the node's reason
            # depends on a race it need not win: its lease check (which ends the run at once)
            # against reading the refused step's result from ansible-playbook's output.
            lost = f"job {stale} lost its lock; its run is ended, nothing more is written"
            wait_until(lambda: lost in a.text(), 30, f"worker A to say job {stale} lost its lock")
            print("worker A said the node's reason too:", said())
        finally:
            signal_all(frozen, signal.SIGCONT)
            for w in workers:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(w.proc.pid, signal.SIGCONT)
                    os.killpg(w.proc.pid, signal.SIGTERM)
            for w in workers:
                try:
                    w.proc.wait(30)
                except subprocess.TimeoutExpired:
                    os.killpg(w.proc.pid, signal.SIGKILL)
                    w.proc.wait(10)
            for w in workers:
                print(w.text()[-4000:])
                if "TMPDIR" in w.env:
                    shutil.rmtree(w.env["TMPDIR"], ignore_errors=True)
