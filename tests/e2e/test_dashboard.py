"""The dashboard in a real headless Chromium (Debian's, driven by Playwright), against the real
service installing on lab hosts: log in, create a cluster, start the install, see the 409 of a
second operation, watch the progress grid move, cancel; server removal's confirmation; the API
docs pages loading nothing from off the host. Screenshots go to test-artifacts/dashboard/."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from rke2_manager.api.app import create_app
from rke2_manager.config import Settings
from rke2_manager.db import Database
from rke2_manager.models import ApiRole, ApiToken, Cluster, Job
from rke2_manager.tokens.service import create_token, hash_token
from tests.factories import FakeProber, make_cluster
from tests.lab.hosts import Lab
from tests.live import live_server

pytestmark = pytest.mark.lab

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "dashboard"
WAIT_MS = 120_000


@pytest.fixture
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: `apt-get install chromium` (scripts/test does)")
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def service(settings: Settings, db: Database, prober: FakeProber) -> Iterator[str]:
    """The whole service (API, dashboard, job worker) on a loopback port."""
    app = create_app(settings, prober=prober, run_migrations=False, start_worker=True)
    with live_server(app) as url:
        yield url


def shot(page: Page, name: str, full_page: bool = True) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=full_page)


def off_host(urls: list[str], origin: str) -> list[str]:
    """The URLs of ``urls`` that leave ``origin`` (data: and this origin's blob: stay)."""
    return [
        u
        for u in urls
        if not (u.startswith(origin + "/") or u.startswith("data:") or u == origin)
        and not u.startswith(f"blob:{origin}/")
    ]


def row_state(page: Page, host: str) -> tuple[str, str, str]:
    row = page.locator(f'#progress tr[data-host="{host}"]')
    return (
        row.locator("td.status").inner_text().strip(),
        row.locator("td.task").inner_text().strip(),
        row.locator("td.last").inner_text().strip(),
    )


def test_operator_drives_an_install_from_the_dashboard(
    browser: Browser,
    service: str,
    make_lab: Callable[[list[str]], Lab],
    rke2_artifact: Path,
    db: Database,
) -> None:
    lab = make_lab(["m1", "w1"])
    # m1 takes 30 s to become ready: the install is still running when it is canceled
    lab.run("m1", "echo RKE2_STANDIN_READY_DELAY=30 > /etc/default/rke2-server", check=True)
    with db.transaction() as s:
        token = create_token(s, "ops-alice", ApiRole.ADMIN, "test")[1]
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.set_default_timeout(WAIT_MS)

    # a token exists: the dashboard asks for it, then keeps it in its session cookie
    page.goto(f"{service}/ui/clusters/new")
    assert urlsplit(page.url).path == "/ui/login"
    page.fill("#token", token)
    page.click("#login-form button[type=submit]")
    page.wait_for_url(f"{service}/ui/clusters/new")
    assert page.inner_text("#who") == "ops-alice (admin)"
    assert token not in page.url
    cookies = {c["name"]: c for c in page.context.cookies()}
    assert cookies["rke2m_token"]["httpOnly"] is True
    assert cookies["rke2m_token"]["sameSite"] == "Strict"

    page.fill("#c-name", "lab")
    page.fill("#c-nodes", f"m1 {lab.host('m1').ip} server\nw1 {lab.host('w1').ip} agent")
    page.fill("#c-key", lab.private_key)
    page.fill("#c-artifacts", str(rke2_artifact))
    page.fill("#c-config", '{"cni": "canal"}')
    page.click("#create-form button[type=submit]")
    page.wait_for_url(re.compile(r".*/ui/clusters/\d+$"))
    cluster_id = int(page.url.rsplit("/", 1)[1])
    assert page.inner_text("#stage") == "new"
    shot(page, "1-cluster-created")

    page.click("#install-form button[type=submit]")
    started = page.locator("#install-form .result p.ok")
    started.wait_for()
    with db.read_session() as s:
        job = s.query(Job).filter_by(cluster_id=cluster_id).one()
        job_id = job.id
    assert started.inner_text() == f"install: job {job_id} running."

    # a second operation while the install holds the lock: the API's 409, inline
    page.fill("#add-nodes", f"w2 {lab.host('w1').ip.rsplit('.', 1)[0]}.250 agent")
    page.click("#add-form button[type=submit]")
    refused = page.locator("#add-form .result p.problem")
    refused.wait_for()
    assert refused.inner_text() == (
        f"Cluster is busy with operation 'install' (job {job_id}). Please wait."
    )
    assert refused.get_attribute("data-status") == "409"
    expect(page.locator("#lock")).to_contain_text("install", timeout=10_000)
    shot(page, "2-install-running-409")

    # the job page: the per-host grid follows the run
    page.click(f"#install-form .result a[href='/ui/jobs/{job_id}']")
    page.wait_for_url(f"{service}/ui/jobs/{job_id}")
    states: list[tuple[str, str, str]] = []
    deadline = time.monotonic() + WAIT_MS / 1000
    while True:
        state = row_state(page, "m1")
        if not states or states[-1] != state:
            states.append(state)
        if state[0] == "INSTALLING" and "rke2-server" in state[1] and len(states) >= 3:
            break
        assert time.monotonic() < deadline, f"the grid did not follow the run: {states}"
        time.sleep(0.2)
    assert page.inner_text("#job-status") == "running"
    # it follows the live event stream: per-host ok / changed / failed counts from task ends
    assert page.inner_text("#log-state") == "Following the job's live events…"
    counts = page.inner_text('#progress tr[data-host="m1"] td.counts')
    ok, changed, failed = (int(n) for n in counts.split(" / "))
    assert ok + changed >= 2 and failed == 0, counts
    assert page.locator("#log").inner_text().count("TASK [") >= 2
    shot(page, "3-progress-grid")

    page.click("#cancel-job")
    expect(page.locator("#job-status")).to_have_text("canceled", timeout=WAIT_MS)
    page.locator("#cancel-job").wait_for(state="hidden")
    expect(page.locator('#progress tr[data-host="m1"] td.task')).to_have_text("")
    # the install ran its preflight checks first: their results, per host (stored at its end)
    checks = page.locator('#preflight-table tbody tr[data-host="m1"]')
    expect(checks.first).to_be_visible(timeout=30_000)
    assert checks.count() >= 10
    ssh = page.locator('#preflight-table tr[data-host="m1"][data-check="ssh"] td')
    assert ssh.all_inner_texts()[2:4] == ["pass", "connected as root"]
    shot(page, "4-canceled")
    with db.read_session() as s:
        job = s.get(Job, job_id)
        cluster = s.get(Cluster, cluster_id)
        assert job is not None and cluster is not None
        assert job.status == "canceled"
        assert cluster.operation_status == "idle" and cluster.current_job_id is None
    assert "canceled" in page.inner_text("#job-reason")
    print(f"grid states seen for m1: {states}")

    # removing a server needs the explicit confirmation; without it the API refuses, inline
    other = make_cluster(
        db,
        "three",
        [(f"m{i}", f"127.0.20.{i}", "server", "ACTIVE") for i in (1, 2, 3)],
    )
    page.goto(f"{service}/ui/clusters/{other}")
    confirm = page.locator("#remove-form .confirm")
    assert confirm.is_hidden()
    page.check("#remove-form input[name=node][value=m3]")
    assert confirm.is_visible()
    assert page.inner_text("#remove-form .confirm .servers") == "m3"
    page.click("#remove-form button[type=submit]")
    problem = page.locator("#remove-form .result p.problem")
    problem.wait_for()
    assert problem.inner_text() == "Removing control-plane nodes requires explicit confirmation."
    shot(page, "5-server-removal-confirmation")

    # the API docs render from this service's own files
    page.goto(f"{service}/docs")
    page.locator(".opblock").first.wait_for()
    shot(page, "6-swagger-ui", full_page=False)
    page.goto(f"{service}/redoc")
    page.locator("h1", has_text="rke2-manager").wait_for()
    shot(page, "7-redoc", full_page=False)
    assert any(u.endswith("/ui/docs-assets/swagger-ui-bundle.js") for u in requests)
    assert any(u.endswith("/ui/docs-assets/redoc.standalone.js") for u in requests)
    assert off_host(requests, service) == []


def test_docs_pages_in_a_browser_with_the_network_cut_off(
    browser: Browser, settings: Settings, db: Database, prober: FakeProber
) -> None:
    """Every request but this service's is aborted, as at an air-gapped site: the pages still
    render, and no request tried to leave."""
    app = create_app(settings, prober=prober, run_migrations=False, start_worker=False)
    with live_server(app) as url:
        page = browser.new_page()
        tried: list[str] = []

        def route(r: Any) -> None:
            if off_host([r.request.url], url):
                tried.append(r.request.url)
                r.abort()
            else:
                r.continue_()

        page.route("**/*", route)
        page.goto(f"{url}/docs")
        page.locator(".opblock").first.wait_for(timeout=30_000)
        page.goto(f"{url}/redoc")
        page.locator("h1", has_text="rke2-manager").wait_for(timeout=30_000)
        page.goto(f"{url}/ui/")
        page.locator("h1").wait_for(timeout=30_000)
        assert tried == []


def test_previews_and_a_pending_node_fix_in_a_browser(
    browser: Browser, settings: Settings, db: Database, prober: FakeProber
) -> None:
    """The dry-run preview shows the plan (or the exact refusal) and changes nothing; a
    PENDING node's IP is fixed from its form and the node table follows."""
    app = create_app(settings, prober=prober, run_migrations=False, start_worker=False)
    cluster_id = make_cluster(
        db,
        "prod",
        [("m1", "127.0.30.1", "server", "PENDING"), ("w1", "127.0.30.2", "agent", "PENDING")],
    )
    with live_server(app) as url:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(f"{url}/ui/clusters/{cluster_id}")
        page.click("#install-form [data-preview]")
        plan = page.locator("#install-form .result .plan")
        plan.wait_for(timeout=30_000)
        assert plan.locator("p.ok").inner_text() == (
            "Would be accepted: starts at once. Nothing was changed."
        )
        assert plan.locator("ol li").all_inner_texts() == ["install on m1, w1 (running)"]
        page.fill("#add-nodes", "w2 127.0.30.3 agent")
        page.click("#add-form [data-preview]")
        refused = page.locator("#add-form .result .plan p.problem")
        refused.wait_for(timeout=30_000)
        assert refused.inner_text() == (
            "Initial master 'm1' is not active (status: PENDING). Cannot add nodes."
        )
        shot(page, "8-dry-run-previews")
        with db.read_session() as s:
            assert s.query(Job).count() == 0  # previews start nothing

        page.select_option("#edit-node", "w1")
        page.fill("#edit-ip", "127.0.30.9")
        page.click("#edit-node-form button[type=submit]")
        saved = page.locator("#edit-node-form .result p.ok")
        saved.wait_for(timeout=30_000)
        assert saved.inner_text() == "Node w1 (127.0.30.9) saved."
        expect(page.locator('tr[data-node="w1"]')).to_contain_text("127.0.30.9", timeout=30_000)
        page.fill("#edit-ip", "127.0.30.1")  # m1's: G4 refuses, inline
        page.click("#edit-node-form button[type=submit]")
        problem = page.locator("#edit-node-form .result p.problem")
        problem.wait_for(timeout=30_000)
        assert problem.inner_text() == "Node with IP '127.0.30.1' already exists in cluster"

        # settings: only what changed is sent; the rest stays as stored
        page.click("#edit-form button[type=submit]")
        expect(page.locator("#edit-form .result p.problem")).to_have_text("Nothing changed.")
        page.fill("#e-reg", "127.0.30.100")
        page.fill("#e-version", "1.31")
        page.click("#edit-form button[type=submit]")
        invalid = page.locator("#edit-form .result p.problem").first
        expect(invalid).to_contain_text("rke2.version", timeout=30_000)
        page.fill("#e-version", "v1.31.4+rke2r1")
        page.click("#edit-form button[type=submit]")
        expect(page.locator("#edit-form .result p.ok")).to_have_text(
            "Settings of prod saved.", timeout=30_000
        )
        with db.read_session() as s:
            cluster = s.get(Cluster, cluster_id)
            assert cluster is not None
            assert cluster.registration_address == "127.0.30.100"
            assert (cluster.rke2_version, cluster.rke2_channel) == ("v1.31.4+rke2r1", "stable")
            assert (cluster.ssh_user, cluster.ssh_port) == ("root", 22)

        # the admin page: a token is shown once, then revoked; the audit log records both.
        # (The first token ends protected mode, so the browser logs in with one first.)
        with db.transaction() as s:
            admin = create_token(s, "root-admin", ApiRole.ADMIN, "test")[1]
        page.goto(f"{url}/ui/admin")
        page.fill("#token", admin)
        page.click("#login-form button[type=submit]")
        page.wait_for_url(f"{url}/ui/admin")
        page.fill("#t-name", "ci-reader")
        page.select_option("#t-role", "viewer")
        page.click("#token-form button[type=submit]")
        new_token = page.locator("#new-token")
        new_token.wait_for(timeout=30_000)
        with db.read_session() as s:
            row = s.query(ApiToken).filter_by(name="ci-reader").one()
            assert row.role == "viewer" and row.token_hash == hash_token(new_token.inner_text())
        page.click('#tokens tr[data-token="ci-reader"] [data-revoke]')
        expect(page.locator("#tokens-result p.ok")).to_have_text("Token ci-reader revoked.")
        expect(page.locator('#tokens tr[data-token="ci-reader"] td').nth(6)).not_to_have_text("")
        expect(page.locator("#audit tbody tr").first).to_contain_text("token.revoke")
        shot(page, "9-admin")


def test_day2_forms_in_a_browser(
    browser: Browser, settings: Settings, db: Database, prober: FakeProber
) -> None:
    """The upgrade, restore, snapshot and forget forms send what the API expects and show its
    answers inline."""
    app = create_app(settings, prober=prober, run_migrations=False, start_worker=False)
    cluster_id = make_cluster(
        db,
        "prod",
        [("m1", "127.0.40.1", "server", "ACTIVE"), ("w1", "127.0.40.2", "agent", "PENDING")],
    )
    with live_server(app) as url:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(f"{url}/ui/clusters/{cluster_id}")
        expect(page.locator("#snapshots tbody")).to_have_text("None listed yet.", timeout=30_000)

        page.fill("#up-version", "v1.31.4+rke2r1")
        page.fill("#up-skip", "nosuch")
        page.click("#upgrade-form button[type=submit]")
        expect(page.locator("#upgrade-form .result p.problem").first).to_have_text(
            "Node 'nosuch' (in skip) not found in cluster 'prod'", timeout=30_000
        )

        page.fill("#restore-name", "before-change-m1-1764680000")
        page.click("#restore-form button[type=submit]")
        expect(page.locator("#restore-form .result p.problem").first).to_have_text(
            "Restoring a snapshot requires explicit confirmation.", timeout=30_000
        )

        page.select_option("#forget-node", "w1")
        page.click("#forget-form button[type=submit]")
        forgotten = page.locator("#forget-form .result p.ok")
        forgotten.wait_for(timeout=30_000)
        with db.read_session() as s:
            job = s.query(Job).filter_by(cluster_id=cluster_id).one()
        assert forgotten.inner_text() == f"{job.operation}: job {job.id} {job.status}."
        shot(page, "10-day2-forms")


def test_a_confirmed_server_removal_shows_the_apis_warning(
    browser: Browser, settings: Settings, db: Database, prober: FakeProber
) -> None:
    """Ticking the confirmation sends confirm_master_removal=true; the job is accepted and the
    API's warning (an even number of etcd members left) is shown with it."""
    app = create_app(settings, prober=prober, run_migrations=False, start_worker=False)
    cluster_id = make_cluster(
        db, "three", [(f"m{i}", f"127.0.50.{i}", "server", "ACTIVE") for i in (1, 2, 3)]
    )
    with live_server(app) as url:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(f"{url}/ui/clusters/{cluster_id}")
        page.check("#remove-form input[name=node][value=m3]")
        page.check("#remove-form input[name=confirm]")
        page.click("#remove-form button[type=submit]")
        accepted = page.locator("#remove-form .result p.ok")
        accepted.wait_for(timeout=30_000)
        with db.read_session() as s:
            job = s.query(Job).filter_by(cluster_id=cluster_id).one()
            assert job.operation == "scale_remove_masters"
            assert [t["hostname"] for t in job.targets] == ["m3"]
            warnings = list(job.warnings)
        assert accepted.inner_text() == f"scale_remove_masters: job {job.id} running."
        assert (
            warnings and page.locator("#remove-form .result p.warn").all_inner_texts() == warnings
        )
        assert "2 etcd members" in warnings[0]
        shot(page, "11-server-removal-confirmed")
