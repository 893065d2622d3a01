"""Secrets stay off command lines and out of files while and after a job runs."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from rke2_manager.config import Settings
from rke2_manager.db import Database
from rke2_manager.models import Cluster
from rke2_manager.vault import SecretBox
from tests.e2e.support import FINAL, Api, host_config
from tests.e2e.test_install import cluster_token
from tests.lab.hosts import Lab

pytestmark = pytest.mark.lab


def files_since(root: Path, since: float) -> Iterator[Path]:
    """Regular files under root changed since ``since`` (not following links)."""
    for base, _dirs, names in os.walk(root, onerror=lambda _: None):
        for name in names:
            path = Path(base, name)
            try:
                st = path.lstat()
            except OSError:
                continue
            if path.is_file() and not path.is_symlink() and st.st_mtime >= since:
                yield path


def holding(paths: Iterator[Path], needles: list[bytes]) -> list[str]:
    found = []
    for path in paths:
        try:
            data = path.read_bytes()
        except OSError:
            continue
        found += [f"{path}: {n[:12]!r}" for n in needles if n in data]
    return found


def test_no_secret_on_a_command_line_or_left_in_a_file(
    api: Api, make_lab: Callable[[list[str]], Lab], db: Database, settings: Settings
) -> None:
    started = time.time() - 1
    lab = make_lab(["m1", "w1"])
    cid = api.create_cluster("quiet", lab, [("m1", "server"), ("w1", "agent")])
    s3_secret, plain = f"s3-{uuid.uuid4().hex}", f"label-{uuid.uuid4().hex}"
    with db.transaction() as s:
        cluster = s.get(Cluster, cid)
        assert cluster is not None
        cluster.rke2_config = {"cni": "canal", "node-label": [plain]}
        cluster.rke2_config_secrets_enc = SecretBox.from_settings(settings).encrypt(
            json.dumps({"etcd-s3-secret-key": s3_secret})
        )
    token = cluster_token(db, settings, cid)
    # the secrets, a plain config value and the var names: none may be on a command line
    needles = [token, s3_secret, plain, "rke2m_token", "etcd-s3-secret-key"]

    samples: list[str] = []
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            ps = ["ps", "-ww", "-eo", "args"]  # -ww: whole command lines, never cut
            samples.append(subprocess.run(ps, capture_output=True, text=True).stdout)
            for host in ("m1", "w1"):
                samples.append(lab.run(host, "ps -ww -eo args", timeout=10).stdout)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        job_id = api.install(cid)
        while api.job(job_id)["status"] not in FINAL:
            time.sleep(0.1)
    finally:
        done.set()
        sampler.join(30)
    job = api.succeed(job_id)
    assert sum("ansible-playbook" in s for s in samples) >= 3, "sampled too late to see the run"
    assert [n for n in needles if any(n in s for s in samples)] == []

    # the secret key reached the node's config.yaml, merged with the manager's keys
    config, mode = host_config(lab, "m1")
    assert mode == "600 root"
    assert config["etcd-s3-secret-key"] == s3_secret and config["token"] == token
    assert config["node-label"] == [plain]
    # and nothing on the manager kept them: the data dir, the tmp dir, the job's output
    secrets = [token.encode(), s3_secret.encode()]
    for root in (settings.data_dir, Path(tempfile.gettempdir())):
        assert holding(files_since(root, started), secrets) == []
    text = api.log(job["id"]) + str(api.cluster(cid))
    assert token not in text and s3_secret not in text
