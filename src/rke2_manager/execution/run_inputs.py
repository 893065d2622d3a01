"""The one border untrusted values cross into Ansible: a run's inventory and vars files.

Every value here comes from the database, a request or the operator's settings. Ansible
templates whatever reaches it as a variable unless the value is marked ``!unsafe`` — so a
config value ``"{{ lookup('pipe', 'id') }}"`` would run on the manager. :func:`write_run_inputs`
writes every mapping and list tagged ``!unsafe`` (see :func:`dump`), so ansible-core 2.19
loads every string in them as untrusted data: never rendered, also when concatenated into
playbook expressions, passed to lookups or combined into templates. Nothing goes on the
command line or into the environment: ansible-runner finds ``inventory/hosts.yml`` and
``env/extravars`` (passed as ``-e @path``) in the private data directory, each 0600.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

INVENTORY_FILE = Path("inventory") / "hosts.yml"
EXTRAVARS_FILE = Path("env") / "extravars"
KNOWN_HOSTS_FILE = "known_hosts"


@dataclass(frozen=True)
class HostSpec:
    name: str
    address: str
    role: str
    target: bool
    initial_master: bool = False
    host_key: str | None = None
    """The node's pinned SSH host key, ``<type> <base64>``; None until first contact."""


def _quoted(text: str) -> str:
    """A YAML double-quoted scalar that loads back exactly as ``text``, always a string.

    Only printable ASCII stays literal; everything else is a ``\\x``/``\\u``/``\\U`` escape,
    so no character can end the scalar, start a comment, or be folded as a line break.
    """
    out = []
    for ch in text:
        code = ord(ch)
        if 0x20 <= code < 0x7F and ch not in '"\\':
            out.append(ch)
        elif code < 0x100:
            out.append(f"\\x{code:02x}")
        elif code < 0x10000:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    return '"' + "".join(out) + '"'


def dump(data: Any) -> str:
    """``data`` as YAML (flow style), every mapping and list in it tagged ``!unsafe``.

    Ansible loads everything inside a ``!unsafe`` node as untrusted: no string in ``data``
    (keys included) is ever rendered. Tagging the containers rather than each string keeps
    types: ansible-core 2.19 re-resolves an ``!unsafe`` scalar as if it were plain, so
    ``!unsafe ""`` would load as None and ``!unsafe "on"`` as True, while a quoted scalar
    inside an unsafe mapping stays the string it was. Numbers, booleans and None are written
    as such; anything else raises TypeError (no object reaches Ansible by accident).
    """
    if isinstance(data, str):
        return _quoted(data)
    if data is None:
        return "null"
    if isinstance(data, bool):
        return "true" if data else "false"
    if isinstance(data, int):
        return str(data)
    if isinstance(data, float):
        if not math.isfinite(data):
            raise TypeError(f"cannot hand {data} to Ansible")
        text = repr(data)
        # YAML 1.1 (PyYAML, so Ansible) reads 1e+16 as a string: it wants a dot
        return text.replace("e", ".0e") if "e" in text and "." not in text else text
    if isinstance(data, Mapping):
        items = (f"{_quoted(str(k))}: {dump(v)}" for k, v in data.items())
        return "!unsafe {" + ", ".join(items) + "}"
    if isinstance(data, list | tuple):
        return "!unsafe [" + ", ".join(dump(v) for v in data) + "]"
    raise TypeError(f"cannot hand a {type(data).__name__} to Ansible")


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)


def known_hosts_pattern(address: str, port: int) -> str:
    """How OpenSSH names ``address:port`` in known_hosts (``[addr]:port`` off port 22)."""
    return address if port == 22 else f"[{address}]:{port}"


def inventory(
    hosts: list[HostSpec], ssh_user: str, ssh_port: int, host_key_checking: bool
) -> dict[str, Any]:
    """Groups the playbooks rely on: rke2_servers, rke2_agents, rke2_targets,
    rke2_initial_master; each host's ``ansible_host`` is the node's IP.

    With host key checking, a node whose key is pinned must present exactly that key
    (``StrictHostKeyChecking=yes``); one without is pinned on first contact (``accept-new``).
    Common args, so scp and sftp (the copy module) check the same way as ssh.
    """

    def host_vars(h: HostSpec) -> dict[str, Any]:
        out: dict[str, Any] = {"ansible_host": h.address, "rke2_role": h.role}
        if host_key_checking:
            strict = "yes" if h.host_key else "accept-new"
            out["ansible_ssh_common_args"] = f"-o StrictHostKeyChecking={strict}"
        return out

    def group(names: list[str]) -> dict[str, Any]:
        return {"hosts": {n: {} for n in names}}

    return {
        "all": {
            "hosts": {h.name: host_vars(h) for h in hosts},
            "vars": {
                "ansible_user": ssh_user,
                "ansible_port": ssh_port,
                "ansible_become": ssh_user != "root",
            },
            "children": {
                "rke2_servers": group([h.name for h in hosts if h.role == "server"]),
                "rke2_agents": group([h.name for h in hosts if h.role == "agent"]),
                "rke2_targets": group([h.name for h in hosts if h.target]),
                "rke2_initial_master": group([h.name for h in hosts if h.initial_master]),
            },
        }
    }


def known_hosts(hosts: list[HostSpec], ssh_port: int) -> str:
    """The pinned keys of ``hosts`` as a known_hosts file."""
    lines = [
        f"{known_hosts_pattern(h.address, ssh_port)} {h.host_key}\n" for h in hosts if h.host_key
    ]
    return "".join(lines)


def write_run_inputs(
    private_dir: Path,
    hosts: list[HostSpec],
    extravars: Mapping[str, Any],
    *,
    ssh_user: str,
    ssh_port: int,
    host_key_checking: bool,
) -> Path:
    """Write ``inventory/hosts.yml``, ``env/extravars`` and ``known_hosts`` into the run's
    private directory (which must exist and be ours); return the known_hosts path.

    Every file is created 0600 and must not exist yet (FileExistsError otherwise). The
    extravars hold secrets (the cluster token, secret config keys): tasks that use them are
    ``no_log``.
    """
    _write_private(
        private_dir / INVENTORY_FILE,
        dump(inventory(hosts, ssh_user, ssh_port, host_key_checking)) + "\n",
    )
    _write_private(private_dir / EXTRAVARS_FILE, dump(dict(extravars)) + "\n")
    path = private_dir / KNOWN_HOSTS_FILE
    _write_private(path, known_hosts(hosts, ssh_port) if host_key_checking else "")
    return path


def learned_host_keys(path: Path, hosts: list[HostSpec], ssh_port: int) -> dict[str, str]:
    """Keys SSH added to the run's known_hosts for hosts that had none pinned:
    ``{hostname: "<type> <base64>"}`` (the first key learned per host)."""
    names = {known_hosts_pattern(h.address, ssh_port): h.name for h in hosts if not h.host_key}
    learned: dict[str, str] = {}
    try:
        text = path.read_text()
    except FileNotFoundError:
        return learned
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 3 or line.startswith(("#", "|", "@")):
            continue
        for pattern in parts[0].split(","):
            name = names.get(pattern)
            if name is not None and name not in learned:
                learned[name] = f"{parts[1]} {parts[2]}"
    return learned
