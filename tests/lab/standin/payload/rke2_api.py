"""HTTP endpoints of the stand-in rke2: supervisor (9345), API server (6443), kubelet (10250)."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

import rke2_configmaps
import rke2_members
import rke2_net
from rke2_cluster import NoQuorum

CONTROL_PLANE_LABELS = ("control-plane", "etcd", "master")


class Handler(BaseHTTPRequestHandler):
    """Shared reply helpers; ``self.server.app`` is the running rke2 node."""

    protocol_version = "HTTP/1.1"
    server_version = "rke2-standin"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    @property
    def app(self) -> Any:
        return self.server.app  # type: ignore[attr-defined]

    def reply(self, status: int, body: Any, ctype: str = "application/json") -> None:
        data = (json.dumps(body) if ctype == "application/json" else str(body)).encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def text(self, status: int, body: str) -> None:
        self.reply(status, body, "text/plain")

    def body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        return json.loads(self.rfile.read(length) or b"null") if length else None

    def status_error(self, status: int, reason: str, message: str) -> None:
        self.reply(
            status,
            {
                "kind": "Status",
                "apiVersion": "v1",
                "status": "Failure",
                "message": message,
                "reason": reason,
                "code": status,
            },
        )


class SupervisorHandler(Handler):
    """Port 9345: /ping and /cacerts for anyone, joins and replication with the token."""

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if path == "/ping":
            self.text(200, "pong")
        elif path == "/cacerts":
            ca = self.app.ca_pem()
            self.text(*((200, ca.decode()) if ca else (503, "not ready")))
        elif path == "/v1-rke2/readyz":
            self.text(*((200, "ok") if self.app.ready else (503, "not ready")))
        elif path == "/v1-rke2/standin/state":
            if self.authorized({"server"}):
                self.reply(200, self.app.store.state)
        else:
            self.text(404, "404 page not found")

    def do_POST(self) -> None:
        path = urlsplit(self.path).path
        if path == "/v1-rke2/join":
            body = self.body() or {}
            roles = {"server"} if body.get("role") == "server" else {"server", "node"}
            if self.authorized(roles):
                status, answer = self.app.handle_join(body)
                self.reply(status, answer)
        elif path == "/db/snapshot":
            if self.authorized({"server"}):
                self.reply(*self.app.handle_snapshot(self.body() or {}))
        elif path == "/v1-rke2/standin/sync":
            if self.authorized({"server"}):
                if self.app.handle_sync(self.body()):
                    self.reply(200, {"ok": True})
                else:
                    self.reply(409, {"error": "request cluster ID mismatch"})
        else:
            self.text(404, "404 page not found")

    def authorized(self, users: set[str]) -> bool:
        if not self.app.ready:
            self.text(503, "server is not ready")
            return False
        cred = rke2_net.basic_auth(self.headers.get("Authorization"))
        if cred is None or cred[0] not in users or cred[1] != self.app.password:
            self.text(401, "Unauthorized")
            return False
        return True


class ApiHandler(Handler):
    """Port 6443: the part of the Kubernetes API the stand-in kubectl uses (client certs)."""

    def objects(self, method: str) -> bool:
        """Namespaced objects (ConfigMaps, rke2_configmaps); False if path is not one."""
        path = urlsplit(self.path).path.rstrip("/")
        if not path.startswith("/api/v1/namespaces/"):
            return False
        body = self.body() if method == "POST" else None
        parts = path[len("/api/v1/namespaces/") :].split("/")
        self.reply(*rke2_configmaps.serve(self.app, method, parts, body))
        return True

    def do_POST(self) -> None:
        if not self.objects("POST"):
            self.status_error(405, "MethodNotAllowed", "not supported by the stand-in")

    def do_GET(self) -> None:
        if self.objects("GET"):
            return
        url = urlsplit(self.path)
        path = url.path.rstrip("/")
        if path in ("/readyz", "/livez", "/healthz"):
            ok = self.app.store.has_quorum()
            self.text(*((200, "ok") if ok else (500, "[-]etcd failed: no quorum")))
        elif path == "/version":
            ver = self.app.version.lstrip("v").split("+")[0].split(".")
            self.reply(
                200,
                {
                    "major": ver[0],
                    "minor": ver[1],
                    "gitVersion": self.app.version,
                    "platform": "linux/amd64",
                },
            )
        elif path == "/api/v1/nodes":
            nodes = list(self.app.store.state["nodes"].values())
            self.reply(
                200,
                {
                    "kind": "NodeList",
                    "apiVersion": "v1",
                    "metadata": {},
                    "items": render_nodes(nodes, self.app.store.state.get("member_ids", {})),
                },
            )
        elif path.startswith("/api/v1/nodes/"):
            node = self.app.store.state["nodes"].get(path.rsplit("/", 1)[1])
            if node is None:
                name = path.rsplit("/", 1)[1]
                self.status_error(404, "NotFound", f'nodes "{name}" not found')
            else:
                self.reply(200, render_nodes([node], self.app.store.state.get("member_ids", {}))[0])
        elif path == "/api/v1/pods":
            selector = parse_qs(url.query).get("fieldSelector", [""])[0]
            self.reply(
                200,
                {
                    "kind": "PodList",
                    "apiVersion": "v1",
                    "items": [],
                    "metadata": {"selector": selector},
                },
            )
        else:
            self.status_error(404, "NotFound", "the server could not find the requested resource")

    def do_PATCH(self) -> None:
        self.mutate(urlsplit(self.path).path, self.body() or {})

    def do_DELETE(self) -> None:
        if self.objects("DELETE"):
            return
        self.mutate(urlsplit(self.path).path, None)

    def mutate(self, path: str, patch: dict[str, Any] | None) -> None:
        if not path.startswith("/api/v1/nodes/"):
            self.status_error(405, "MethodNotAllowed", "not supported by the stand-in")
            return
        name = path.rsplit("/", 1)[1]
        try:
            node = self.app.change_node(name, patch)
        except KeyError:
            self.status_error(404, "NotFound", f'nodes "{name}" not found')
        except NoQuorum as exc:
            self.status_error(500, "InternalError", str(exc))
        else:
            self.reply(200, render_nodes([node], self.app.store.state.get("member_ids", {}))[0])


class KubeletHandler(Handler):
    """Port 10250: a node whose kubelet answers is Ready."""

    def do_GET(self) -> None:
        self.text(200, "ok")


def stamp(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def render_nodes(nodes: list[dict[str, Any]], members: dict[str, Any]) -> list[dict[str, Any]]:
    """Node records as Kubernetes Node objects, Ready when the node's kubelet answers;
    members is the state's ``member_ids``."""
    with ThreadPoolExecutor(max_workers=max(1, len(nodes))) as pool:
        ready = list(pool.map(lambda n: rke2_net.tcp_open(n["ip"], 10250, 0.3), nodes))
    return [node_object(n, r, members) for n, r in zip(nodes, ready, strict=True)]


