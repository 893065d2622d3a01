"""Helpers for end-to-end tests: drive the service's API and look at the lab hosts."""

from __future__ import annotations

import json
import re
import subprocess
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml
from fastapi.testclient import TestClient

from tests.lab import cluster as standin
from tests.lab.hosts import Lab

#: Extra vars for every e2e run (RKE2M_ANSIBLE_EXTRA_VARS): the stand-in is ready in about a
#: second, so the playbooks' bounds (minutes in production) come down to what a slow CI
#: machine still meets, and conditions are polled more often.
E2E_VARS: dict[str, Any] = {
    "rke2_start_timeout": 60,
    "rke2_ready_timeout": 60,
    "rke2_drain_timeout": 30,
    "rke2_remove_timeout": 30,
    "rke2_install_timeout": 60,
    "rke2_uninstall_timeout": 60,
    "rke2_poll_interval": 0.5,
    # A dead lab host is found out in 5 s rather than the service's 10 s.
    "ansible_ssh_timeout": 5,
}
FINAL = ("succeeded", "failed", "canceled")
UNIT_STATE = "/run/systemd/standin/rke2-{role}.service.json"


@dataclass
class Api:
    """The service's HTTP API as a user drives it."""

    client: TestClient
    artifact: Path

    def create_cluster(
        self, name: str, lab: Lab, nodes: list[tuple[str, str]], **extra: Any
    ) -> int:
        """A cluster of lab hosts ``[(hostname, role), ...]``; the first server is the master."""
        body = {
            **extra,
            "name": name,
            "nodes": [{"hostname": h, "ip": lab.host(h).ip, "role": r} for h, r in nodes],
            "ssh": {"private_key": lab.private_key},
            "rke2": {"artifact_dir": str(self.artifact), "config": {"cni": "canal"}},
        }
        r = self.client.post("/api/clusters", json=body)
        assert r.status_code == 201, r.text
        return int(r.json()["id"])

    def install(self, cluster_id: int) -> int:
        r = self.client.post(f"/api/jobs/install/{cluster_id}")
        assert r.status_code == 202, r.text
        return int(r.json()["job_id"])

    def add(self, cluster_id: int, lab: Lab, nodes: list[tuple[str, str]]) -> dict[str, Any]:
        body = {"nodes": [{"hostname": h, "ip": lab.host(h).ip, "role": r} for h, r in nodes]}
        r = self.client.post(f"/api/clusters/{cluster_id}/scale/add", json=body)
        assert r.status_code == 202, r.text
        return dict(r.json())

    def remove(self, cluster_id: int, names: list[str], confirm: bool = False) -> dict[str, Any]:
        r = self.client.post(
            f"/api/clusters/{cluster_id}/scale/remove",
            params={"confirm_master_removal": str(confirm).lower()},
            json={"nodes": [{"hostname": n} for n in names]},
        )
        assert r.status_code == 202, r.text
        return dict(r.json())

    def job(self, job_id: int) -> dict[str, Any]:
        return dict(self.client.get(f"/api/jobs/{job_id}").json())

    def wait(self, job_id: int, timeout: float = 120) -> dict[str, Any]:
        """The job once it has ended (AssertionError after timeout seconds)."""
        deadline = time.monotonic() + timeout
        while True:
            job = self.job(job_id)
            if job["status"] in FINAL:
                took = at(job["finished_at"]) - at(job["started_at"] or job["finished_at"])
                print(f"job {job_id} {job['operation']}: {job['status']} in {took:.1f}s")
                return job
            if time.monotonic() > deadline:
                raise AssertionError(f"job {job_id} still {job['status']} after {timeout}s")
            time.sleep(0.2)

    def succeed(self, job_id: int, timeout: float = 120) -> dict[str, Any]:
        job = self.wait(job_id, timeout)
        assert job["status"] == "succeeded", f"{job}\n{self.log(job_id)[-4000:]}"
        return job

    def cluster(self, cluster_id: int) -> dict[str, Any]:
        return dict(self.client.get(f"/api/clusters/{cluster_id}").json())

    def nodes(self, cluster_id: int) -> dict[str, tuple[str, str | None]]:
        """hostname -> (status, status_reason)."""
        return {
            n["hostname"]: (n["status"], n["status_reason"])
            for n in self.cluster(cluster_id)["nodes"]
        }

    def lock(self, cluster_id: int) -> tuple[str, int | None]:
        c = self.cluster(cluster_id)
        return c["operation_status"], c["current_job_id"]

    def log(self, job_id: int) -> str:
        r = self.client.get(f"/api/jobs/{job_id}/log", params={"limit": 10000})
        return "\n".join(line["text"] for line in r.json()["lines"])


