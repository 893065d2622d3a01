"""The seed's curl commands (SPEC §9), sent with curl to a running service, against lab hosts."""

from __future__ import annotations

import ipaddress
import json
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import uvicorn

from rke2_manager.api.app import create_app
from rke2_manager.config import Settings
from rke2_manager.db import Database
from tests.e2e.support import FINAL, uninstalled
from tests.lab import cluster as standin
from tests.lab.hosts import Lab

pytestmark = pytest.mark.lab


@pytest.fixture
def base_url(settings: Settings, db: Database) -> Iterator[str]:
    """The service (API and worker, real G1 probe) listening on a loopback port."""
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(settings, run_migrations=False),
            host="127.0.0.1",
            port=0,
            log_level="warning",
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the service did not start"
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=30)


def curl(*args: str) -> tuple[int, Any]:
    """Run curl as the seed does (plus: quiet, print the status, no proxy); (status, JSON)."""
    out = subprocess.run(
        ["curl", "-s", "--noproxy", "*", "-w", "\n%{http_code}", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    body, _, code = out.rpartition("\n")
    return int(code), json.loads(body) if body else None


def wait_job(url: str, job_id: int, timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        _, job = curl(f"{url}/api/jobs/{job_id}")
        if job["status"] in FINAL:
            return dict(job)
        assert time.monotonic() < deadline, f"job {job_id} still {job['status']}"
        time.sleep(0.2)


def test_seed_commands_against_lab_clusters(
    base_url: str, make_lab: Callable[[list[str]], Lab], rke2_artifact: Any
) -> None:
    url = base_url
    lab = make_lab(["m1", "n1", "m2", "n3"])
    spare = [str(ipaddress.ip_network(lab.subnet)[200 + i]) for i in range(2)]

    def create(name: str, hosts: list[str]) -> int:
        body = {
            "name": name,
            "nodes": [{"hostname": h, "ip": lab.host(h).ip, "role": "server"} for h in hosts],
            "ssh": {"private_key": lab.private_key},
            "rke2": {"artifact_dir": str(rke2_artifact)},
        }
        code, cluster = curl("-X", "POST", f"{url}/api/clusters", "-d", json.dumps(body))
        assert code == 201, cluster
        return int(cluster["id"])

    assert create("one", ["m1"]) == 1
    assert create("two", ["n1", "m2", "n3"]) == 2
    code, body = curl("-X", "POST", f"{url}/api/jobs/install/2")  # cluster 2, for the last step
    assert code == 202, body
    install_2 = body["job_id"]
    # m1 takes a few seconds to become ready: the install is in flight for a while
    lab.run("m1", "echo RKE2_STANDIN_READY_DELAY=6 > /etc/default/rke2-server", check=True)

    # initial master not active yet (a fresh cluster: m1 PENDING): 400
    code, body = curl(
        "-X",
        "POST",
        f"{url}/api/clusters/1/scale/add",
        "-d",
        json.dumps({"nodes": [{"hostname": "w1", "ip": spare[0], "role": "agent"}]}),
    )
    assert (code, body["detail"]) == (
        400,
        "Initial master 'm1' is not active (status: PENDING). Cannot add nodes.",
    )

    # start an install
    code, body = curl("-X", "POST", f"{url}/api/jobs/install/1")
    assert code == 202, body
    install_1 = body["job_id"]
    # while it runs — rke2-server on m1 is starting — add a node: 409
    deadline = time.monotonic() + 60
    while lab.run("m1", "systemctl is-active rke2-server").stdout.strip() != "activating":
        assert time.monotonic() < deadline, "the install never started rke2-server on m1"
        time.sleep(0.2)
    code, body = curl(
        "-X",
        "POST",
        f"{url}/api/clusters/1/scale/add",
        "-d",
        json.dumps({"nodes": [{"hostname": "w2", "ip": spare[1], "role": "agent"}]}),
    )
    assert (code, body["detail"]) == (
        409,
        f"Cluster is busy with operation 'install' (job {install_1}). Please wait.",
    )
    assert body["job_id"] == install_1
    _, cluster = curl(f"{url}/api/clusters/1")
    assert [n["hostname"] for n in cluster["nodes"]] == ["m1"]
    assert cluster["nodes"][0]["status"] == "INSTALLING"
    assert wait_job(url, install_1)["status"] == "succeeded"

    # remove the last master: 400
    code, body = curl(
        "-X",
        "POST",
        f"{url}/api/clusters/1/scale/remove",
        "-d",
        json.dumps({"nodes": [{"hostname": "m1", "ip": lab.host("m1").ip, "role": "server"}]}),
    )
    assert (code, body["detail"]) == (
        400,
        "Cannot remove all control-plane nodes. At least 1 required.",
    )
    assert standin.node_status(lab, "m1") == {"m1": "Ready"}

    # with confirmation: succeeds (cluster 2, three healthy servers)
    assert wait_job(url, install_2)["status"] == "succeeded"
    code, body = curl(
        "-X",
        "POST",
        f"{url}/api/clusters/2/scale/remove?confirm_master_removal=true",
        "-d",
        json.dumps({"nodes": [{"hostname": "m2", "ip": lab.host("m2").ip, "role": "server"}]}),
    )
    assert code == 202, body
    job = wait_job(url, body["job_id"])
    assert job["status"] == "succeeded", job
    _, cluster = curl(f"{url}/api/clusters/2")
    assert sorted(n["hostname"] for n in cluster["nodes"]) == ["n1", "n3"]
    assert uninstalled(lab, "m2") == []
    assert set(standin.etcd_members(lab, "n1")) == {"n1", "n3"}
    assert cluster["operation_status"] == "idle"
