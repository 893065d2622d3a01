"""Ansible overhead benchmark: what a job adds around ansible-playbook, what the tuning buys.

1. The same playbook on the same lab hosts, run as a job of the service and by
   ``ansible-playbook`` directly: the shipped ``install.yml`` re-run on an installed cluster
   (1 + 2 servers, 3 agents), so every run does the same work. Runs alternate, ``--runs`` of
   each; the job is timed from its ``POST /api/jobs/install/{id}`` to its end as the API shows
   it (worker pickup, ansible-runner, event handling and log writes included), the direct run
   as the ``ansible-playbook`` process given exactly what the service gave ansible-runner for
   the job just before it: the job's own ``RunSpec`` (caught on its way to ``run_playbook``)
   written by ``run_inputs.write_run_inputs`` (inventory, ``env/extravars`` with the cluster
   token, the pinned host keys as a known_hosts file of the direct run's own), and the
   environment ``ansible_service`` builds (``ssh_env``: the cluster's ControlPath, so both kinds
   of run share connections, as two jobs of the cluster do). The key goes as ``--private-key``
   where ansible-runner hands it to ``ssh-agent``. Prints both medians and their ratio.
2. A first install of 1 + 2 servers and 3 agents on fresh lab hosts, by ``ansible-playbook``,
   with the same inputs (no host key pinned yet: ``accept-new`` into the run's own known_hosts,
   as a service's first install) and with the service's tuned Ansible settings (pipelining,
   ControlPersist, forks = node count, quiet interpreter discovery) or Ansible's defaults
   (no pipelining, 5 forks; only known_hosts pointed at the run's own file).

    sudo .venv/bin/python bench/ansible_overhead.py            # root: the lab needs it
    sudo .venv/bin/python bench/ansible_overhead.py --runs 5

Hosts are network namespaces on this machine (tests/lab) running the stand-in RKE2, so every
"node" shares the manager's CPUs: absolute times are far from a real cluster's, ratios less so.
Lab host keys are fresh every lab: nothing is written to ``~/.ssh/known_hosts``.
Timing is reported, never asserted. Exit status 0, or 2 if the lab cannot be made here.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # tests.lab: the SSH test hosts and the stand-in RKE2

from fastapi.testclient import TestClient  # noqa: E402

from rke2_manager.api.app import create_app  # noqa: E402
from rke2_manager.config import PACKAGE_DIR, Settings  # noqa: E402
from rke2_manager.execution.ansible_service import (  # noqa: E402
    HostSpec,
    RunOutcome,
    RunSpec,
    _envvars,
)
from rke2_manager.execution.run_inputs import write_run_inputs  # noqa: E402
from rke2_manager.jobs.runner import run as jobrun  # noqa: E402
from tests.lab.fixtures import lab_unavailable  # noqa: E402
from tests.lab.hosts import Lab  # noqa: E402
from tests.lab.standin import build_artifact  # noqa: E402

SERVERS = ["m1", "m2", "m3"]
AGENTS = ["w1", "w2", "w3"]
PLAYBOOK = PACKAGE_DIR / "playbooks" / "install.yml"
VENV_BIN = Path(sys.executable).parent
LOOPBACK = ("127.0.0.1", 50000)  # the local admin of protected mode (no API token exists)


@dataclass
class Direct:
    """``ansible-playbook`` given what the service gives ansible-runner for ``spec``."""

    key: Path
    workdir: Path

    def run(self, spec: RunSpec, tuned: bool = True) -> float:
        """Run ``spec.playbook`` once; return its wall time. Raises if it fails."""
        runs = self.workdir / "direct-runs"
        runs.mkdir(mode=0o700, exist_ok=True)
        private_dir = Path(tempfile.mkdtemp(prefix="direct-", dir=runs))
        try:
            # the same function, arguments and files as ansible_service.run_playbook
            known_hosts = write_run_inputs(
                private_dir,
                spec.hosts,
                {**spec.extravars, "rke2m_kubeconfig_dest": str(private_dir / "kubeconfig.yaml")},
                ssh_user=spec.ssh_user,
                ssh_port=spec.ssh_port,
                host_key_checking=spec.host_key_checking,
            )
            env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
            if tuned:
                env.update(_envvars(spec, known_hosts))  # exactly what ansible-runner gets
            else:
                env.update(
                    PATH=f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}",
                    ANSIBLE_RETRY_FILES_ENABLED="False",
                    # the run's own known_hosts (lab keys are fresh each lab), checked as the
                    # inventory says: Ansible's default ssh_args stay in place
                    ANSIBLE_SSH_EXTRA_ARGS=f"-o UserKnownHostsFile={known_hosts}",
                )
            cmd = [
                str(VENV_BIN / "ansible-playbook"),
                "-i",
                str(private_dir / "inventory" / "hosts.yml"),
                "-e",
                f"@{private_dir / 'env' / 'extravars'}",
                "--private-key",
                str(self.key),
                str(spec.playbook.resolve()),
            ]
            started = time.monotonic()
            proc = subprocess.run(
                cmd, env=env, cwd=private_dir, capture_output=True, text=True, timeout=900
            )
            took = time.monotonic() - started
        finally:
            shutil.rmtree(private_dir, ignore_errors=True)
        if proc.returncode != 0:
            raise RuntimeError(
                f"ansible-playbook failed ({proc.returncode}):\n{proc.stdout[-3000:]}"
                f"\n{proc.stderr[-2000:]}"
            )
        return took


def fresh_spec(lab: Lab, artifact: Path, token: str) -> RunSpec:
    """What the service would build for the first install of this lab's cluster (jobrun)."""
    hosts = [HostSpec(h, lab.host(h).ip, "server", True, h == "m1") for h in SERVERS]
    hosts += [HostSpec(h, lab.host(h).ip, "agent", True) for h in AGENTS]
    return RunSpec(
        playbook=PLAYBOOK,
        hosts=hosts,
        cluster_id=1,
        ssh_key=lab.private_key,
        host_key_checking=True,  # nothing pinned yet: accept-new into the run's known_hosts
        extravars={
            "rke2m_cluster": "bench",
            "rke2m_operation": "install",
            "rke2_version": "",
            "rke2_channel": "stable",
            "rke2_artifact_dir": str(artifact.resolve()),
            "rke2_config": {},
            "rke2_config_secrets": {},
            "rke2_registration_address": lab.host("m1").ip,
            "rke2_fixed_registration_address": "",
            "rke2_supervisor_port": 9345,
            "rke2m_token": token,
        },
        secret_values=[token],
    )


