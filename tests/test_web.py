"""The dashboard's pages (as the local admin of protected mode), their errors, and the API
docs pages with every file they load served by the service itself."""

from __future__ import annotations

import re
from html.parser import HTMLParser

from fastapi.testclient import TestClient
from markupsafe import escape

from rke2_manager.db import Database
from rke2_manager.models import Job, Node
from rke2_manager.web.render import PAGE_CSP
from tests.factories import lock_cluster, make_cluster

NODES = [
    ("m1", "127.0.10.1", "server", "ACTIVE"),
    ("m2", "127.0.10.2", "server", "INSTALLING"),
    ("w1", "127.0.10.3", "agent", "PENDING"),
]


class Refs(HTMLParser):
    """Every URL an HTML page makes the browser load (src=, href= of link)."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag in ("script", "img", "iframe") and found.get("src"):
            self.urls.append(str(found["src"]))
        if tag == "link" and found.get("href"):
            self.urls.append(str(found["href"]))


def refs(text: str) -> list[str]:
    parser = Refs()
    parser.feed(text)
    return parser.urls


def test_root_redirects_to_the_dashboard(client: TestClient) -> None:
    r = client.get("/", follow_redirects=False)
    assert r.status_code == 307
    assert r.headers["location"] == "/ui/"


def test_cluster_list_shows_stage_lock_holder_and_queue(client: TestClient, db: Database) -> None:
    busy = make_cluster(db, "prod", NODES)
    job_id = lock_cluster(db, busy, "scale_add_workers")
    make_cluster(db, "idle-one", [("m1", "127.0.11.1", "server", "ACTIVE")])
    r = client.post(
        f"/api/jobs/install/{busy}", params={"on_busy": "queue"}, headers={"Accept": "*/*"}
    )
    assert r.status_code == 202, r.text
    r = client.get("/ui/")
    assert r.status_code == 200
    assert r.headers["content-security-policy"] == PAGE_CSP
    rows = dict(re.findall(r'<tr data-cluster="([^"]+)">(.*?)</tr>', r.text, re.S))
    assert set(rows) == {"prod", "idle-one"}
    assert "scale_add_workers" in rows["prod"]
    assert f'href="/ui/jobs/{job_id}"' in rows["prod"]
    assert '<td class="queue">1</td>' in rows["prod"]
    assert "idle</span>" in rows["idle-one"]
    assert '<td class="queue">0</td>' in rows["idle-one"]
    assert "3 (1)" in rows["prod"]  # nodes (active)


def test_cluster_page_shows_nodes_lock_queue_jobs_and_forms(
    client: TestClient, db: Database
) -> None:
    cluster_id = make_cluster(db, "prod", NODES)
    job_id = lock_cluster(db, cluster_id, "scale_add_masters")
    queued = client.post(
        f"/api/clusters/{cluster_id}/scale/add",
        params={"on_busy": "queue"},
        json={"nodes": [{"hostname": "w9", "ip": "127.0.10.9", "role": "agent"}]},
    )
    assert queued.status_code == 202, queued.text
    r = client.get(f"/ui/clusters/{cluster_id}")
    assert r.status_code == 200
    page = r.text
    for hostname, ip, role, status in NODES:
        row = re.search(rf'<tr data-node="{hostname}">(.*?)</tr>', page, re.S)
        assert row is not None, hostname
        assert ip in row.group(1) and role in row.group(1) and status in row.group(1)
    assert "initial master" in re.search(r'<tr data-node="m1">(.*?)</tr>', page, re.S).group(1)  # type: ignore[union-attr]
    lock = re.search(r'<span id="lock">(.*?)</span>\s*<span>RKE2', page, re.S)
    assert lock is not None and "scale_add_masters" in lock.group(1)
    assert f"job {job_id}" in lock.group(1)
    queue = page.split('<section id="queue"')[1].split("</section>")[0]
    assert f'data-job="{queued.json()["job_id"]}"' in queue
    assert f'data-cancel="{queued.json()["job_id"]}"' in queue
    for form in ("install", "add", "remove", "unlock", "delete"):
        assert f'id="{form}-form"' in page
    # the removal form knows which nodes are servers (their removal needs the confirmation)
    assert 'data-servers="m1 m2"' in page


def test_job_page_shows_a_grid_row_per_target_host(client: TestClient, db: Database) -> None:
    cluster_id = make_cluster(db, "prod", [("m1", "127.0.10.1", "server", "PENDING")])
    r = client.post(f"/api/jobs/install/{cluster_id}")
    assert r.status_code == 202, r.text
    job_id = r.json()["job_id"]
    page = client.get(f"/ui/jobs/{job_id}")
    assert page.status_code == 200
    row = re.search(r'<tr data-host="m1">(.*?)</tr>', page.text, re.S)
    assert row is not None
    assert "server" in row.group(1) and "PENDING" in row.group(1)
    assert f'data-job-id="{job_id}"' in page.text
    assert f'data-cancel="{job_id}"' in page.text


def test_unknown_and_malformed_ids_are_html_4xx_never_500(client: TestClient) -> None:
    cases = {
        "/ui/clusters/99": (404, "Cluster 99 not found"),
        "/ui/jobs/7": (404, "Job 7 not found"),
        "/ui/clusters/abc": (422, "Invalid value: cluster_id"),
        "/ui/clusters/0": (422, "Invalid value: cluster_id"),
        "/ui/jobs/99999999999999999999": (422, "Invalid value: job_id"),
        "/ui/nothing-here": (404, "Not Found"),
        "/ui/docs-assets/..%2f..%2fetc%2fpasswd": (404, "Not Found"),
        "/ui/docs-assets/secret.js": (404, "No documentation asset 'secret.js'"),
        "/ui/static/..%2f__init__.py": (404, "Not Found"),
    }
    for path, (status, detail) in cases.items():
        r = client.get(path)
        assert r.status_code == status, (path, r.text)
        assert r.headers["content-type"].startswith("text/html"), path
        shown = escape(detail)
        assert f'<p class="problem" id="error-detail">{shown}</p>' in r.text, (path, r.text)


def test_page_values_are_escaped(client: TestClient, db: Database) -> None:
    """A node's reason is caller- and host-controlled text: it is escaped, never markup."""
    cluster_id = make_cluster(db, "prod", NODES)
    with db.transaction() as s:
        node = s.query(Node).filter_by(hostname="w1").one()
        node.status_reason = "<script>alert(1)</script>"
    page = client.get(f"/ui/clusters/{cluster_id}").text
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_docs_pages_load_every_file_from_the_service(client: TestClient) -> None:
    """/docs and /redoc reference only this service's files, and every one of them is there."""
    seen: set[str] = set()
    for path in ("/docs", "/redoc"):
        r = client.get(path)
        assert r.status_code == 200, path
        csp = r.headers["content-security-policy"]
        assert "default-src 'none'" in csp and "script-src 'self';" in csp
        urls = refs(r.text)
        assert len(urls) >= 3, (path, urls)
        for url in urls:
            assert url.startswith("/") and not url.startswith("//"), (path, url)
            seen.add(url)
        assert re.search(r'data-openapi="/openapi.json"', r.text)
    for url in sorted(seen):
        asset = client.get(url)
        assert asset.status_code == 200, url
        assert asset.content, url
    assert "/ui/docs-assets/swagger-ui-bundle.js" in seen
    assert "/ui/docs-assets/redoc.standalone.js" in seen
    # the one image ReDoc's bundle loads from its CDN is rewritten to an inline one
    redoc = client.get("/ui/docs-assets/redoc.standalone.js").text
    assert "cdn.redoc.ly" not in redoc
    assert client.get("/openapi.json").status_code == 200
    # Swagger UI's online validator would send the schema to a public site: off
    assert "validatorUrl: null" in client.get("/ui/static/docs-swagger.js").text


