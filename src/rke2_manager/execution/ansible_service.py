"""The ansible-runner adapter [services/ansible_service.py]: inventory, secrets, one run.

Secrets never touch the disk in a readable place or the command line: the SSH key goes to
ansible-runner as a FIFO consumed by ``ssh-agent``, the cluster token through the environment
(``suppress_env_files``), and the run's private data directory is deleted afterwards.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ansible_runner

from rke2_manager.execution.events import HostEvent, interpret, redact
from rke2_manager.netpolicy import check_allowed


@dataclass(frozen=True)
class HostSpec:
    name: str
    address: str
    role: str
    target: bool
    initial_master: bool = False


@dataclass
class RunSpec:
    playbook: Path
    hosts: list[HostSpec]
    ssh_user: str = "root"
    ssh_port: int = 22
    ssh_key: str | None = None
    extravars: dict[str, Any] = field(default_factory=dict)
    secret_env: dict[str, str] = field(default_factory=dict)
    timeout: int = 7200
    allowed_networks: list[str] = field(default_factory=list)

    @property
    def secrets(self) -> list[str]:
        return [v for v in (self.ssh_key, *self.secret_env.values()) if v]


@dataclass
class RunOutcome:
    status: str
    """ansible-runner's status: successful, failed, canceled, timeout."""
    rc: int | None
    kubeconfig: str | None = None
    """What the playbook fetched to ``rke2m_kubeconfig_dest``, if anything."""


RUN_DIR_PREFIX = "rke2m-run-"


def sweep_stale_run_dirs(alive: Callable[[int], bool]) -> list[str]:
    """Remove the private run directories of processes that are gone (killed mid-run)."""
    removed = []
    for path in Path(tempfile.gettempdir()).glob(f"{RUN_DIR_PREFIX}*"):
        pid = path.name[len(RUN_DIR_PREFIX) :].split("-", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not alive(int(pid)):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(str(path))
    return removed


def build_inventory(spec: RunSpec) -> dict[str, Any]:
    """Groups the playbooks rely on: rke2_servers, rke2_agents, rke2_targets,
    rke2_initial_master; each host's ``ansible_host`` is the node's IP."""
    hosts = {h.name: {"ansible_host": h.address, "rke2_role": h.role} for h in spec.hosts}

    def group(names: list[str]) -> dict[str, Any]:
        return {"hosts": {n: {} for n in names}}

    return {
        "all": {
            "hosts": hosts,
            "vars": {
                "ansible_user": spec.ssh_user,
                "ansible_port": spec.ssh_port,
                "ansible_become": spec.ssh_user != "root",
            },
            "children": {
                "rke2_servers": group([h.name for h in spec.hosts if h.role == "server"]),
                "rke2_agents": group([h.name for h in spec.hosts if h.role == "agent"]),
                "rke2_targets": group([h.name for h in spec.hosts if h.target]),
                "rke2_initial_master": group([h.name for h in spec.hosts if h.initial_master]),
            },
        }
    }


def _envvars(spec: RunSpec) -> dict[str, str]:
    forks = max(5, min(50, len(spec.hosts)))
    return {
        # ansible-runner starts ansible-playbook by name: ours must come first on PATH.
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "ANSIBLE_HOST_KEY_CHECKING": "False",
        "ANSIBLE_PIPELINING": "True",
        "ANSIBLE_SSH_ARGS": "-o ControlMaster=auto -o ControlPersist=60s "
        "-o UserKnownHostsFile=/dev/null -o StrictHostKeyChecking=no",
        "ANSIBLE_FORKS": str(forks),
        "ANSIBLE_RETRY_FILES_ENABLED": "False",
        "ANSIBLE_NOCOLOR": "True",
        "ANSIBLE_PYTHON_INTERPRETER": "auto_silent",
        "ANSIBLE_TIMEOUT": "10",
        **spec.secret_env,
    }


def run_playbook(
    spec: RunSpec,
    on_host: Callable[[HostEvent], None],
    on_output: Callable[[list[str]], None],
    should_cancel: Callable[[], bool],
) -> RunOutcome:
    """Run ``spec.playbook`` to the end (or until ``should_cancel`` says stop).

    ``on_host`` gets each host fact as it happens, ``on_output`` the redacted output lines.
    Raises AddressNotAllowed before anything runs if a host lies outside the allowed networks,
    FileNotFoundError if the playbook is missing.
    """
    for host in spec.hosts:
        check_allowed(host.address, spec.allowed_networks)
    if not spec.playbook.is_file():
        raise FileNotFoundError(f"playbook {spec.playbook} not found")
    secrets = spec.secrets
    private_dir = tempfile.mkdtemp(prefix=f"{RUN_DIR_PREFIX}{os.getpid()}-")
    os.chmod(private_dir, 0o700)

    def handle(event: dict[str, Any]) -> bool:
        fact = interpret(event)
        if fact is not None:
            on_host(fact)
        stdout = event.get("stdout")
        if stdout:
            on_output(redact(str(stdout), secrets).splitlines())
        return False  # ours is the only copy of the event we need: do not keep it on disk

    kubeconfig = Path(private_dir) / "kubeconfig.yaml"
    try:
        runner = ansible_runner.run(
            private_data_dir=private_dir,
            playbook=str(spec.playbook.resolve()),
            inventory=build_inventory(spec),
            extravars={**spec.extravars, "rke2m_kubeconfig_dest": str(kubeconfig)},
            envvars=_envvars(spec),
            ssh_key=spec.ssh_key,
            suppress_env_files=True,
            quiet=True,
            timeout=spec.timeout,
            event_handler=handle,
            cancel_callback=should_cancel,
        )
        fetched = kubeconfig.read_text() if kubeconfig.is_file() else None
        return RunOutcome(status=str(runner.status), rc=runner.rc, kubeconfig=fetched)
    finally:
        shutil.rmtree(private_dir, ignore_errors=True)
