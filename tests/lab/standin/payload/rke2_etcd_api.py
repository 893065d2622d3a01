"""Port 2379 of a stand-in server: the part of etcd's client API that day-2 tools use.

As RKE2 runs etcd: HTTPS with client-certificate auth (``--client-cert-auth``), certificates in
``/var/lib/rancher/rke2/server/tls/etcd/`` (server-ca.crt signs server-client.crt and
client.crt). Served through etcd's JSON gateway (grpc-gateway; uint64 fields as decimal
strings, errors as ``{"error", "code" (gRPC), "message"}``):
- ``POST /v3/cluster/member/list`` ``{}``: served from the local copy (not linearizable, like
  the gateway's default MemberListRequest), so it answers without quorum too.
- ``POST /v3/cluster/member/remove`` ``{"ID": "<id>"}``: needs quorum; refuses to remove the
  last member, or a connected member when the rest would lack quorum (etcd's strict reconfig
  check).
- ``GET /health``: ``{"health":"true","reason":""}``, or 503 with "false" without quorum.
- ``GET /version``.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import rke2_members
from rke2_api import Handler
from rke2_cluster import NoQuorum

ETCD_VERSION = {"etcdserver": "3.5.16", "etcdcluster": "3.5.0"}
#: gRPC status -> HTTP status, as grpc-gateway maps them.
HTTP_OF = {5: 404, 9: 400, 3: 400, 14: 503}


class EtcdHandler(Handler):
    """JSON gateway of the stand-in etcd (``self.app`` is the running Server)."""

    def grpc_error(self, code: int, message: str) -> None:
        self.reply(HTTP_OF.get(code, 500), {"error": message, "code": code, "message": message})

    def header(self) -> dict[str, str]:
        state = self.app.store.state
        me = state.get("member_ids", {}).get(self.app.name, {"id": "0"})
        return {
            "cluster_id": str(state.get("cluster_id", "")),
            "member_id": me["id"],
            "raft_term": str(state["version"]),
        }

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if path == "/health":
            ok = self.app.store.has_quorum()
            body = {"health": "true" if ok else "false", "reason": "" if ok else "RAFT NO LEADER"}
            self.reply(200 if ok else 503, body)
        elif path == "/version":
            self.reply(200, ETCD_VERSION)
        else:
            self.text(404, "404 page not found\n")

    def do_POST(self) -> None:
        path = urlsplit(self.path).path
        try:
            body = self.body() or {}
        except ValueError:
            self.grpc_error(3, "invalid character in request body")
            return
        if path == "/v3/cluster/member/list":
            state = self.app.store.state
            self.reply(
                200, {"header": self.header(), "members": rke2_members.gateway_members(state)}
            )
        elif path == "/v3/cluster/member/remove":
            self.member_remove(str(body.get("ID", "")) if isinstance(body, dict) else "")
        else:
            self.text(404, "404 page not found\n")

    def member_remove(self, member_id: str) -> None:
        store = self.app.store
        node = rke2_members.by_id(store.state, member_id)
        if node is None:
            self.grpc_error(5, "etcdserver: member not found")
            return
        # etcd server.go mayRemoveMember (strict reconfig check): never the last member; a
        # member that is down may go; removing a connected one must leave the active a quorum.
        if not rke2_members.removable(store.state):
            self.grpc_error(9, rke2_members.NOT_ENOUGH_STARTED)
            return
        active = {self.app.name, *store.peer_states()}
        voting = len(store.state["members"])
        if node in active and len(active) - 1 < 1 + (voting - 1) // 2:
            self.grpc_error(14, "etcdserver: unhealthy cluster")
            return

        def drop(state: dict[str, Any]) -> str | None:
            if rke2_members.by_id(state, member_id) != node:
                raise KeyError(member_id)
            return rke2_members.remove(state, node)

        try:
            ip = store.change(drop)
        except KeyError:
            self.grpc_error(5, "etcdserver: member not found")
            return
        except NoQuorum:
            self.grpc_error(14, "etcdserver: request timed out")
            return
        if ip:
            store.push([ip])  # the removed member learns it is out, as etcd tells it
        self.reply(
            200,
            {"header": self.header(), "members": rke2_members.gateway_members(store.state)},
        )
