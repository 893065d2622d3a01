"""Cluster settings are data, never code: template payloads reach the nodes literally, and an
artifact directory that is not allowed any more stops the job before anything runs."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from rke2_manager.config import Settings
from rke2_manager.db import Database
from rke2_manager.models import Cluster
from tests.e2e.support import Api, host_config
from tests.lab.hosts import Lab

pytestmark = pytest.mark.lab


def payloads(marker: str, secret_file: Path) -> list[str]:
    """Jinja that, if Ansible ever rendered it, would create marker or read secret_file."""
    return [
        f"{{{{ lookup('pipe', 'touch {marker}') }}}}",
        f"x={{% if lookup('pipe', 'touch {marker}') %}}{{% endif %}}",
        f"K={{{{ lookup('file', '{secret_file}') }}}}",
        f"{{% set k = lookup('file', '{secret_file}') %}}{{{{ k }}}}",
    ]


def test_template_payloads_in_config_are_written_literally(
    api: Api, make_lab: Callable[[list[str]], Lab], settings: Settings
) -> None:
    lab = make_lab(["m1", "w1"])
    marker = f"/tmp/rke2m-injected-{uuid.uuid4().hex}"
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    secret_file = settings.data_dir / "secret.key"
    secret = f"master-key-{uuid.uuid4().hex}"
    secret_file.write_text(secret)
    values = payloads(marker, secret_file)
    config = {
        "cni": "canal",
        "node-label": values,  # list items
        **{f"kubelet-arg-{i}": v for i, v in enumerate(values)},  # strings
    }
    cid = api.create_cluster("literal", lab, [("m1", "server"), ("w1", "agent")])
    r = api.client.patch(
        f"/api/clusters/{cid}", json={"rke2": {"artifact_dir": str(api.artifact), "config": config}}
    )
    assert r.status_code == 200, r.text
    job = api.succeed(api.install(cid))

    for host in ("m1", "w1"):
        written, _ = host_config(lab, host)
        assert {k: written[k] for k in config} == config, host
        assert lab.run(host, f"test -e {marker}").rc == 1, f"{marker} created on {host}"
    assert not Path(marker).exists()
    seen = [str(job["reason"]), api.log(job["id"]), str(api.nodes(cid))]
    assert not [text for text in seen if secret in text]


def test_artifact_dir_is_checked_again_when_the_job_starts(
    api: Api, make_lab: Callable[[list[str]], Lab], settings: Settings, db: Database, tmp_path: Path
) -> None:
    lab = make_lab(["m1"])
    root = settings.artifact_root_dir
    allowed = root / f"rke2-{uuid.uuid4().hex[:8]}"
    shutil.copytree(api.artifact, allowed)
    outside = tmp_path / "outside"
    shutil.copytree(api.artifact, outside)
    cid = api.create_cluster("relinked", lab, [("m1", "server")])
    r = api.client.patch(f"/api/clusters/{cid}", json={"rke2": {"artifact_dir": str(allowed)}})
    assert r.status_code == 200, r.text
    # valid when set; then the directory becomes a link out of the root
    shutil.rmtree(allowed)
    allowed.symlink_to(outside)
    marker = f"/tmp/rke2m-injected-{uuid.uuid4().hex}"
    other = api.create_cluster("rewritten", lab, [("m1", "server")])
    with db.transaction() as s:  # a payload written straight into the database
        cluster = s.get(Cluster, other)
        assert cluster is not None
        cluster.rke2_artifact_dir = f"/{{{{ lookup('pipe', 'id > {marker}') }}}}"

    try:
        job = api.wait(api.install(cid))
        assert job["status"] == "failed"
        assert job["reason"] == (
            f"rke2.artifact_dir '{allowed}' is not under the artifact root {root} "
            "(symlinks resolved)"
        )
        job = api.wait(api.install(other))
        assert job["status"] == "failed"
        assert job["reason"].startswith("rke2.artifact_dir must be an absolute path of letters")
    finally:
        allowed.unlink()

    assert not Path(marker).exists()
    for c in (cid, other):
        assert api.nodes(c) == {"m1": ("PENDING", None)}  # never touched
    # nothing ran on the host
    assert lab.run("m1", "ls -d /etc/rancher/rke2 /root/rke2-artifacts").rc != 0
