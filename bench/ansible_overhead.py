"""Ansible overhead benchmark: what a job adds around ansible-playbook, what the tuning buys.

1. The same playbook on the same lab hosts, run as a job of the service and by
   ``ansible-playbook`` directly: the shipped ``install.yml`` re-run on an installed cluster
   (1 + 2 servers, 3 agents), so every run does the same work. Runs alternate, ``--runs`` of
   each; the job is timed from its ``POST /api/jobs/install/{id}`` to its end as the API shows
   it (worker pickup, ansible-runner, event handling and log writes included), the direct run
   as the ``ansible-playbook`` process with the same inventory, extra vars and Ansible settings.
   Prints both medians and their ratio.
2. A first install of 1 + 2 servers and 3 agents on fresh lab hosts, by ``ansible-playbook``,
   with the service's tuned Ansible settings (pipelining, ControlPersist, forks = node count,
   quiet interpreter discovery) and with Ansible's defaults (no pipelining, 5 forks).

    sudo .venv/bin/python bench/ansible_overhead.py            # root: the lab needs it
    sudo .venv/bin/python bench/ansible_overhead.py --runs 5

Hosts are network namespaces on this machine (tests/lab) running the stand-in RKE2, so every
"node" shares the manager's CPUs: absolute times are far from a real cluster's, ratios less so.
Timing is reported, never asserted. Exit status 0, or 2 if the lab cannot be made here.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # tests.lab: the SSH test hosts and the stand-in RKE2

from fastapi.testclient import TestClient  # noqa: E402
from sqlalchemy import select  # noqa: E402

from rke2_manager.api.app import create_app  # noqa: E402
from rke2_manager.config import PACKAGE_DIR, Settings  # noqa: E402
from rke2_manager.db import Database  # noqa: E402
from rke2_manager.execution.ansible_service import (  # noqa: E402
    HostSpec,
    RunSpec,
    _envvars,
    build_inventory,
)
from rke2_manager.models import Cluster  # noqa: E402
from rke2_manager.vault import SecretBox  # noqa: E402
from tests.lab.fixtures import lab_unavailable  # noqa: E402
from tests.lab.hosts import Lab  # noqa: E402
from tests.lab.standin import build_artifact  # noqa: E402

SERVERS = ["m1", "m2", "m3"]
AGENTS = ["w1", "w2", "w3"]
PLAYBOOK = PACKAGE_DIR / "playbooks" / "install.yml"
VENV_BIN = Path(sys.executable).parent
# Both kinds of run: lab host keys change every time, keep them out of ~/.ssh/known_hosts.
NO_KNOWN_HOSTS = "-o UserKnownHostsFile=/dev/null"


@dataclass
class Direct:
    """What ``ansible-playbook`` needs to run the playbook as a job of this cluster would."""

    spec: RunSpec
    key: Path
    workdir: Path

    def run(self, tuned: bool = True) -> float:
        """Run the playbook once; return its wall time. Raises if it fails."""
        inventory = self.workdir / "inventory.json"
        inventory.write_text(json.dumps(build_inventory(self.spec)))
        extravars = self.workdir / "extravars.json"
        kubeconfig = self.workdir / "kubeconfig.yaml"
        extravars.write_text(
            json.dumps({**self.spec.extravars, "rke2m_kubeconfig_dest": str(kubeconfig)})
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
        if tuned:
            env.update(_envvars(self.spec))  # exactly what the service gives ansible-runner
            env["ANSIBLE_SSH_ARGS"] += f" {NO_KNOWN_HOSTS}"
        else:
            env.update(
                PATH=f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}",
                ANSIBLE_HOST_KEY_CHECKING="False",
                ANSIBLE_SSH_EXTRA_ARGS=NO_KNOWN_HOSTS,
                ANSIBLE_RETRY_FILES_ENABLED="False",
                **self.spec.secret_env,
            )
        cmd = [
            str(VENV_BIN / "ansible-playbook"),
            "-i",
            str(inventory),
            "-e",
            f"@{extravars}",
            "--private-key",
            str(self.key),
            str(self.spec.playbook),
        ]
        started = time.monotonic()
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
        took = time.monotonic() - started
        if proc.returncode != 0:
            raise RuntimeError(
                f"ansible-playbook failed ({proc.returncode}):\n{proc.stdout[-3000:]}"
            )
        return took


def run_spec(lab: Lab, artifact: Path, token: str) -> RunSpec:
    hosts = [HostSpec(h, lab.host(h).ip, "server", True, h == "m1") for h in SERVERS]
    hosts += [HostSpec(h, lab.host(h).ip, "agent", True) for h in AGENTS]
    return RunSpec(
        playbook=PLAYBOOK,
        hosts=hosts,
        extravars={
            "rke2m_cluster": "bench",
            "rke2m_operation": "install",
            "rke2_version": "",
            "rke2_channel": "stable",
            "rke2_artifact_dir": str(artifact),
            "rke2_config": {},
            "rke2_registration_address": lab.host("m1").ip,
            "rke2_supervisor_port": 9345,
        },
        secret_env={"RKE2M_CLUSTER_TOKEN": token},
    )


def job_run(client: TestClient, cluster_id: int) -> tuple[float, float]:
    """Run the install as a job; return (wall time seen by the client, job start to end)."""
    started = time.monotonic()
    r = client.post(f"/api/jobs/install/{cluster_id}")
    r.raise_for_status()
    job_id = r.json()["job_id"]
    while True:
        job: dict[str, Any] = client.get(f"/api/jobs/{job_id}").json()
        if job["status"] in ("succeeded", "failed", "canceled"):
            break
        time.sleep(0.05)
    wall = time.monotonic() - started
    if job["status"] != "succeeded":
        raise RuntimeError(f"job {job_id} {job['status']}: {job['reason']}")
    inner = (
        datetime.fromisoformat(job["finished_at"]) - datetime.fromisoformat(job["started_at"])
    ).total_seconds()
    return wall, inner


def job_versus_direct(artifact: Path, workdir: Path, runs: int) -> None:
    print(f"1. install.yml re-run on 1+2 servers and 3 agents, {runs} run(s) each")
    with Lab(SERVERS + AGENTS) as lab:
        settings = Settings(
            database_url=f"sqlite:///{workdir / 'bench.db'}",
            data_dir=workdir / "data",
            secret_key="bench",
            allowed_networks=[lab.subnet],
            playbook_dir=PACKAGE_DIR / "playbooks",
            worker_poll_interval=0.05,
            _env_file=None,
        )
        with TestClient(create_app(settings)) as client:
            body = {
                "name": "bench",
                "nodes": [{"hostname": h, "ip": lab.host(h).ip, "role": "server"} for h in SERVERS]
                + [{"hostname": h, "ip": lab.host(h).ip, "role": "agent"} for h in AGENTS],
                "ssh": {"private_key": lab.private_key},
                "rke2": {"artifact_dir": str(artifact)},
            }
            r = client.post("/api/clusters", json=body)
            r.raise_for_status()
            cluster_id = r.json()["id"]
            db = Database(settings.database_url)
            with db.read_session() as s:
                enc = s.scalars(select(Cluster.token_enc).where(Cluster.id == cluster_id)).one()
            db.dispose()
            token = SecretBox.from_settings(settings).decrypt(enc)
            direct = Direct(run_spec(lab, artifact, token), lab.key_path, workdir)

            first, _ = job_run(client, cluster_id)
            print(f"   first install (as a job):          {first:6.1f} s")
            walls, inners, directs = [], [], []
            for _ in range(runs):
                wall, inner = job_run(client, cluster_id)
                walls.append(wall)
                inners.append(inner)
                directs.append(direct.run())
    job, inner, plain = (statistics.median(x) for x in (walls, inners, directs))
    print(f"   as a job (POST to final status):   {job:6.1f} s   (job start to end {inner:.1f} s)")
    print(f"   ansible-playbook directly:         {plain:6.1f} s")
    print(f"   ratio job / direct:                {job / plain:6.2f}")


def tuned_versus_defaults(artifact: Path, workdir: Path) -> None:
    print("2. first install of 1+2 servers and 3 agents, by ansible-playbook, fresh hosts")
    for label, tuned in (("tuned (the service's settings)", True), ("Ansible defaults", False)):
        with Lab(SERVERS + AGENTS) as lab:
            direct = Direct(run_spec(lab, artifact, "bench-token"), lab.key_path, workdir)
            took = direct.run(tuned=tuned)
        print(f"   {label + ':':34} {took:6.1f} s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="runs of each kind in part 1")
    args = parser.parse_args()
    problem = lab_unavailable()
    if problem:
        print(f"cannot run: {problem}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="rke2m-bench-") as tmp:
        workdir = Path(tmp)
        artifact = build_artifact(workdir / "artifact")
        job_versus_direct(artifact, workdir, args.runs)
        tuned_versus_defaults(artifact, workdir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