@contextmanager
def catching_specs() -> Iterator[list[RunSpec]]:
    """Note every RunSpec the worker hands to ``run_playbook`` (looked up in jobrun at call
    time), then run it as usual."""
    specs: list[RunSpec] = []
    real: Callable[..., RunOutcome] = jobrun.run_playbook

    def run_playbook(spec: RunSpec, *args: Any, **kwargs: Any) -> RunOutcome:
        specs.append(spec)
        return real(spec, *args, **kwargs)

    vars(jobrun)["run_playbook"] = run_playbook
    try:
        yield specs
    finally:
        vars(jobrun)["run_playbook"] = real


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
            artifact_root=artifact.parent,  # rke2.artifact_dir must lie under it
            worker_poll_interval=0.05,
            _env_file=None,
        )
        app = create_app(settings)
        with (
            catching_specs() as specs,
            TestClient(app, base_url="http://localhost", client=LOOPBACK) as client,
        ):
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
            direct = Direct(lab.key_path, workdir)

            first, _ = job_run(client, cluster_id)
            print(f"   first install (as a job):          {first:6.1f} s")
            walls, inners, directs = [], [], []
            for _ in range(runs):
                wall, inner = job_run(client, cluster_id)
                walls.append(wall)
                inners.append(inner)
                spec = specs[-1]  # the job's: every host key pinned by the first install
                if not all(h.host_key for h in spec.hosts):
                    raise RuntimeError("the first install pinned no host key for some node")
                directs.append(direct.run(spec))
    job, inner, plain = (statistics.median(x) for x in (walls, inners, directs))
    print(f"   as a job (POST to final status):   {job:6.1f} s   (job start to end {inner:.1f} s)")
    print(f"   ansible-playbook directly:         {plain:6.1f} s")
    print(f"   ratio job / direct:                {job / plain:6.2f}")


def tuned_versus_defaults(artifact: Path, workdir: Path) -> None:
    print("2. first install of 1+2 servers and 3 agents, by ansible-playbook, fresh hosts")
    for label, tuned in (("tuned (the service's settings)", True), ("Ansible defaults", False)):
        with Lab(SERVERS + AGENTS) as lab:
            direct = Direct(lab.key_path, workdir)
            took = direct.run(fresh_spec(lab, artifact, "bench-token"), tuned=tuned)
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
        artifact = build_artifact(workdir / "artifacts" / "rke2")
        job_versus_direct(artifact, workdir, args.runs)
        tuned_versus_defaults(artifact, workdir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
