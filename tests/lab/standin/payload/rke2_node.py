"""What stand-in servers and agents share: logging, readiness, joining, runtime files."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import rke2_net
import rke2_pki
from rke2_api import KubeletHandler

HERE = Path(__file__).resolve().parent
VERSION = (HERE / "VERSION").read_text().strip() if (HERE / "VERSION").exists() else "v0.0.0"
NODE_PASSWORD = Path("/etc/rancher/node/password")
LB_FILE = rke2_pki.DATA / "agent" / "etc" / "rke2-agent-load-balancer.json"


class JoinRejected(Exception):
    """The server refused this node (wrong token, CA mismatch, duplicate node name)."""


def log(level: str, msg: str) -> None:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    print(f'time="{stamp}" level={level} msg="{msg}"', file=sys.stderr, flush=True)


def fatal(msg: str) -> None:
    log("fatal", msg)
    sys.exit(1)


def notify(message: str = "READY=1") -> None:
    """sd_notify: tell the service manager (the unit is Type=notify) we are up."""
    path = os.environ.get("NOTIFY_SOCKET")
    if not path:
        return
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.connect(path)
        s.send(message.encode())


def node_name(cfg: dict[str, Any]) -> str:
    return str(cfg.get("node-name") or socket.gethostname())


def node_password() -> str:
    """This node's registration password, created on first start like RKE2's."""
    if not NODE_PASSWORD.exists():
        rke2_pki.write_private(NODE_PASSWORD, rke2_pki.random_password() + "\n")
    return NODE_PASSWORD.read_text().strip()


def password_hash(password: str) -> str:
    return hashlib.sha256(password.encode()).hexdigest()


def server_host(url: str) -> str:
    return urlsplit(url if "://" in url else f"https://{url}").hostname or url


def join(url: str, token: str, body: dict[str, Any]) -> tuple[dict[str, Any], bytes]:
    """Register through the supervisor at url; return its answer and the cluster CA.

    Raises JoinRejected (token or node refused) or OSError/HTTPFailure (not reachable/ready).
    """
    want_hash, user, password = rke2_pki.parse_token(token)
    base = f"https://{server_host(url)}:9345"
    ca_pem = str(rke2_net.call(base + "/cacerts", timeout=3)).encode()
    if want_hash and rke2_pki.ca_hash(ca_pem) != want_hash:
        raise JoinRejected("token CA hash does not match the Cluster CA certificate hash")
    ca_file = rke2_pki.DATA / "agent" / "server-ca.crt"
    rke2_pki.write_private(ca_file, ca_pem, 0o644)
    role_user = "server" if body["role"] == "server" else user
    try:
        answer = rke2_net.call(
            base + "/v1-rke2/join", "POST", body, ca=ca_file, auth=(role_user, password), timeout=10
        )
    except rke2_net.HTTPFailure as exc:
        if exc.status in (401, 403):
            try:
                reason = str(json.loads(exc.body)["error"])
            except (ValueError, KeyError, TypeError):
                reason = exc.body.strip() or "token rejected"
            raise JoinRejected(reason) from exc
        raise
    return answer, ca_pem


def join_forever(urls: list[str], token: str, body: dict[str, Any]) -> tuple[dict[str, Any], bytes]:
    """Retry joining (through each of urls in turn) until accepted; never gives up."""
    while True:
        for url in urls:
            try:
                return join(url, token, body)
            except JoinRejected as exc:
                log("error", f"Failed to validate connection to cluster at {url}: {exc}")
            except (OSError, rke2_net.HTTPFailure, ValueError) as exc:
                log("info", f"Waiting to retrieve configuration; server {url} is not ready: {exc}")
        time.sleep(2)


def remember_servers(ips: list[str]) -> None:
    """Keep the supervisor addresses, so a restarted agent can rejoin through any of them."""
    rke2_pki.write_private(LB_FILE, json.dumps({"ServerAddresses": ips}), 0o644)


def remembered_servers() -> list[str]:
    try:
        return [f"https://{ip}:9345" for ip in json.loads(LB_FILE.read_text())["ServerAddresses"]]
    except (OSError, ValueError, KeyError):
        return []


def install_runtime() -> None:
    """Place kubectl under /var/lib/rancher/rke2/bin, as RKE2's first start does."""
    data = rke2_pki.DATA / "data" / VERSION.replace("+", "-")
    (data / "bin").mkdir(parents=True, exist_ok=True)
    lib = data / "standin"
    lib.mkdir(exist_ok=True)
    for src in [*HERE.glob("kubectl*.py"), HERE / "VERSION"]:
        shutil.copy2(src, lib / src.name)
    launcher = data / "bin" / "kubectl"
    launcher.write_text((HERE / "kubectl").read_text())
    launcher.chmod(0o755)
    # Each start points /var/lib/rancher/rke2/bin at the running version's data directory, as
    # RKE2 does when it extracts its runtime: new binaries change kubectl only after a restart.
    link = rke2_pki.DATA / "bin"
    if link.exists() and not link.is_symlink():
        shutil.rmtree(link)
    tmp = link.with_name(".bin.tmp")
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(data / "bin")
    tmp.replace(link)


def start_kubelet(app: Any) -> None:
    rke2_net.TLSServer(10250, KubeletHandler, None, app).serve_in_thread()


def forever() -> None:
    while True:
        time.sleep(3600)


class Agent:
    """``rke2 agent``: registers its node through a server and stays up."""

    ready = False

    def __init__(self, cfg: dict[str, Any]) -> None:
        self.cfg = cfg
        self.name = node_name(cfg)

    def run(self) -> None:
        url, token = self.cfg.get("server"), self.cfg.get("token")
        if not url:
            fatal("--server is required for an agent")
        if not token:
            fatal("--token is required for an agent")
        ip = str(self.cfg.get("node-ip") or rke2_net.local_ip(server_host(str(url))))
        body = {
            "name": self.name,
            "ip": ip,
            "role": "agent",
            "version": VERSION,
            "node_password": password_hash(node_password()),
        }
        urls = [str(url), *[u for u in remembered_servers() if u != url]]
        answer, _ = join_forever(urls, str(token), body)
        remember_servers(answer["servers"])
        install_runtime()
        start_kubelet(self)
        self.ready = True
        log("info", f"rke2 agent is up and running (node {self.name})")
        notify()
        forever()
