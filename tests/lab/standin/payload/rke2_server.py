"""``rke2 server`` of the stand-in: bootstraps or joins a cluster and serves 9345 and 6443."""

from __future__ import annotations

import base64
import os
import socket
import threading
import time
from pathlib import Path
from typing import Any

import rke2_members
import rke2_net
import rke2_node
import rke2_pki
import rke2_requests
import rke2_snapshot
from rke2_api import ApiHandler, SupervisorHandler
from rke2_cluster import STATE_FILE, Store, new_node
from rke2_etcd_api import EtcdHandler
from rke2_node import VERSION, log

RESET_FLAG = rke2_pki.DATA / "server" / "db" / "reset-flag"

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
        # k3s pkg/etcd/etcd.go Start: an initialised etcd (its data under server/db) restarts
        # as the member it was; without data a server with --server joins, else it bootstraps.
        if STATE_FILE.exists():
            self.resume()
        elif url:
            self.join(str(url))
        else:
            self.bootstrap()
        rke2_pki.etcd_certs(self.sans())
        etcd_ctx = rke2_net.server_context(
            *rke2_pki.ETCD_SERVING, client_ca=rke2_pki.ETCD_SERVER_CA[0]
        )
        rke2_net.TLSServer(2379, EtcdHandler, etcd_ctx, self).serve_in_thread()
        delay = float(os.environ.get("RKE2_STANDIN_READY_DELAY", "0") or 0)
        time.sleep(delay)
        self.write_kubeconfig()
        rke2_node.install_runtime()
        ctx = rke2_net.server_context(*SERVING, client_ca=rke2_pki.CA_CRT)
        rke2_net.TLSServer(6443, ApiHandler, ctx, self).serve_in_thread()
        rke2_node.start_kubelet(self)
        self.ready = True
        if not self.post_node_status(retry=False):
            threading.Thread(target=self.post_node_status, daemon=True).start()
        rke2_members.start_member_controller(self)
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
        if rke2_pki.TOKEN.exists() and rke2_pki.CA_CRT.exists():
            # A server whose db was wiped keeps its certificates and token (they are not in db).
            self.password = rke2_pki.parse_token(rke2_pki.TOKEN.read_text().strip())[2]
        else:
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
        log("info", "Starting etcd for existing cluster member")
        self.refuse_other_cluster()
        # k3s pkg/cluster start: "Starting the managed database will clear the reset-flag".
        RESET_FLAG.unlink(missing_ok=True)

    def refuse_other_cluster(self) -> None:
        """Old data after a cluster reset elsewhere: the reset server's etcd has a new cluster
        ID and rejects this member, which never reaches quorum again. Like RKE2 there, wait
        (for ever: the unit's start job never completes) instead of serving the old data."""
        while True:
            others = self.store.others()
            answers = self.store._fan_out(
                lambda ip: self.store._peer(ip, "/v1-rke2/standin/state"), list(others.values())
            )
            foreign = [
                n
                for n, a in zip(others, answers, strict=True)
                if isinstance(a, dict) and not self.store.same_cluster(a)
            ]
            same = sum(isinstance(a, dict) and self.store.same_cluster(a) for a in answers)
            if not foreign or 1 + same >= len(self.store.state["members"]) // 2 + 1:
                return
            log(
                "error",
                f"Failed to test etcd connection: rejected by {', '.join(foreign)}: request "
                "cluster ID mismatch (this member was removed by a cluster reset; delete "
                "/var/lib/rancher/rke2/server/db and restart to rejoin)",
            )
            time.sleep(5)

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
            "member_name": rke2_members.member_name(self.name, force=True),
        }
        answer, ca_pem = rke2_node.join_forever([url], token, body)
        rke2_pki.write_private(rke2_pki.CA_CRT, ca_pem, 0o644)
        rke2_pki.write_private(rke2_pki.CA_KEY, answer["ca_key"])
        rke2_pki.install_etcd_cas(answer.get("etcd_cas", {}))
        rke2_pki.etcd_certs(self.sans(), fresh=True)
        self.password = answer["password"]
        self.issue_certs()
        self.write_token()
        self.supervisor_ctx.load_cert_chain(*[str(p) for p in SERVING])
        self.store = Store(self.name, self.password)
        self.store.adopt(answer["state"])
        log("info", f"Joined etcd cluster through {url}")

    def post_node_status(self, retry: bool = True) -> bool:
        """The kubelet reports its version in the Node's status when it starts (a restart onto
        new binaries changes kubeletVersion): tried once before READY=1, so with quorum the
        start job returns with the Node updated; else retried in the background."""

        def update(state: dict[str, Any]) -> None:
            if self.name in state["nodes"]:
                state["nodes"][self.name]["version"] = VERSION

        while not self.evicted:
            node = self.store.state["nodes"].get(self.name)
            if node is None or node.get("version") == VERSION:
                return True
            try:
                self.store.change(update)
                return True
            except Exception as exc:
                if not retry:
                    return False
                log("info", f"Waiting to update node {self.name} status: {exc}")
                time.sleep(2)
        return False

    def write_kubeconfig(self) -> None:
        def b64(path: Path) -> str:
            return base64.b64encode(path.read_bytes()).decode()

        text = KUBECONFIG_TEMPLATE.format(
            ca=b64(rke2_pki.CA_CRT), crt=b64(ADMIN[0]), key=b64(ADMIN[1])
        )
        mode = self.cfg.get("write-kubeconfig-mode") or 0o600
        rke2_pki.write_private(KUBECONFIG, text, mode if isinstance(mode, int) else int(mode, 8))

    # -- requests (rke2_requests) -----------------------------------------------------------------
    def handle_join(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        return rke2_requests.handle_join(self, body)

    def handle_sync(self, state: dict[str, Any]) -> bool:
        return rke2_requests.handle_sync(self, state)

    def change_node(self, name: str, patch: dict[str, Any] | None) -> dict[str, Any]:
        return rke2_requests.change_node(self, name, patch)

    def handle_snapshot(self, req: dict[str, Any]) -> tuple[int, Any]:
        return rke2_snapshot.handle(self, req)


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
