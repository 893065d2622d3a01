"""Helpers to drive and inspect the stand-in RKE2 on lab hosts from tests."""

from __future__ import annotations

import json
import shlex
import ssl
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from tests.lab.hosts import Lab
from tests.lab.ssh import RunResult

ARTIFACT_DEST = "/root/rke2-artifacts"
KUBECTL = "/var/lib/rancher/rke2/bin/kubectl --kubeconfig /etc/rancher/rke2/rke2.yaml"
STATE_FILE = "/var/lib/rancher/rke2/server/db/etcd/standin-state.json"
T = TypeVar("T")


def push_artifact(lab: Lab, host: str, artifact: Path, dest: str = ARTIFACT_DEST) -> None:
    """Copy an artifact directory (see build_artifact) to dest on host."""
    lab.run(host, f"rm -rf {shlex.quote(dest)}", check=True)
    lab.put(host, artifact, dest)


def install(lab: Lab, host: str, role: str = "server", dest: str = ARTIFACT_DEST) -> RunResult:
    """Run the artifact's install.sh on host as the playbooks do."""
    env = f"INSTALL_RKE2_ARTIFACT_PATH={shlex.quote(dest)}"
    if role == "agent":
        env += " INSTALL_RKE2_TYPE=agent"
    return lab.run(host, f"{env} sh {shlex.quote(dest)}/install.sh")


def yaml_config(config: dict[str, Any]) -> str:
    """A config.yaml text (flat keys, scalars or lists of scalars)."""
    lines = []
    for key, value in config.items():
        if isinstance(value, list):
            lines.append(f"{key}:")
            lines += [f"  - {json.dumps(str(v))}" for v in value]
        else:
            lines.append(f"{key}: {json.dumps(value)}")
    return "\n".join(lines) + "\n"


def write_config(lab: Lab, host: str, config: dict[str, Any]) -> None:
    """Write /etc/rancher/rke2/config.yaml on host."""
    lab.run(
        host,
        "mkdir -p /etc/rancher/rke2 && cat > /etc/rancher/rke2/config.yaml",
        input=yaml_config(config),
        check=True,
    )


def start(lab: Lab, host: str, role: str = "server", timeout: float = 60) -> RunResult:
    """``systemctl start rke2-<role>`` on host (blocks until ready, like systemd)."""
    return lab.run(host, f"systemctl start rke2-{role}", timeout=timeout)


def token(lab: Lab, host: str) -> str:
    """The cluster token a server wrote (``K10<ca hash>::server:<password>``)."""
    return lab.run(host, "cat /var/lib/rancher/rke2/server/token", check=True).stdout.strip()


def kubectl(lab: Lab, host: str, args: str, timeout: float = 60) -> RunResult:
    """Run RKE2's kubectl with the admin kubeconfig on a server."""
    return lab.run(host, f"{KUBECTL} {args}", timeout=timeout)


def node_status(lab: Lab, host: str) -> dict[str, str]:
    """Node name -> STATUS column (``Ready``, ``NotReady``, ``Ready,SchedulingDisabled``)."""
    out = kubectl(lab, host, "get nodes --no-headers")
    if not out.ok:
        raise AssertionError(f"kubectl get nodes on {host} failed: {out.stderr}")
    return {line.split()[0]: line.split()[1] for line in out.stdout.splitlines() if line.strip()}


def etcd_members(lab: Lab, host: str) -> dict[str, str]:
    """Etcd members (name -> address) in the stand-in's replicated state on server host."""
    out = lab.run(host, f"cat {STATE_FILE}", check=True).stdout
    members: dict[str, str] = json.loads(out)["members"]
    return members


