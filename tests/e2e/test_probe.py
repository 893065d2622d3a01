"""G1's probe against a real socket: the initial master's supervisor (9345) on a lab host."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from rke2_manager.api.app import create_app
from rke2_manager.config import Settings
from rke2_manager.db import Database
from tests.conftest import LOOPBACK
from tests.e2e.support import Api
from tests.lab import cluster as standin
from tests.lab.hosts import Lab
from tests.lab.ssh import wait_port

pytestmark = pytest.mark.lab


def test_probe_refuses_or_warns_when_the_supervisor_is_down(
    settings: Settings, db: Database, make_lab: Callable[[list[str]], Lab], rke2_artifact: Path
) -> None:
    lab = make_lab(["m1", "w1"])
    m1 = lab.host("m1").ip
    app = create_app(settings, run_migrations=False)  # the real prober
    # as the shared client fixture: a loopback client, served as the local admin
    with TestClient(app, base_url="http://localhost", client=LOOPBACK) as client:
        api = Api(client, rke2_artifact)
        cid = api.create_cluster("probe", lab, [("m1", "server")])
        api.succeed(api.install(cid))
        assert wait_port(m1, 9345, 5)

        lab.run("m1", "systemctl stop rke2-server", check=True)
        assert wait_port(m1, 9345, 10, open=False)
        problem = f"Initial master 'm1' supervisor at {m1}:9345 did not answer (Connection refused)"
        add = {"nodes": [{"hostname": "w1", "ip": lab.host("w1").ip, "role": "agent"}]}

        settings.probe_policy = "enforce"
        r = client.post(f"/api/clusters/{cid}/scale/add", json=add)
        assert (r.status_code, r.json()["detail"]) == (400, f"{problem}. Cannot add nodes.")
        assert set(api.nodes(cid)) == {"m1"} and api.lock(cid) == ("idle", None)

        settings.probe_policy = "warn"
        body = api.add(cid, lab, [("w1", "agent")])
        assert body["warnings"] == [f"{problem}; continuing because the probe policy is 'warn'."]
        # the supervisor comes back while the job runs: the agent joins
        lab.run("m1", "systemctl start rke2-server", check=True)
        api.succeed(body["job_id"])
        assert standin.node_status(lab, "m1") == {"m1": "Ready", "w1": "Ready"}
