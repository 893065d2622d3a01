"""Pytest fixtures for end-to-end tests on lab hosts.

Load with ``pytest_plugins = ["tests.lab.fixtures"]``. Without root (or tools) the tests
skip with the reason printed; with ``CI=true`` they fail instead, so CI never passes by
skipping them.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from tests.lab.hosts import Lab, LabError
from tests.lab.standin import build_artifact
from tests.lab.standin.artifact import DEFAULT_VERSION, UPGRADE_VERSION

# Debian packages: iproute2 (ip), util-linux (unshare, nsenter), openssh-client (ssh, scp,
# ssh-keygen), openssh-server (sshd), openssl, python3 (the hosts' stand-ins).
REQUIRED_TOOLS = ("ip", "unshare", "nsenter", "ssh", "scp", "ssh-keygen", "openssl")
REQUIRED_FILES = ("/usr/sbin/sshd", "/usr/bin/python3")

LabFactory = Callable[..., Lab]
ArtifactFactory = Callable[[str], Path]


def lab_unavailable() -> str | None:
    """Why lab hosts cannot be made here, or None if they can."""
    if os.geteuid() != 0:
        return "lab tests need root (network namespaces, mounts)"
    missing = [t for t in REQUIRED_TOOLS if shutil.which(t) is None]
    missing += [f for f in REQUIRED_FILES if not Path(f).exists()]
    if missing:
        return f"lab tests need {', '.join(missing)} (apt-get install openssh-server iproute2)"
    if "overlay" not in Path("/proc/filesystems").read_text():
        return "lab tests need overlayfs"
    return None


def require_lab() -> None:
    """Skip the calling test when lab hosts cannot be made; fail instead when CI=true."""
    reason = lab_unavailable()
    if reason is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true but {reason}", pytrace=False)
    print(f"skipping lab test: {reason}")
    pytest.skip(reason)


def guarded_networks() -> list[str] | None:
    """The list of networks the top-level conftest's connection guard allows, if loaded."""
    for name in ("tests.conftest", "conftest"):
        nets = getattr(sys.modules.get(name), "TEST_NETWORKS", None)
        if isinstance(nets, list):
            return nets
    return None


@pytest.fixture
def lab_factory() -> Iterator[LabFactory]:
    """``lab_factory(3)`` or ``lab_factory(["m1", "w1"])``: a started Lab, removed at test end.

    Each lab's subnet is added to the connection guard's TEST_NETWORKS for the test.
    Teardown fails the test if anything (namespace, link, process, directory) stays behind.
    """
    require_lab()
    labs: list[Lab] = []
    nets = guarded_networks()
    allowed: list[str] = []

    def allow(subnet: str) -> None:
        if nets is not None:
            nets.append(subnet)
            allowed.append(subnet)

    def make(hosts: int | Sequence[str] = 3) -> Lab:
        lab = Lab(hosts, on_subnet=allow)
        labs.append(lab)
        return lab.start()

    yield make
    for subnet in allowed:
        if nets is not None and subnet in nets:
            nets.remove(subnet)
    errors = []
    for lab in reversed(labs):
        try:
            lab.close()
        except LabError as exc:
            errors.append(str(exc))
    if errors:
        pytest.fail("; ".join(errors), pytrace=False)


@pytest.fixture(scope="session")
def rke2_artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A stand-in RKE2 air-gap artifact directory (install.sh, tarball, checksums).

    It lies alone in a directory of its own (its parent), for use as the artifact root.
    """
    return build_artifact(tmp_path_factory.mktemp("artifact-root") / "rke2")


@pytest.fixture(scope="session")
def rke2_artifact_factory(rke2_artifact: Path) -> ArtifactFactory:
    """``rke2_artifact_factory("v1.32.1+rke2r1")``: an artifact set whose binaries report that
    version, built once per session as ``<artifact root>/<version>`` (a sibling of
    rke2_artifact, so one artifact root holds both). The default version gives rke2_artifact.
    """
    built: dict[str, Path] = {DEFAULT_VERSION: rke2_artifact}

    def make(version: str) -> Path:
        if version not in built:
            built[version] = build_artifact(rke2_artifact.parent / version, version=version)
        return built[version]

    return make


@pytest.fixture(scope="session")
def rke2_upgrade_artifact(rke2_artifact_factory: ArtifactFactory) -> Path:
    """The artifact set of the next minor (UPGRADE_VERSION, v1.32.1+rke2r1) next to
    rke2_artifact (DEFAULT_VERSION, v1.31.4+rke2r1) under the same artifact root."""
    return rke2_artifact_factory(UPGRADE_VERSION)
