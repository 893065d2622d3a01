"""``cluster.yaml``: one file that describes a cluster (docs/cli.md), read and checked with
the API's own rules before anything is sent."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import yaml  # type: ignore[import-untyped]
from pydantic import Field, ValidationError, model_validator

from rke2_manager.client.errors import UsageError
from rke2_manager.clusters.rke2config import split_config
from rke2_manager.clusters.schemas import ClusterCreate, ClusterName, RKE2In
from rke2_manager.validation import Address, NodeIn, StrictModel

MAX_FILE = 1_048_576


class SSHFile(StrictModel):
    user: Annotated[str, Field(pattern=r"^[a-z_][a-z0-9_-]{0,31}$")] = "root"
    port: Annotated[int, Field(ge=1, le=65535)] = 22
    private_key_file: str | None = None
    """A path (``~`` expanded, relative to the cluster file); the key is sent when the
    cluster is created (absent: the manager generates one and shows its public key)."""
    host_key_checking: bool = True


class ClusterFile(StrictModel):
    name: ClusterName
    registration_address: Address | None = None
    ssh: SSHFile = Field(default_factory=SSHFile)
    rke2: RKE2In = Field(default_factory=RKE2In)
    nodes: Annotated[list[NodeIn], Field(min_length=1, max_length=100)]

    @model_validator(mode="after")
    def _unique(self) -> ClusterFile:
        for key in ("hostname", "ip"):
            values = [getattr(n, key) for n in self.nodes]
            repeated = sorted({v for v in values if values.count(v) > 1})
            if repeated:
                raise ValueError(f"nodes: {key} {', '.join(repeated)} appears more than once")
        if not any(n.role == "server" for n in self.nodes):
            raise ValueError(
                "nodes: at least one server is needed (the first is the initial master)"
            )
        return self


class Spec:
    """A loaded cluster file."""

    def __init__(self, model: ClusterFile, base: Path) -> None:
        self.model, self.base = model, base

    @property
    def name(self) -> str:
        return self.model.name

    def nodes(self) -> dict[str, dict[str, str]]:
        """hostname -> {hostname, ip, role}, in file order."""
        return {n.hostname: n.model_dump() for n in self.model.nodes}

    def private_key(self) -> str | None:
        path = self.model.ssh.private_key_file
        if path is None:
            return None
        full = (self.base / Path(path).expanduser()).resolve()
        try:
            return full.read_text()
        except OSError as exc:
            raise UsageError(f"ssh.private_key_file: cannot read {full}: {exc.strerror}") from None

    def create_body(self) -> dict[str, Any]:
        """The ``POST /api/clusters`` body (checked against the API's schema here first)."""
        m = self.model
        ssh: dict[str, Any] = {
            "user": m.ssh.user,
            "port": m.ssh.port,
            "host_key_checking": m.ssh.host_key_checking,
        }
        key = self.private_key()
        if key is not None:
            ssh["private_key"] = key
        body = {
            "name": m.name,
            "nodes": [n.model_dump() for n in m.nodes],
            "ssh": ssh,
            "rke2": m.rke2.model_dump(),
            "registration_address": m.registration_address,
        }
        ClusterCreate.model_validate(body)
        return body

    def settings_patch(self, cluster: dict[str, Any], keep_version: bool = False) -> dict[str, Any]:
        """The ``PATCH /api/clusters/{id}`` body that makes the cluster's settings the file's
        (empty: they already are). Secret config keys cannot be read back: they are sent only
        when the cluster does not have them yet. ``keep_version``: leave RKE2's version and
        artifact directory as they are (an upgrade changes them)."""
        m, patch = self.model, dict[str, Any]()
        ssh = cluster["ssh"]
        if (ssh["user"], ssh["port"], ssh["host_key_checking"]) != (
            m.ssh.user,
            m.ssh.port,
            m.ssh.host_key_checking,
        ):
            patch["ssh"] = {
                "user": m.ssh.user,
                "port": m.ssh.port,
                "host_key_checking": m.ssh.host_key_checking,
            }
        have, wanted = cluster["rke2"], m.rke2.model_dump()
        if keep_version:
            wanted.update(version=have["version"], artifact_dir=have["artifact_dir"])
        plain, secrets = split_config(m.rke2.config)
        known = set(have.get("secret_config_keys") or [])
        if (
            (have["version"], have["channel"], have["artifact_dir"])
            != (wanted["version"], wanted["channel"], wanted["artifact_dir"])
            or plain != have["config"]
            or set(secrets) - known  # stored secret values cannot be read back to compare
        ):
            patch["rke2"] = wanted
        if cluster["registration_address"] != m.registration_address:
            patch["registration_address"] = m.registration_address
        return patch


def _message(error: ValidationError) -> str:
    parts = []
    for e in error.errors()[:5]:
        where = ".".join(str(p) for p in e["loc"])
        parts.append(f"{where}: {e['msg']}" if where else e["msg"])
    return "; ".join(parts)


def load(path: Path) -> Spec:
    """Read and check a cluster file; UsageError saying what is wrong and where."""
    try:
        if path.stat().st_size > MAX_FILE:
            raise UsageError(f"{path}: larger than {MAX_FILE} bytes")
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise UsageError(f"{path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise UsageError(f"{path}: expected a mapping (name, nodes, ssh, rke2, …)")
    try:
        model = ClusterFile.model_validate(data)
    except ValidationError as exc:
        raise UsageError(f"{path}: {_message(exc)}") from None
    spec = Spec(model, path.parent)
    try:
        spec.create_body()
    except ValidationError as exc:
        raise UsageError(f"{path}: {_message(exc)}") from None
    return spec
