"""The ansible-runner adapter [services/ansible_service.py]: one run of one playbook.

What a run gets, and how: the inventory and every variable (the cluster token and secret
config keys included) in 0600 files written by :mod:`.run_inputs`, every string marked
``!unsafe``; the SSH key through ansible-runner's FIFO consumed by ``ssh-agent``. Nothing
secret is on a command line or in the environment. The run's private directory lives under
``<data dir>/runs/`` (0700) and is deleted afterwards. SSH connections are shared only
between runs of the same cluster with the same key (see :mod:`.ssh`).
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import ansible_runner

from rke2_manager.execution.events import HostEvent, interpret, redact, task_result
from rke2_manager.execution.procs import RUN_ENV, RunProcess, end_run, leader
from rke2_manager.execution.run_inputs import HostSpec, learned_host_keys, write_run_inputs
from rke2_manager.execution.ssh import master_title, ssh_env
from rke2_manager.netpolicy import check_allowed

log = logging.getLogger(__name__)

__all__ = [
    "HostSpec",
    "RunOutcome",
    "RunSpec",
    "run_dir_roots",
    "run_playbook",
    "runs_dir",
    "sweep_stale_run_dirs",
]


@dataclass
class RunSpec:
    playbook: Path
    hosts: list[HostSpec]
    run_root: Path = field(default_factory=lambda: runs_dir(Path("data")))
    """Where the run's private directory is made: :func:`runs_dir` of the data dir."""
    cluster_id: int = 0
    ssh_user: str = "root"
    ssh_port: int = 22
    ssh_key: str | None = None
    host_key_checking: bool = True
    extravars: dict[str, Any] = field(default_factory=dict)
    """Every variable of the run, secrets included; written to a 0600 file, marked unsafe."""
    secret_values: list[str] = field(default_factory=list)
    """Values redacted from the output (the cluster token, secret config values)."""
    timeout: int = 7200
    """Seconds the whole run may take (``RKE2M_JOB_TIMEOUT``); then it is killed and the
    outcome's status is ``timeout``."""
    task_timeout: int = 1800
    """Seconds each task may take on a host (``RKE2M_TASK_TIMEOUT``, Ansible's
    ``task_timeout``); a task cut off is a ``failed`` fact that says so."""
    allowed_networks: list[str] = field(default_factory=list)
    run_tag: str = "untracked"
    """Every process of the run carries ``RKE2M_RUN=<run_tag>`` (:mod:`.procs`); record it
    before the run starts, so the run can be ended even if this process dies."""
    kill_grace: float = 10.0
    """Seconds between SIGTERM and SIGKILL when the run is ended (``RKE2M_KILL_GRACE``)."""

    @property
    def secrets(self) -> list[str]:
        return [v for v in (self.ssh_key, *self.secret_values) if v]


@dataclass
class RunOutcome:
    status: str
    """ansible-runner's status: successful, failed, canceled, timeout."""
    rc: int | None
    kubeconfig: str | None = None
    """What the playbook fetched to ``rke2m_kubeconfig_dest``, if anything."""
    host_keys: dict[str, str] = field(default_factory=dict)
    """Host keys learned on first contact with nodes that had none pinned: hostname -> key."""


RUN_DIR_PREFIX = "rke2m-run-"


def runs_dir(data_dir: Path) -> Path:
    """Where runs' private directories are made: ``<data dir>/runs`` (0700 once used)."""
    return (data_dir / "runs").resolve()


def run_dir_roots(data_dir: Path) -> list[Path]:
    """Where run directories may be left: :func:`runs_dir`, and the tmp dir earlier versions
    used (their ``artifacts/*/command`` files held the cluster token)."""
    return [runs_dir(data_dir), Path(tempfile.gettempdir())]


