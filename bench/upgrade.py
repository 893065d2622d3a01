"""Upgrade benchmark: a rolling upgrade of 3 servers + 3 agents on the lab, and each node's time
not Ready.

Installs v1.31.4+rke2r1 (the stand-in's artifact set) on fresh lab hosts through the service,
then upgrades to v1.32.1+rke2r1 with ``POST /api/clusters/{id}/upgrade`` (drain on, agents one
at a time unless ``--agent-concurrency``). While the job runs, a sampler asks a server (the
first one that answers) for every Node every ``--interval`` seconds and adds up, per node, the
time it was seen not Ready (NotReady, or missing from the answer); it also notes how long the
service showed each node ``UPGRADING``. Prints the job's wall time (from the POST to its end
as the API shows it) and its start-to-end time, then per node: seconds not Ready (sampled;
the resolution, ``--interval`` plus one kubectl call over SSH, is printed), seconds
``UPGRADING``, and in what order the nodes went.

    sudo .venv/bin/python bench/upgrade.py                  # root: the lab needs it
    sudo .venv/bin/python bench/upgrade.py --agent-concurrency 3

Hosts are network namespaces on this machine (tests/lab) running the stand-in RKE2, which
restarts in about a second where real RKE2 takes a minute: the figures show the manager's
and Ansible's share of an upgrade, and how long each node is out, not real-cluster times.
Timing is reported, never asserted. Exit status 0; 1 if the upgrade failed; 2 if the lab cannot
be made here.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # tests.lab: the SSH test hosts and the stand-in RKE2

from fastapi.testclient import TestClient  # noqa: E402

from rke2_manager.api.app import create_app  # noqa: E402
from rke2_manager.config import PACKAGE_DIR, Settings  # noqa: E402
from tests.lab.cluster import KUBECTL  # noqa: E402
from tests.lab.fixtures import lab_unavailable  # noqa: E402
from tests.lab.hosts import Lab  # noqa: E402
from tests.lab.standin import build_artifact  # noqa: E402

SERVERS = ["m1", "m2", "m3"]
AGENTS = ["w1", "w2", "w3"]
OLD, NEW = "v1.31.4+rke2r1", "v1.32.1+rke2r1"
LOOPBACK = ("127.0.0.1", 50000)
# The playbooks' bounds, cut down to what the stand-in needs (as the e2e tests do).
EXTRA_VARS = {
    "rke2_start_timeout": 120,
    "rke2_ready_timeout": 120,
    "rke2_drain_timeout": 60,
    "rke2_install_timeout": 120,
    "rke2_poll_interval": 0.5,
}
FINAL = ("succeeded", "failed", "canceled")


class Sampler(threading.Thread):
    """Adds up, per node, the time it was seen not Ready while the upgrade runs."""

    def __init__(self, lab: Lab, interval: float) -> None:
        super().__init__(daemon=True)
        self.lab, self.interval = lab, interval
        self.stop = threading.Event()
        self.not_ready: dict[str, float] = dict.fromkeys(SERVERS + AGENTS, 0.0)
        self.samples = 0
        self.misses = 0

    def ready(self) -> dict[str, bool] | None:
        for server in SERVERS:
            out = self.lab.run(server, f"{KUBECTL} get nodes -o json", timeout=10)
            if out.ok:
                items = json.loads(out.stdout)["items"]
                return {
                    n["metadata"]["name"]: any(
                        c["type"] == "Ready" and c["status"] == "True"
                        for c in n["status"]["conditions"]
                    )
                    for n in items
                }
        return None

    def run(self) -> None:
        last = time.monotonic()
        while not self.stop.is_set():
            seen = self.ready()
            now = time.monotonic()
            if seen is None:
                self.misses += 1
            else:
                self.samples += 1
                for node in self.not_ready:
                    if not seen.get(node, False):
                        self.not_ready[node] += now - last
            last = now
            self.stop.wait(self.interval)


def run_job(client: TestClient, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    r = client.post(path, json=body)
    r.raise_for_status()
    job_id = r.json()["job_id"]
    while True:
        job: dict[str, Any] = client.get(f"/api/jobs/{job_id}").json()
        if job["status"] in FINAL:
            return job
        time.sleep(0.1)


def bench(workdir: Path, interval: float, concurrency: int) -> int:
    root = workdir / "artifacts"
    old = build_artifact(root / OLD, version=OLD)
    new = build_artifact(root / NEW, version=NEW)
    with Lab(SERVERS + AGENTS) as lab:
        settings = Settings(
            database_url=f"sqlite:///{workdir / 'bench.db'}",
            data_dir=workdir / "data",
            secret_key="bench",
            allowed_networks=[lab.subnet],
            playbook_dir=PACKAGE_DIR / "playbooks",
            artifact_root=root,
            ansible_extra_vars=dict(EXTRA_VARS),
            worker_poll_interval=0.05,
            _env_file=None,  # type: ignore[call-arg]
        )
        app = create_app(settings)
        with TestClient(app, base_url="http://localhost", client=LOOPBACK) as client:
            nodes = [(h, "server") for h in SERVERS] + [(h, "agent") for h in AGENTS]
            body = {
                "name": "bench",
                "nodes": [{"hostname": h, "ip": lab.host(h).ip, "role": r} for h, r in nodes],
                "ssh": {"private_key": lab.private_key},
                "rke2": {"artifact_dir": str(old)},
            }
            r = client.post("/api/clusters", json=body)
            r.raise_for_status()
            cid = r.json()["id"]
            install = run_job(client, f"/api/jobs/install/{cid}")
            if install["status"] != "succeeded":
                print(f"install failed: {install['reason']}", file=sys.stderr)
                return 1

            upgrading: dict[str, float] = {}
            order: list[str] = []
            sampler = Sampler(lab, interval)
            sampler.start()
            started = time.monotonic()
            r = client.post(
                f"/api/clusters/{cid}/upgrade",
                json={
                    "version": NEW,
                    "artifact_dir": str(new),
                    "drain": True,
                    "agent_concurrency": concurrency,
                },
            )
            r.raise_for_status()
            job_id = r.json()["job_id"]
            last = time.monotonic()
            while True:
                job: dict[str, Any] = client.get(f"/api/jobs/{job_id}").json()
                now = time.monotonic()
                for node in client.get(f"/api/clusters/{cid}").json()["nodes"]:
                    if node["status"] == "UPGRADING":
                        upgrading[node["hostname"]] = upgrading.get(node["hostname"], 0.0)
                        upgrading[node["hostname"]] += now - last
                        if node["hostname"] not in order:
                            order.append(node["hostname"])
                last = now
                if job["status"] in FINAL:
                    break
                time.sleep(0.1)
            wall = time.monotonic() - started
            sampler.stop.set()
            sampler.join()
    inner = (
        datetime.fromisoformat(job["finished_at"]) - datetime.fromisoformat(job["started_at"])
    ).total_seconds()
    print(f"upgrade {OLD} -> {NEW}: 3 servers + 3 agents, drain, agent_concurrency {concurrency}")
    print(f"  job {job['status']}: wall {wall:.1f} s (POST to end), job start to end {inner:.1f} s")
    if job["status"] != "succeeded":
        print(f"  reason: {job['reason']}")
    print(f"  order the nodes went in: {' '.join(order)}")
    print(f"  {'node':6} {'not Ready (s)':>14} {'UPGRADING (s)':>14}")
    for node in SERVERS + AGENTS:
        print(f"  {node:6} {sampler.not_ready[node]:14.1f} {upgrading.get(node, 0.0):14.1f}")
    total = sum(sampler.not_ready.values())
    period = wall / max(1, sampler.samples + sampler.misses)
    print(
        f"  not Ready in all: {total:.1f} node-seconds; {sampler.samples} samples, one every "
        f"{period:.2f} s (interval {interval} s + a kubectl over SSH; {sampler.misses} with no "
        "server answering): shorter outages than that can go unseen"
    )
    return 0 if job["status"] == "succeeded" else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--interval", type=float, default=0.2, help="Ready sampling interval")
    parser.add_argument("--agent-concurrency", type=int, default=1)
    args = parser.parse_args()
    problem = lab_unavailable()
    if problem:
        print(f"cannot run: {problem}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="rke2m-bench-") as tmp:
        return bench(Path(tmp), args.interval, args.agent_concurrency)


if __name__ == "__main__":
    sys.exit(main())