def supervisor_get(ip: str, path: str, ca_pem: str | None = None, timeout: float = 5) -> str:
    """GET https://ip:9345/path from the manager; verify against ca_pem when given."""
    ctx = ssl.create_default_context(cadata=ca_pem)
    if ca_pem is None:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    # No proxy: lab addresses are only reachable directly.
    opener = urllib.request.build_opener(
        urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=ctx)
    )
    with opener.open(f"https://{ip}:9345{path}", timeout=timeout) as r:
        body: bytes = r.read()
    return body.decode()


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = 60) -> T:
    """Poll probe every 0.5 s until it returns something truthy; AssertionError on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        got = probe()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.5)


def rke2_version(lab: Lab, host: str) -> str:
    """The version the installed rke2 binary reports (first line of ``rke2 --version``)."""
    out = lab.run(host, "/usr/local/bin/rke2 --version", check=True).stdout
    return out.split()[2]


def kubelet_version(lab: Lab, server: str, node: str) -> str:
    """Node's ``.status.nodeInfo.kubeletVersion`` as kubectl on server shows it."""
    jp = shlex.quote("jsonpath={.status.nodeInfo.kubeletVersion}")
    out = kubectl(lab, server, f"get node {shlex.quote(node)} -o {jp}")
    if not out.ok:
        raise AssertionError(f"kubectl get node {node} on {server} failed: {out.stderr}")
    return out.stdout.strip()


ETCD_TLS = "/var/lib/rancher/rke2/server/tls/etcd"
ETCD_CURL = (
    f"curl -sS --cacert {ETCD_TLS}/server-ca.crt --cert {ETCD_TLS}/server-client.crt "
    f"--key {ETCD_TLS}/server-client.key"
)


def etcd_call(
    lab: Lab, host: str, path: str, body: Any = None, address: str = "127.0.0.1"
) -> tuple[int, Any]:
    """(HTTP status, JSON body) of etcd's JSON gateway on address:2379, called with curl on
    host with RKE2's etcd client certificate; POST when body is given."""
    data = f"-X POST -d {shlex.quote(json.dumps(body))} " if body is not None else ""
    out = lab.run(
        host,
        f"{ETCD_CURL} {data}-w '\\n%{{http_code}}' https://{address}:2379{path}",
        timeout=30,
    )
    if not out.ok:
        raise AssertionError(f"curl to etcd on {host} failed: {out.stderr}")
    text, _, status = out.stdout.rpartition("\n")
    return int(status), json.loads(text)


def node_json(lab: Lab, host: str, node: str) -> dict[str, Any]:
    """``kubectl get node NODE -o json`` on host."""
    out = kubectl(lab, host, f"get node {shlex.quote(node)} -o json")
    if not out.ok:
        raise AssertionError(f"kubectl get node {node} on {host} failed: {out.stderr}")
    node_obj: dict[str, Any] = json.loads(out.stdout)
    return node_obj


def start_cluster(lab: Lab, artifact: Path, servers: list[str], agents: list[str]) -> str:
    """Install artifact on every host, start servers (the first bootstraps with token s3cret,
    the others join it), then agents; return the cluster token."""
    first = lab.host(servers[0]).ip
    tok = ""
    for name in servers + agents:
        role = "server" if name in servers else "agent"
        push_artifact(lab, name, artifact)
        res = install(lab, name, role)
        if not res.ok:
            raise AssertionError(f"install on {name} failed: {res.stderr}")
        cfg: dict[str, object] = {"token": tok or "s3cret"}
        if name != servers[0]:
            cfg["server"] = f"https://{first}:9345"
        write_config(lab, name, cfg)
        if not start(lab, name, role).ok:
            raise AssertionError(f"rke2-{role} did not start on {name}")
        tok = tok or token(lab, servers[0])
    return tok


def etcd_member_nodes(lab: Lab, host: str) -> list[str]:
    """Node names of the etcd members, from the JSON gateway on host (sorted)."""
    status, body = etcd_call(lab, host, "/v3/cluster/member/list", {})
    if status != 200:
        raise AssertionError(f"member list on {host}: {status} {body}")
    return sorted(m["name"].rsplit("-", 1)[0] for m in body["members"])