def sweep_stale_run_dirs(root: Path, alive: Callable[[int], bool]) -> list[str]:
    """Remove the private run directories under ``root`` of processes that are gone."""
    removed: list[str] = []
    if not root.is_dir():
        return removed
    for path in root.glob(f"{RUN_DIR_PREFIX}*"):
        pid = path.name[len(RUN_DIR_PREFIX) :].split("-", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not alive(int(pid)):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(str(path))
    return removed


def _envvars(spec: RunSpec, known_hosts: Path) -> dict[str, str]:
    forks = max(5, min(50, len(spec.hosts)))
    return {
        # ansible-runner starts from this process's environment: blank the service's own
        # settings (RKE2M_SECRET_KEY, a database URL with its password) for the playbook
        **{name: "" for name in os.environ if name.startswith("RKE2M_")},
        # ansible-runner starts ansible-playbook by name: ours must come first on PATH.
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "ANSIBLE_PIPELINING": "True",
        "ANSIBLE_FORKS": str(forks),
        "ANSIBLE_RETRY_FILES_ENABLED": "False",
        "ANSIBLE_NOCOLOR": "True",
        "ANSIBLE_PYTHON_INTERPRETER": "auto_silent",
        "ANSIBLE_TIMEOUT": "10",
        # a host that accepts SSH and then stalls would otherwise hold its task for ever
        "ANSIBLE_TASK_TIMEOUT": str(spec.task_timeout),
        **ssh_env(spec.cluster_id, spec.run_tag, known_hosts, spec.host_key_checking),
        # inherited by every process of the run, however it detaches (setsid, daemon)
        RUN_ENV: spec.run_tag,
    }


def run_playbook(
    spec: RunSpec,
    on_host: Callable[[HostEvent], None],
    on_output: Callable[[list[str]], None],
    should_cancel: Callable[[], bool],
    on_start: Callable[[RunProcess], None] | None = None,
    on_tick: Callable[[], None] | None = None,
) -> RunOutcome:
    """Run ``spec.playbook`` to the end (or until ``should_cancel`` says stop).

    ``on_host`` gets each host fact as it happens, ``on_output`` the redacted output lines,
    ``on_start`` the run's ansible-playbook process once it is found; ``on_tick`` is called
    every 0.2 s from another thread (to store what waits while a task runs long). When
    ``should_cancel`` turns true, every process of the run is ended (:func:`.procs.end_run`);
    whatever happens, none is left when this returns (or raises).

    Raises AddressNotAllowed before anything runs if a host lies outside the allowed networks,
    FileNotFoundError if the playbook is missing, RunNotEnded if processes of the run survive
    SIGKILL.
    """
    for host in spec.hosts:
        check_allowed(host.address, spec.allowed_networks)
    if not spec.playbook.is_file():
        raise FileNotFoundError(f"playbook {spec.playbook} not found")
    secrets = spec.secrets
    spec.run_root.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(spec.run_root, 0o700)
    private_dir = Path(
        tempfile.mkdtemp(prefix=f"{RUN_DIR_PREFIX}{os.getpid()}-", dir=spec.run_root)
    )
    started = threading.Event()

    def handle(event: dict[str, Any]) -> bool:
        if not started.is_set():
            started.set()
            found = leader(spec.run_tag, os.getpid())
            if found is not None and on_start is not None:
                on_start(found)
        fact = interpret(event, spec.task_timeout)
        if fact is not None:
            on_host(replace(fact, result=task_result(event)))
        stdout = event.get("stdout")
        if stdout:
            on_output(redact(str(stdout), secrets).splitlines())
        return False  # ours is the only copy of the event we need: do not keep it on disk

    done = threading.Event()
    stopper = threading.Thread(
        target=_stop_when_asked,
        args=(spec, should_cancel, done, on_tick),
        name=f"stop-{spec.run_tag}",
        daemon=True,
    )
    kubeconfig = private_dir / "kubeconfig.yaml"
    try:
        known_hosts = write_run_inputs(
            private_dir,
            spec.hosts,
            {**spec.extravars, "rke2m_kubeconfig_dest": str(kubeconfig)},
            ssh_user=spec.ssh_user,
            ssh_port=spec.ssh_port,
            host_key_checking=spec.host_key_checking,
        )
        stopper.start()
        runner = ansible_runner.run(
            private_data_dir=str(private_dir),
            playbook=str(spec.playbook.resolve()),
            envvars=_envvars(spec, known_hosts),
            ssh_key=spec.ssh_key,
            suppress_env_files=True,
            suppress_output_file=True,
            quiet=True,
            timeout=spec.timeout,
            event_handler=handle,
            cancel_callback=should_cancel,
        )
        fetched = kubeconfig.read_text() if kubeconfig.is_file() else None
        learned = (
            learned_host_keys(known_hosts, spec.hosts, spec.ssh_port)
            if spec.host_key_checking
            else {}
        )
        return RunOutcome(
            status=str(runner.status), rc=runner.rc, kubeconfig=fetched, host_keys=learned
        )
    finally:
        done.set()
        # ansible-runner kills only ansible-playbook's process group; its forks (setsid) and
        # the SSH masters are ended here, success or not, before the job may settle
        left = end_run(spec.run_tag, spec.kill_grace, title=_master(spec))
        if left:
            log.info("run %s: ended %d process(es) left after the playbook", spec.run_tag, left)
        shutil.rmtree(private_dir, ignore_errors=True)


def _master(spec: RunSpec) -> str:
    return master_title(spec.cluster_id, spec.run_tag)


def _stop_when_asked(
    spec: RunSpec,
    should_cancel: Callable[[], bool],
    done: threading.Event,
    on_tick: Callable[[], None] | None,
) -> None:
    """End the run's processes as soon as ``should_cancel`` says so (ansible-runner itself
    looks only every few seconds, and only at ansible-playbook's own process group)."""
    while not done.wait(0.2):
        if should_cancel():
            try:
                end_run(spec.run_tag, spec.kill_grace, title=_master(spec))
            except Exception:
                log.exception("run %s: could not end it on request", spec.run_tag)
            return
        if on_tick is not None:
            try:
                on_tick()
            except Exception:
                log.exception("run %s: tick failed", spec.run_tag)
