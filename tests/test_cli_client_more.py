"""The client's event reader (resume after a dropped stream) and apply's settings and node
fixes, against a real server (uvicorn on loopback, its worker running local playbooks)."""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from rich.console import Console
from sqlalchemy import select
from typer.testing import CliRunner

from rke2_manager.api.app import create_app
from rke2_manager.cli import app as cli
from rke2_manager.client.api import Api
from rke2_manager.client.config import Target
from rke2_manager.client.events import Event, follow, parse
from rke2_manager.client.progress import watch
from rke2_manager.config import Settings
from rke2_manager.db import Database
from rke2_manager.models import Cluster, Job, Node, Snapshot, SnapshotList
from tests.factories import PLAY_HEADER, FakeProber, write_playbooks
from tests.live import live_server
from tests.test_cli_client import CLUSTER

pytestmark = pytest.mark.usefixtures("no_client_config")


@pytest.fixture
def no_client_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("RKE2M_URL", "RKE2M_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("RKE2M_CLIENT_CONFIG", str(tmp_path / "no-such-config.yaml"))


@pytest.fixture
def url(settings: Settings, db: Database, prober: FakeProber) -> Iterator[str]:
    app = create_app(settings, prober=prober, run_migrations=False, start_worker=True)
    with live_server(app) as base:
        yield base


def run(*args: str) -> Any:
    result = CliRunner().invoke(cli, list(args))
    assert "Traceback" not in result.output, result.output
    return result


class Dropping(httpx.BaseTransport):
    """Passes requests on, but cuts the first event stream after ``keep`` events, as a
    proxy timeout or an API restart would; records each stream request's Last-Event-ID."""

    def __init__(self, keep: int) -> None:
        self.real, self.keep, self.asked = httpx.HTTPTransport(), keep, list[str]()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.real.handle_request(request)
        if not request.url.path.endswith("/events"):
            return response
        self.asked.append(request.headers["last-event-id"])
        body = response.read().decode()
        if len(self.asked) == 1:
            body = "\n\n".join(body.split("\n\n")[: self.keep + 2]) + "\n\n"  # retry + job
        return httpx.Response(response.status_code, headers=response.headers, content=body)


def test_the_reader_resumes_a_dropped_stream_without_loss_or_repeats(
    url: str, tmp_path: Path
) -> None:
    file = tmp_path / "cluster.yaml"
    file.write_text(CLUSTER)
    assert run("apply", "-f", str(file), "-y", "--url", url).exit_code == 0
    with Api(Target(url, None)) as api:
        whole = [e for e in follow(api, 1) if e.id is not None]
    assert [e.id for e in whole] == list(range(1, len(whole) + 1))
    dropping = Dropping(keep=7)
    with Api(Target(url, None), transport=dropping) as api:
        resumed = [e for e in follow(api, 1) if e.id is not None]
    assert dropping.asked == ["0", "7"]
    assert resumed == whole


def test_parse_skips_comments_and_joins_data_lines() -> None:
    lines = [
        "retry: 2000",
        "",
        ": keep-alive",
        "id: 3",
        "event: log",
        'data: {"text":',
        'data: "x"}',
        "",
        ":another comment",
        "event: job",
        'data: {"status": "running"}',
        "",
    ]
    assert list(parse(lines)) == [
        Event("log", {"text": "x"}, 3),
        Event("job", {"status": "running"}, None),
    ]


def test_apply_updates_settings_and_fixes_a_pending_nodes_ip(
    url: str, db: Database, tmp_path: Path
) -> None:
    file = tmp_path / "cluster.yaml"
    file.write_text(CLUSTER.replace("127.0.10.2", "127.0.10.99"))
    assert run("cluster", "create", "-f", str(file), "--url", url).exit_code == 0
    file.write_text(CLUSTER + "rke2: {config: {cni: calico}}\nregistration_address: m1\n")
    applied = run("apply", "-f", str(file), "-y", "--url", url)
    assert applied.exit_code == 0, applied.output
    lines = applied.output.splitlines()
    assert lines[:4] == [
        "Plan for cluster demo:",
        "1. change PENDING node w1's IP 127.0.10.99 -> 127.0.10.2",
        "2. update settings: registration_address, rke2",
        "3. install m1 (server, 127.0.10.1), w1 (agent, 127.0.10.99)",
    ]
    with db.read_session() as s:
        cluster = s.scalars(select(Cluster)).one()
        assert (cluster.rke2_config, cluster.registration_address) == ({"cni": "calico"}, "m1")
        assert {n.hostname: n.ip for n in s.scalars(select(Node))} == {
            "m1": "127.0.10.1",
            "w1": "127.0.10.2",
        }
        assert [j.operation for j in s.scalars(select(Job))] == ["install"]
    # an installed node's IP cannot be changed by apply: it says how, and changes nothing
    file.write_text(CLUSTER.replace("127.0.10.2", "127.0.10.98"))
    blocked = run("apply", "-f", str(file), "-y", "--url", url)
    assert blocked.exit_code == 2
    assert blocked.output == (
        "rke2-manager: node w1 is a ACTIVE agent at 127.0.10.2; the file says agent at "
        "127.0.10.98: take it out of the file and apply with --allow-remove, then add it back\n"
    )


def test_apply_stops_before_anything_when_the_first_step_is_refused(
    url: str, db: Database, tmp_path: Path
) -> None:
    file = tmp_path / "cluster.yaml"
    file.write_text(CLUSTER)
    assert run("apply", "-f", str(file), "-y", "--url", url).exit_code == 0
    with db.transaction() as s:  # a node the file does not name holds the IP a new one wants
        cluster = s.scalars(select(Cluster)).one()
        s.add(Node(cluster_id=cluster.id, hostname="x9", ip="127.0.10.7", role="agent"))
    file.write_text(CLUSTER + "  - {hostname: w2, ip: 127.0.10.7, role: agent}\n")
    refused = run("apply", "-f", str(file), "-y", "--url", url)
    assert refused.exit_code == 3, refused.output
    assert refused.output == (
        "rke2-manager: add w2 (agent, 127.0.10.7): refused: Node with IP '127.0.10.7' already "
        "exists in cluster\n"
    )
    with db.read_session() as s:
        assert [j.operation for j in s.scalars(select(Job))] == ["install"]
        assert {n.hostname for n in s.scalars(select(Node))} == {"m1", "w1", "x9"}


def test_apply_again_after_a_failed_install_converges(
    url: str, db: Database, tmp_path: Path, playbook_dir: Path
) -> None:
    file = tmp_path / "cluster.yaml"
    file.write_text(CLUSTER)
    write_playbooks(playbook_dir, mode="fail_one")
    assert run("apply", "-f", str(file), "-y", "--url", url).exit_code == 1
    write_playbooks(playbook_dir, mode="ok")  # the cause fixed
    again = run("apply", "-f", str(file), "-y", "--url", url)
    assert again.exit_code == 0, again.output
    assert again.output.splitlines()[:2] == [
        "Plan for cluster demo:",
        "1. install m1 (server, 127.0.10.1), w1 (agent, 127.0.10.2)",
    ]
    with db.read_session() as s:
        assert {n.hostname: n.status for n in s.scalars(select(Node))} == {
            "m1": "ACTIVE",
            "w1": "ACTIVE",
        }


def test_the_terminal_view_is_a_table_of_nodes(url: str, tmp_path: Path) -> None:
    file = tmp_path / "cluster.yaml"
    file.write_text(CLUSTER)
    assert run("apply", "-f", str(file), "-y", "--url", url).exit_code == 0
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=120, color_system=None)
    with Api(Target(url, None)) as api:
        view = watch(api, 1, console)
    assert (view.status, view.reason) == ("succeeded", None)
    assert {h: (r.status, r.last, r.result) for h, r in view.hosts.items()} == {
        "m1": ("ACTIVE", "[rke2m] node ready", "ok"),
        "w1": ("ACTIVE", "[rke2m] node ready", "ok"),
    }
    last = screen.getvalue().split("job 1 install — succeeded")[-1]
    assert "│ m1   │ ACTIVE │" in last and "│ 1/1/0 " in last


