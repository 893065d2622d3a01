"""Settings, read from the environment with the prefix ``RKE2M_`` (and an optional ``.env``)."""

from __future__ import annotations

import ipaddress
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

PACKAGE_DIR = Path(__file__).resolve().parent


class Settings(BaseSettings):
    """Every knob of the service; see the README's configuration table."""

    model_config = SettingsConfigDict(env_prefix="RKE2M_", env_file=".env", extra="ignore")

    data_dir: Path = Path("./data")
    database_url: str = ""
    db_pool_size: int = Field(5, ge=1, le=100)
    db_max_overflow: int = Field(15, ge=0, le=500)
    """Per process. With several API/worker processes on PostgreSQL, keep the sum of
    ``pool_size + max_overflow`` over all processes under the server's ``max_connections``."""
    secret_key: str = ""
    """Key material for encrypting secrets at rest; generated into the data dir when empty."""

    host: str = "127.0.0.1"
    port: int = 8000
    allowed_hosts: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """Names a request's ``Host`` header may carry (DNS rebinding); empty: the listen address,
    ``localhost``, ``127.0.0.1`` and ``::1`` (and this machine's names on a wildcard address).
    ``*`` accepts any."""
    insecure_no_auth: bool = False
    """With no API token created, serve every client (not only loopback) as admin. Labs only."""
    max_body: int = Field(1_048_576, ge=1024, le=64 * 1_048_576)
    """Largest request body in bytes; larger ones get 413 before more is read."""
    artifact_root: Path | None = None
    """Every cluster's ``rke2.artifact_dir`` must lie under it; default ``<data dir>/artifacts``."""

    probe_policy: Literal["off", "warn", "enforce"] = "warn"
    probe_timeout: float = Field(2.0, gt=0, le=30)
    supervisor_port: int = 9345

    allowed_networks: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """If set, jobs and probes only connect to addresses inside these CIDRs."""

    playbook_dir: Path = PACKAGE_DIR / "playbooks"
    ansible_extra_vars: dict[str, Any] = Field(default_factory=dict)
    """JSON object merged into every run's extravars (e.g. playbook timeouts)."""
    task_timeout: int = Field(1800, ge=1)
    """Seconds any one task of a playbook may run on a host (Ansible's ``task_timeout``); a task
    cut off fails its node and the job with ``<host>: task '<name>' did not finish within
    <N>s (RKE2M_TASK_TIMEOUT)``. It bounds a host that stalls after accepting the SSH
    connection. Keep it above the playbooks' own longest bounded waits (``rke2_start_timeout``
    and ``rke2_install_timeout``, 900 s each by default, plus their polling), so those end
    first with their clearer errors."""
    job_timeout: int = Field(7200, ge=1)
    """Seconds a whole playbook run may take (ansible-runner's ``timeout``); past it the run is
    killed and the job fails with ``playbook did not finish within <N>s (RKE2M_JOB_TIMEOUT);
    still running: <host>: task '<name>'``."""
    worker_enabled: bool = True
    worker_concurrency: int = Field(4, ge=1, le=64)
    worker_poll_interval: float = Field(1.0, gt=0)
    lock_ttl: float = Field(300.0, gt=0)
    """Seconds a job's lock lease lasts without renewal (renewed every TTL/3)."""
    lock_check_interval: float = Field(1.0, gt=0)
    """How often a running job checks it still holds its lock (cancel/force-unlock stop it)."""
    maintenance_interval: float = Field(2.0, gt=0)
    """How often each worker reclaims expired leases and starts queued jobs of idle clusters."""
    kill_grace: float = Field(10.0, ge=0, le=600)
    """Seconds a run's processes get between SIGTERM and SIGKILL when it is ended (cancel,
    force-unlock, shutdown, lost lease, orphan found at start-up)."""
    stop_timeout: float = Field(30.0, ge=0, le=3600)
    """How long cancel and force-unlock wait for the job's worker to end its run and settle
    it; past that they end the run themselves if it is on this machine (else the nodes' fences
    refuse it) and settle the job."""
    shutdown_grace: float = Field(60.0, ge=0, le=86_400)
    """On SIGTERM, ``serve`` and ``worker`` stop claiming jobs and let running ones finish for
    this many seconds; then their runs are ended and the jobs fail saying so."""

    @field_validator("allowed_networks", "allowed_hosts", mode="before")
    @classmethod
    def _split_networks(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("allowed_networks")
    @classmethod
    def _check_networks(cls, value: list[str]) -> list[str]:
        for cidr in value:
            ipaddress.ip_network(cidr, strict=False)
        return value

    @model_validator(mode="after")
    def _default_database(self) -> Settings:
        if not self.database_url:
            self.database_url = f"sqlite:///{(self.data_dir / 'rke2-manager.db').resolve()}"
        try:
            url = make_url(self.database_url)
        except ArgumentError as exc:
            raise ValueError(f"RKE2M_DATABASE_URL is not a database URL: {exc}") from exc
        if url.get_backend_name() not in ("sqlite", "postgresql"):
            raise ValueError("RKE2M_DATABASE_URL must be a sqlite:// or postgresql:// URL")
        if url.get_backend_name() == "postgresql" and url.drivername == "postgresql":
            self.database_url = url.set(drivername="postgresql+psycopg").render_as_string(
                hide_password=False
            )
        return self

    @property
    def artifact_root_dir(self) -> Path:
        """Where air-gap artifact directories must lie (absolute, symlinks resolved)."""
        return (self.artifact_root or self.data_dir / "artifacts").resolve()

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()
