"""Plain factory functions and fakes for tests."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from rke2_manager.db import Database
from rke2_manager.guardrails import ProbeResult
from rke2_manager.models import Cluster, Job, JobStatus, LockStatus, Node, utcnow
from rke2_manager.vault import SecretBox, new_cluster_token, new_ssh_keypair

TEST_SECRET_KEY = "test-secret-key"
TEST_BOX = SecretBox(TEST_SECRET_KEY)
OPERATIONS = (
    "install",
    "scale_add_masters",
    "scale_add_workers",
    "scale_remove_masters",
    "scale_remove_workers",
)


@dataclass
class FakeProber:
    """G1's probe without a network: answers ``ok`` unless told an address is down."""

    down: set[str] = field(default_factory=set)
    calls: list[str] = field(default_factory=list)

    def __call__(self, address: str) -> ProbeResult:
        self.calls.append(address)
        if address in self.down:
            return ProbeResult(address, ok=False, error="Connection refused")
        return ProbeResult(address, ok=True)


def make_cluster(
    db: Database,
    name: str = "prod",
    nodes: list[tuple[str, str, str, str]] | None = None,
    registration_address: str | None = None,
) -> int:
    """A cluster with nodes ``(hostname, ip, role, status)``; the first server is initial master."""
    nodes = nodes if nodes is not None else [("m1", "127.0.10.1", "server", "ACTIVE")]
    first_server = next((n[0] for n in nodes if n[2] == "server"), None)
    with db.transaction() as s:
        cluster = Cluster(
            name=name,
            ssh_private_key_enc=TEST_BOX.encrypt(new_ssh_keypair("test")[0]),
            token_enc=TEST_BOX.encrypt(new_cluster_token()),
            registration_address=registration_address,
        )
        cluster.nodes = [
            Node(hostname=h, ip=ip, role=role, status=status, is_initial_master=h == first_server)
            for h, ip, role, status in nodes
        ]
        s.add(cluster)
        s.flush()
        return cluster.id


def lock_cluster(db: Database, cluster_id: int, operation: str = "scale_add_masters") -> int:
    """Put ``cluster_id`` in the state of a running job; return the job's id."""
    with db.transaction() as s:
        cluster = s.get(Cluster, cluster_id)
        assert cluster is not None
        job = Job(
            cluster_id=cluster_id,
            operation=operation,
            status=JobStatus.RUNNING,
            worker_id="elsewhere",
        )
        s.add(job)
        s.flush()
        cluster.operation_status = LockStatus.RUNNING
        cluster.current_job_id = job.id
        cluster.operation_locked_by = operation
        cluster.operation_started_at = utcnow()
        cluster.lock_token += 1
        job.fencing_token = cluster.lock_token
        return job.id


PLAY_HEADER = """\
- hosts: rke2_targets
  gather_facts: false
  connection: local
  vars:
    ansible_python_interpreter: "{{ ansible_playbook_python }}"
  tasks:
"""

MODES = {
    "ok": """
    - name: work
      ansible.builtin.command: "true"
    - name: "[rke2m] node ready"
      ansible.builtin.debug: {msg: done}
""",
    "fail_one": """
    - name: work
      ansible.builtin.command: "true"
    - name: break one host
      ansible.builtin.fail: {msg: "disk full on {{ inventory_hostname }}"}
      when: inventory_hostname == fail_host | default('w1')
    - name: "[rke2m] node ready"
      ansible.builtin.debug: {msg: done}
""",
    "slow": """
    - name: take a while
      ansible.builtin.command: sleep {{ sleep_seconds | default(30) }}
    - name: leave a mark when the run was not stopped
      ansible.builtin.file: {path: "{{ done_marker }}", state: touch}
      when: done_marker is defined
      run_once: true
    - name: "[rke2m] node ready"
      ansible.builtin.debug: {msg: done}
""",
    "echo_secret": """
    - name: print the token (a playbook bug the redaction must catch)
      ansible.builtin.debug: {msg: "token={{ rke2m_token }}"}
    - name: "[rke2m] node ready"
      ansible.builtin.debug: {msg: done}
""",
}


def write_playbooks(path: Path, mode: str = "ok", operations: tuple[str, ...] = OPERATIONS) -> None:
    """Write one playbook per operation; they run locally and follow ``mode``."""
    path.mkdir(parents=True, exist_ok=True)
    body = PLAY_HEADER + MODES[mode]
    for operation in operations:
        (path / f"{operation}.yml").write_text(body)