def forms(page: str) -> dict[str, str]:
    """Each operation form of a page: its id -> its HTML."""
    return dict(
        re.findall(
            r'<form class="card op" data-op="[^"]+" id="([^"]+)".*?>(.*?)</form>', page, re.S
        )
    )


def test_every_operation_has_a_form_and_previews_where_the_api_plans(
    client: TestClient, db: Database
) -> None:
    cluster_id = make_cluster(db, "prod", NODES)
    page = client.get(f"/ui/clusters/{cluster_id}").text
    found = forms(page)
    day2 = {"preflight-form", "upgrade-form", "snapshot-form", "restore-form", "forget-form"}
    assert set(found) == {
        "install-form", "add-form", "remove-form", "unlock-form", "delete-form",
        "edit-node-form", "edit-form", *day2,
    }  # fmt: skip
    planned = {form for form, body in found.items() if "data-preview" in body}
    paths = client.get("/openapi.json").json()["paths"]
    takes_dry_run = {
        form
        for form, (method, path) in {
            "install-form": ("post", "/api/jobs/install/{cluster_id}"),
            "add-form": ("post", "/api/clusters/{cluster_id}/scale/add"),
            "remove-form": ("post", "/api/clusters/{cluster_id}/scale/remove"),
            "preflight-form": ("post", "/api/clusters/{cluster_id}/preflight"),
            "upgrade-form": ("post", "/api/clusters/{cluster_id}/upgrade"),
            "snapshot-form": ("post", "/api/clusters/{cluster_id}/snapshots"),
            "restore-form": ("post", "/api/clusters/{cluster_id}/restore"),
            "forget-form": ("delete", "/api/clusters/{cluster_id}/nodes/{hostname}"),
        }.items()
        if any(p["name"] == "dry_run" for p in paths[path][method].get("parameters", []))
    }
    assert {"install-form", "add-form", "remove-form"} <= takes_dry_run
    assert planned == takes_dry_run
    # the preflight checks a job may skip are offered where preflight runs
    for form in ("install-form", "add-form", "preflight-form"):
        assert 'name="skip" value="swap"' in found[form], form
    # only PENDING nodes can be fixed
    edit = found["edit-node-form"]
    assert '<option value="w1">' in edit and '<option value="m1">' not in edit
    assert "appear here once it does" not in page  # every day-2 route is served


def test_preflight_results_are_shown_for_the_jobs_that_run_checks(
    client: TestClient, db: Database
) -> None:
    cluster_id = make_cluster(db, "prod", [("m1", "127.0.10.1", "server", "PENDING")])
    r = client.post(f"/api/clusters/{cluster_id}/preflight")
    assert r.status_code == 202, r.text
    page = client.get(f"/ui/jobs/{r.json()['job_id']}").text
    assert 'data-preflight="true"' in page and '<section id="preflight">' in page
    other = make_cluster(db, "other", [("m1", "127.0.11.1", "server", "ACTIVE")])
    with db.transaction() as s:
        job = Job(cluster_id=other, operation="scale_remove_workers", status="failed")
        s.add(job)
        s.flush()
        job_id = job.id
    page = client.get(f"/ui/jobs/{job_id}").text
    assert 'data-preflight="false"' in page and '<section id="preflight">' not in page
