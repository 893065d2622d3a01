"""``rke2 server`` of the stand-in: bootstraps or joins a cluster and serves 9345 and 6443."""

from __future__ import annotations

import base64
import json
import os
import socket
import threading
import time
from pathlib import Path
from typing import Any

import rke2_net
import rke2_node
import rke2_pki
from rke2_api import ApiHandler, SupervisorHandler
from rke2_cluster import Store, new_node
from rke2_node import VERSION, log

KUBECONFIG = Path("/etc/rancher/rke2/rke2.yaml")
SERVING = (rke2_pki.TLS / "serving-kube-apiserver.crt", rke2_pki.TLS / "serving-kube-apiserver.key")
ADMIN = (rke2_pki.TLS / "client-admin.crt", rke2_pki.TLS / "client-admin.key")


class Server:
    """One control-plane node; its Store is the replicated cluster state."""

    def __init__(self, cfg: dict[str, Any]) -> None:
        self.cfg = cfg
        self.name = rke2_node.node_name(cfg)
        self.version = VERSION
        self.ready = False
        self.password = ""
        self.store: Store = Store(self.name, "")
        self.evicted = False
        self.join_lock = threading.Lock()

    def ca_pem(self) -> bytes:
        return rke2_pki.CA_CRT.read_bytes() if rke2_pki.CA_CRT.exists() else b""

    # -- start-up ------------------------------------------------------------------------------
    def run(self) -> None:
        url = self.cfg.get("server")
        self.ip = str(
            self.cfg.get("node-ip")
            or rke2_net.local_ip(rke2_node.server_host(str(url)) if url else None)
        )
        self.node_pw = rke2_node.password_hash(rke2_node.node_password())
        if rke2_pki.TOKEN.exists() and rke2_pki.CA_CRT.exists():
            self.resume()
        elif not url:
            self.bootstrap()
        else:
            self.join(str(url))
        delay = float(os.environ.get("RKE2_STANDIN_READY_DELAY", "0") or 0)
        time.sleep(delay)
        self.write_kubeconfig()
        rke2_node.install_runtime()
        ctx = rke2_net.server_context(*SERVING, client_ca=rke2_pki.CA_CRT)
        rke2_net.TLSServer(6443, ApiHandler, ctx, self).serve_in_thread()
        rke2_node.start_kubelet(self)
        self.ready = True
        threading.Thread(target=self.post_node_status, daemon=True).start()
        log("info", f"rke2 is up and running (node {self.name}, {self.ip})")
        rke2_node.notify()
        rke2_node.forever()

    def start_supervisor(self) -> None:
        """Listen on 9345 at once: /ping answers long before the server is ready."""
        if not SERVING[0].exists():
            tmp_ca = (rke2_pki.TLS / "temporary-ca.crt", rke2_pki.TLS / "temporary-ca.key")
            rke2_pki.make_ca(*tmp_ca, "rke2-temporary-ca")
            rke2_pki.make_leaf(*SERVING, *tmp_ca, "kube-apiserver", sans=self.sans())
        self.supervisor_ctx = rke2_net.server_context(*SERVING)
        rke2_net.TLSServer(9345, SupervisorHandler, self.supervisor_ctx, self).serve_in_thread()

    def sans(self) -> list[str]:
        extra = self.cfg.get("tls-san") or []
        return [
            "127.0.0.1",
            "localhost",
            "kubernetes",
            "kubernetes.default",
            self.ip,
            self.name,
            socket.gethostname(),
            *[str(s) for s in extra],
        ]

    def issue_certs(self) -> None:
        rke2_pki.make_leaf(
            *SERVING, rke2_pki.CA_CRT, rke2_pki.CA_KEY, "kube-apiserver", sans=self.sans()
        )
        rke2_pki.make_leaf(
            *ADMIN, rke2_pki.CA_CRT, rke2_pki.CA_KEY, "system:admin", org="system:masters"
        )

    def write_token(self) -> None:
        rke2_pki.write_private(
            rke2_pki.TOKEN, rke2_pki.full_token(self.ca_pem(), self.password) + "\n"
        )
        link = rke2_pki.TOKEN.with_name("node-token")
        if not link.is_symlink():
            link.symlink_to(rke2_pki.TOKEN)

    def bootstrap(self) -> None:
        """First server: new CA, token and cluster state."""
        token = self.cfg.get("token")
        self.password = rke2_pki.parse_token(str(token))[2] if token else rke2_pki.random_password()
        rke2_pki.make_ca(rke2_pki.CA_CRT, rke2_pki.CA_KEY, "rke2-server-ca")
        self.issue_certs()
        self.write_token()
        self.store = Store(self.name, self.password)
        self.store.bootstrap(self.ip, new_node(self.name, self.ip, "server", self.node_pw, VERSION))
        self.start_supervisor()
        log("info", "Managed etcd cluster initializing")

    def resume(self) -> None:
        """Restart of an existing server: local state first, then catch up from peers."""
        self.password = rke2_pki.parse_token(rke2_pki.TOKEN.read_text().strip())[2]
        self.store = Store(self.name, self.password)
        self.start_supervisor()
        self.store.pull(list(self.store.others().values()))
        log("info", "Starting from existing etcd data")

    def join(self, url: str) -> None:
        """Joining server: /ping answers at once; ready only once the token is accepted."""
        self.start_supervisor()
        token = str(self.cfg.get("token") or "")
        body = {
            "name": self.name,
            "ip": self.ip,
            "role": "server",
            "version": VERSION,
            "node_password": self.node_pw,
        }
        answer, ca_pem = rke2_node.join_forever([url], token, body)
        rke2_pki.write_private(rke2_pki.CA_CRT, ca_pem, 0o644)
        rke2_pki.write_private(rke2_pki.CA_KEY, answer["ca_key"])
        self.password = answer["password"]
        self.issue_certs()
        self.write_token()
        self.supervisor_ctx.load_cert_chain(*[str(p) for p in SERVING])
        self.store = Store(self.name, self.password)
        self.store.adopt(answer["state"])
        log("info", f"Joined etcd cluster through {url}")

    def post_node_status(self) -> None:
        """The kubelet reports its version in the Node's status when it starts (a restart onto
        new binaries changes kubeletVersion); retried until the cluster takes the write."""

        def update(state: dict[str, Any]) -> None:
            if self.name in state["nodes"]:
                state["nodes"][self.name]["version"] = VERSION

        while not self.evicted:
            node = self.store.state["nodes"].get(self.name)
            if node is None or node.get("version") == VERSION:
                return
            try:
                self.store.change(update)
                return
            except Exception as exc:
                log("info", f"Waiting to update node {self.name} status: {exc}")
                time.sleep(2)

    def write_kubeconfig(self) -> None:
        def b64(path: Path) -> str:
            return base64.b64encode(path.read_bytes()).decode()

        text = KUBECONFIG_TEMPLATE.format(
            ca=b64(rke2_pki.CA_CRT), crt=b64(ADMIN[0]), key=b64(ADMIN[1])
        )
        mode = self.cfg.get("write-kubeconfig-mode") or 0o600
        rke2_pki.write_private(KUBECONFIG, text, mode if isinstance(mode, int) else int(mode, 8))

    # -- requests ------------------------------------------------------------------------------
    def handle_join(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """Register a node (agent, or server that becomes an etcd member)."""
        name, role = str(body.get("name", "")), body.get("role")
        if not name or role not in ("server", "agent"):
            return 400, {"error": "bad join request"}

        def add(state: dict[str, Any]) -> None:
            old = state["nodes"].get(name)
            if old is not None and old["password"] != body.get("node_password"):
                raise PermissionError(
                    f"Node password rejected, duplicate hostname or contents of "
                    f"'/etc/rancher/node/password' may not match server node-passwd entry "
                    f"for {name}"
                )
            node = new_node(
                name,
                str(body["ip"]),
                role,
                str(body.get("node_password")),
                str(body.get("version", VERSION)),
            )
            if old is not None:
                node["created"], node["unschedulable"] = old["created"], old["unschedulable"]
            state["nodes"][name] = node
            if role == "server":
                state["members"][name] = node["ip"]

        with self.join_lock:
            try:
                self.store.change(add)
            except PermissionError as exc:
                return 403, {"error": str(exc)}
            except Exception as exc:
                return 503, {"error": str(exc)}
        answer: dict[str, Any] = {"servers": list(self.store.state["members"].values())}
        if role == "server":
            answer.update(
                ca_key=rke2_pki.CA_KEY.read_text(), password=self.password, state=self.store.state
            )
        return 200, answer

    def handle_sync(self, state: dict[str, Any]) -> None:
        was_member = self.store.member
        self.store.adopt(state)
        if was_member and not self.store.member:
            self.evicted = True
            log("error", "this server was removed from the etcd cluster")

    def change_node(self, name: str, patch: dict[str, Any] | None) -> dict[str, Any]:
        """Patch (cordon) or, with patch None, delete a Node; KeyError if there is none."""
        removed: list[str] = []

        def apply(state: dict[str, Any]) -> dict[str, Any]:
            node = state["nodes"][name]
            if patch is None:
                del state["nodes"][name]
                ip = state["members"].pop(name, None)
                if ip:
                    removed.append(ip)
                return dict(node)
            spec = patch.get("spec", {})
            if "unschedulable" in spec:
                node["unschedulable"] = bool(spec["unschedulable"])
            node["labels"].update(patch.get("metadata", {}).get("labels", {}) or {})
            return dict(node)

        node = self.store.change(apply)
        if removed:
            # Tell the removed member, as etcd does when a member is removed.
            self.store.push(removed)
        copy: dict[str, Any] = json.loads(json.dumps(node))
        return copy


KUBECONFIG_TEMPLATE = """\
apiVersion: v1
clusters:
- cluster:
    certificate-authority-data: {ca}
    server: https://127.0.0.1:6443
  name: default
contexts:
- context:
    cluster: default
    user: default
  name: default
current-context: default
kind: Config
preferences: {{}}
users:
- name: default
  user:
    client-certificate-data: {crt}
    client-key-data: {key}
"""
