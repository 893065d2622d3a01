"""Template and shell payloads in every free-text field of the API: refused, or kept as data.

The fields that reach Ansible or a shell are validated against strict patterns (422, nothing
stored); free text that is only stored (a force-unlock reason) is kept literally and never
evaluated. The lab tests in tests/e2e/test_untrusted_values.py run the values that are allowed
(``rke2.config``) through real installs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from rke2_manager.config import Settings
from rke2_manager.db import Database
from rke2_manager.models import Cluster, Job, Node

PAYLOADS = [
    "{{ lookup('pipe', 'touch /tmp/rke2m-payload-marker') }}",
    "{% if lookup('pipe', 'id') %}x{% endif %}",
    "$(touch /tmp/rke2m-payload-marker)",
    "`id`",
    "x; touch /tmp/rke2m-payload-marker",
    "x\nserver: https://evil.example:9345",
]
MARKER = Path("/tmp/rke2m-payload-marker")
NODE = {"hostname": "m1", "ip": "127.0.1.1", "role": "server"}


def body(**over: Any) -> dict[str, Any]:
    return {"name": "prod", "nodes": [NODE], **over}


def counts(db: Database) -> tuple[int, int, int]:
    with db.read_session() as s:
        return tuple(  # type: ignore[return-value]
            s.scalar(select(func.count()).select_from(m)) or 0 for m in (Cluster, Node, Job)
        )


def refused(client: TestClient, db: Database, method: str, url: str, json: Any) -> None:
    before = counts(db)
    r = client.request(method, url, json=json)
    assert r.status_code == 422, (url, json, r.text)
    assert r.json()["detail"], r.text
    assert counts(db) == before


@pytest.mark.parametrize("payload", PAYLOADS)
def test_payloads_in_validated_fields_are_refused(
    client: TestClient, db: Database, settings: Settings, payload: str
) -> None:
    MARKER.unlink(missing_ok=True)
    key = Path(settings.data_dir) / "secret.key"
    fields = [
        body(name=payload),
        body(nodes=[{**NODE, "hostname": payload}]),
        body(nodes=[{**NODE, "ip": payload}]),
        body(nodes=[{**NODE, "ip": f"::1%{payload}"}]),
        body(ssh={"user": payload}),
        body(registration_address=payload),
        body(rke2={"version": payload}),
        body(rke2={"channel": payload}),
        body(rke2={"artifact_dir": f"/{payload}"}),
        body(rke2={"artifact_dir": f"/K={{{{ lookup('file', '{key}') }}}}"}),
        body(rke2={"config": {payload: "x"}}),
    ]
    for json in fields:
        refused(client, db, "POST", "/api/clusters", json)
    cid = client.post("/api/clusters", json=body()).json()["id"]
    for patch in (
        {"name": payload},
        {"registration_address": payload},
        {"ssh": {"user": payload}},
        {"rke2": {"artifact_dir": f"/{payload}"}},
    ):
        refused(client, db, "PATCH", f"/api/clusters/{cid}", patch)
    refused(
        client,
        db,
        "POST",
        f"/api/clusters/{cid}/scale/add",
        {"nodes": [{"hostname": payload, "ip": "127.0.1.2", "role": "agent"}]},
    )
    assert not MARKER.exists()


def test_free_text_reason_is_kept_literally(client: TestClient, db: Database) -> None:
    MARKER.unlink(missing_ok=True)
    cid = client.post("/api/clusters", json=body()).json()["id"]
    job = client.post(f"/api/jobs/install/{cid}").json()["job_id"]
    reason = PAYLOADS[0]
    r = client.post(
        f"/api/admin/clusters/{cid}/force-unlock", json={"job_id": job, "reason": reason}
    )
    assert r.status_code == 200, r.text
    assert r.json()["reason"] == f"force-unlocked by local: {reason}"
    assert not MARKER.exists()
