"""The upgrade's etcd gate (playbooks/files/rke2m_etcd_health.py) fails loudly when it cannot
check: never a silent pass. (Its healthy path runs in the lab tests, tests/e2e/test_upgrade.py.)"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from rke2_manager.config import PACKAGE_DIR

SCRIPT = PACKAGE_DIR / "playbooks" / "files" / "rke2m_etcd_health.py"
TLS = Path("/var/lib/rancher/rke2/server/tls/etcd")


def test_without_the_etcd_client_certificate_it_fails_at_once() -> None:
    assert not TLS.exists(), f"{TLS} exists on this machine: this test needs it absent"
    # as the playbook runs it: the node's Python, isolated, the script as -c
    done = subprocess.run(
        [sys.executable, "-I", "-S", "-c", SCRIPT.read_text(), "600", "0.5"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr == (
        f"cannot check etcd: {TLS}/server-ca.crt, {TLS}/server-client.crt, "
        f"{TLS}/server-client.key missing (the etcd client certificate of RKE2's embedded "
        "etcd)\n"
    )