def node_object(n: dict[str, Any], ready: bool, members: dict[str, Any]) -> dict[str, Any]:
    labels = {
        "kubernetes.io/hostname": n["name"],
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "beta.kubernetes.io/os": "linux",
        **n["labels"],
    }
    if n["role"] == "server":
        labels.update({f"node-role.kubernetes.io/{r}": "true" for r in CONTROL_PLANE_LABELS})
    created = stamp(n["created"])
    taints = (
        [{"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}]
        if n["unschedulable"]
        else []
    )
    cond = {
        "type": "Ready",
        "status": "True" if ready else "Unknown",
        "reason": "KubeletReady" if ready else "NodeStatusUnknown",
        "message": "kubelet is posting ready status"
        if ready
        else "Kubelet stopped posting node status.",
    }
    meta: dict[str, Any] = {
        "name": n["name"],
        "creationTimestamp": created,
        "labels": labels,
        "annotations": {"rke2.io/node-address": n["ip"]},
    }
    if n["role"] == "server":
        # An etcd node carries the member removal controller's finalizer and the member it is.
        meta["finalizers"] = [rke2_members.ETCD_FINALIZER]
        member = members.get(n["name"])
        if member:
            meta["annotations"][rke2_members.NODE_NAME_ANNOTATION] = member["name"]
            meta["annotations"][rke2_members.NODE_ADDRESS_ANNOTATION] = n["ip"]
    if n.get("deleting"):
        meta["deletionTimestamp"] = stamp(n["deleting"])
        meta["deletionGracePeriodSeconds"] = 0
    return {
        "kind": "Node",
        "apiVersion": "v1",
        "metadata": meta,
        "spec": {"unschedulable": n["unschedulable"], "taints": taints},
        "status": {
            "conditions": [cond],
            "addresses": [
                {"type": "InternalIP", "address": n["ip"]},
                {"type": "Hostname", "address": n["name"]},
            ],
            "nodeInfo": {
                "kubeletVersion": n["version"],
                "osImage": "Debian (lab)",
                "containerRuntimeVersion": "containerd://standin",
                "architecture": "amd64",
                "operatingSystem": "linux",
            },
        },
    }