def at(stamp: str) -> float:
    """An API timestamp as seconds since the epoch."""
    return datetime.fromisoformat(stamp).timestamp()


_RECAP = re.compile(r"^(\S+)\s+:\s+(.*)$")


def recap(log: str) -> dict[str, dict[str, int]]:
    """PLAY RECAP counts per host: ``{"m1": {"ok": 9, "changed": 0, ...}}``."""
    counts: dict[str, dict[str, int]] = {}
    lines = log.splitlines()
    start = max(i for i, line in enumerate(lines) if line.startswith("PLAY RECAP"))
    for line in lines[start + 1 :]:
        m = _RECAP.match(line.strip())
        if m:
            counts[m.group(1)] = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", m.group(2))}
    return counts


def host_config(lab: Lab, host: str) -> tuple[dict[str, Any], str]:
    """The host's /etc/rancher/rke2/config.yaml, parsed, and its mode and owner."""
    out = lab.run(
        host,
        "stat -c '%a %U' /etc/rancher/rke2/config.yaml && cat /etc/rancher/rke2/config.yaml",
        check=True,
    ).stdout
    first, _, body = out.partition("\n")
    return dict(yaml.safe_load(body)), first.strip()


def cluster_state(lab: Lab, server: str) -> dict[str, Any]:
    """The stand-in's replicated cluster state (nodes with their registration times)."""
    out = lab.run(server, f"cat {standin.STATE_FILE}", check=True).stdout
    return dict(json.loads(out))


def ready_since(lab: Lab, host: str, role: str) -> float:
    """When the host's rke2 unit last became active (ready), from the stand-in systemd."""
    out = lab.run(host, f"cat {UNIT_STATE.format(role=role)}", check=True).stdout
    return float(json.loads(out)["active_since"])


def uninstalled(lab: Lab, host: str) -> list[str]:
    """What RKE2 left on host (empty when rke2-uninstall.sh did its job)."""
    out = lab.run(
        host,
        "ls -d /usr/local/bin/rke2 /usr/local/bin/rke2-uninstall.sh /etc/rancher/rke2 "
        "/var/lib/rancher/rke2 /root/rke2-artifacts 2>/dev/null; pgrep -x rke2; "
        "systemctl is-active rke2-server rke2-agent",
    ).stdout.split()
    return [w for w in out if w != "inactive"]


def host_public_key(lab: Lab, host: str) -> str:
    """The host's SSH host key as the service pins it: ``<type> <base64>``."""
    text = (lab.host(host).dir / "ssh_host_ed25519_key.pub").read_text()
    kind, blob = text.split()[:2]
    return f"{kind} {blob}"


def host_fingerprint(lab: Lab, host: str) -> str:
    """``SHA256:…`` of the host's SSH host key, as ssh prints it."""
    path = lab.host(host).dir / "ssh_host_ed25519_key.pub"
    out = subprocess.run(
        ["ssh-keygen", "-l", "-E", "sha256", "-f", str(path)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return out.split()[1]


def replace_host_key(lab: Lab, host: str) -> None:
    """Give the host a new SSH host key, as a reinstall would: its sshd restarts with it and
    open SSH sessions end (so no shared connection outlives the old key)."""
    lab.stop_sshd(host)
    ps = lab.nsexec(host, ["ps", "-eo", "pid=,comm="]).stdout
    sessions = [line.split()[0] for line in ps.splitlines() if line.split()[1:] == ["sshd"]]
    if sessions:
        lab.nsexec(host, ["kill", *sessions])
    key = lab.host(host).dir / "ssh_host_ed25519_key"
    key.unlink()
    key.with_suffix(".pub").unlink()
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"root@{host}", "-f", str(key)],
        check=True,
        capture_output=True,
    )
    lab.start_sshd(host)
