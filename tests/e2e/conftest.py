"""End-to-end tests: the real service runs the shipped playbooks on lab hosts over SSH.

Only SQLite (the database is not what these tests are about), the package's playbooks, the
lab's subnet allowed, and shorter playbook bounds through ``ansible_extra_vars``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from rke2_manager.config import PACKAGE_DIR, Settings
from tests.e2e.support import E2E_VARS, Api
from tests.lab.fixtures import LabFactory
from tests.lab.hosts import Lab


@pytest.fixture
def database_url(tmp_path: Path) -> Iterator[str]:
    """SQLite only (overrides the SQLite + PostgreSQL parametrisation)."""
    yield f"sqlite:///{tmp_path / 'e2e.db'}"


@pytest.fixture
def playbook_dir() -> Path:
    """The playbooks that ship in the package."""
    return Path(PACKAGE_DIR / "playbooks")


@pytest.fixture
def settings(settings: Settings, rke2_artifact: Path) -> Settings:
    settings.ansible_extra_vars = dict(E2E_VARS)
    # rke2.artifact_dir must lie under the artifact root, checked at create and job start
    settings.artifact_root = rke2_artifact.parent
    return settings


@pytest.fixture
def make_lab(lab_factory: LabFactory, settings: Settings) -> Callable[[list[str]], Lab]:
    """A lab whose subnet the service may connect to."""

    def make(names: list[str]) -> Lab:
        lab = lab_factory(names)
        settings.allowed_networks.append(lab.subnet)
        return lab

    return make


@pytest.fixture
def api(worker_client: TestClient, rke2_artifact: Path) -> Api:
    """The API (with its job worker) of a service installing from the stand-in artifact."""
    return Api(worker_client, rke2_artifact)