def test_an_unexpected_answer_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    """Something that is not rke2-manager answers on the URL: exit 70, one line."""

    class NotTheApi(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b'[{"unexpected": true}]'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), NotTheApi)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        result = run("cluster", "list", "--url", f"http://127.0.0.1:{server.server_port}")
    finally:
        server.shutdown()
        thread.join(10)
    assert result.exit_code == 70
    assert result.output == "rke2-manager: internal error: KeyError: 'nodes'\n"


def test_node_edit_and_forget_of_pending_nodes(
    url: str, db: Database, tmp_path: Path, playbook_dir: Path
) -> None:
    (playbook_dir / "forget_node.yml").write_text(
        PLAY_HEADER
        + '    - name: "[rke2m] node removed"\n      ansible.builtin.debug: {msg: gone}\n'
    )
    file = tmp_path / "cluster.yaml"
    file.write_text(CLUSTER)
    assert run("cluster", "create", "-f", str(file), "--url", url).exit_code == 0
    edited = run("node", "edit", "demo", "w1", "--ip", "127.0.10.5", "--url", url)
    assert (edited.exit_code, edited.output) == (0, "node w1: 127.0.10.5 (agent, PENDING)\n")
    forgotten = run("node", "forget", "demo", "w1", "--yes", "--url", url)
    assert forgotten.exit_code == 0, forgotten.output
    assert forgotten.output.splitlines()[-1] == "job 1 succeeded"
    with db.read_session() as s:
        assert [n.hostname for n in s.scalars(select(Node))] == ["m1"]
    gone = run("node", "forget", "demo", "w1", "--yes", "--url", url)
    assert (gone.exit_code, gone.output) == (
        5,
        "rke2-manager: Node 'w1' not found in cluster 'demo'\n",
    )


def test_snapshot_list_shows_each_servers_snapshots_and_when_they_were_listed(
    url: str, db: Database, tmp_path: Path
) -> None:
    file = tmp_path / "cluster.yaml"
    file.write_text(CLUSTER)
    assert run("cluster", "create", "-f", str(file), "--url", url).exit_code == 0
    with db.transaction() as s:
        m1 = s.scalars(select(Node).where(Node.hostname == "m1")).one()
        m1.status = "ACTIVE"
        s.add(SnapshotList(cluster_id=m1.cluster_id, node_id=m1.id, job_id=None))
        s.add(
            Snapshot(
                cluster_id=m1.cluster_id,
                node_id=m1.id,
                name="before-m1-1764680000",
                location="file:///var/lib/rancher/rke2/server/db/snapshots/before-m1-1764680000",
                size=5238816,
            )
        )
    listed = run("snapshot", "list", "demo", "--url", url)
    assert listed.exit_code == 0, listed.output
    assert "before-m1-1764680000" in listed.output and "5238816" in listed.output
    assert listed.output.splitlines()[-1].startswith("m1: listed 20")
    as_json = run("snapshot", "list", "demo", "-o", "json", "--url", url)
    assert as_json.exit_code == 0
    assert '"before-m1-1764680000"' in as_json.output
