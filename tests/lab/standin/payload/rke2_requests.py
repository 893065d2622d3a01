"""Requests a stand-in server handles for its peers and for the API: joins, replication,
Node changes (cordon, delete with RKE2's etcd finalizer)."""

from __future__ import annotations

import json
import time
from typing import Any

import rke2_members
import rke2_pki
from rke2_cluster import new_node
from rke2_node import VERSION, log


def handle_join(app: Any, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """Register a node (agent, or server that becomes an etcd member)."""
    name, role = str(body.get("name", "")), body.get("role")
    if not name or role not in ("server", "agent"):
        return 400, {"error": "bad join request"}

    def add(state: dict[str, Any]) -> None:
        old = state["nodes"].get(name)
        # After a cluster reset, k3s deletes the node password secrets (pkg/cluster
        # deleteNodePasswdSecret): a restored Node's password is None and anyone may claim it.
        if old is not None and old["password"] not in (None, body.get("node_password")):
            raise PermissionError(
                f"Node password rejected, duplicate hostname or contents of "
                f"'/etc/rancher/node/password' may not match server node-passwd entry "
                f"for {name}"
            )
        if old is not None and old.get("deleting"):
            raise PermissionError(f"node {name} is being deleted")
        node = new_node(
            name,
            str(body["ip"]),
            role,
            str(body.get("node_password")),
            str(body.get("version", VERSION)),
        )
        if old is not None:
            node["created"], node["unschedulable"] = old["created"], old["unschedulable"]
            node["labels"] = old.get("labels", {})
        state["nodes"][name] = node
        if role == "server":
            member = str(body.get("member_name") or f"{name}-{rke2_members.new_id()[:8]}")
            rke2_members.add(state, name, node["ip"], member)

    with app.join_lock:
        try:
            app.store.change(add)
        except PermissionError as exc:
            return 403, {"error": str(exc)}
        except Exception as exc:
            return 503, {"error": str(exc)}
    answer: dict[str, Any] = {"servers": list(app.store.state["members"].values())}
    if role == "server":
        answer.update(
            ca_key=rke2_pki.CA_KEY.read_text(),
            etcd_cas=rke2_pki.etcd_cas(),
            password=app.password,
            state=app.store.state,
        )
    return 200, answer


def handle_sync(app: Any, state: dict[str, Any]) -> bool:
    """Adopt a peer's newer copy; False if it is of another cluster (a reset one)."""
    if not app.store.same_cluster(state):
        return False
    was_member = app.store.member
    app.store.adopt(state)
    if was_member and not app.store.member:
        app.evicted = True
        log("error", "this server was removed from the etcd cluster")
    return True


def change_node(app: Any, name: str, patch: dict[str, Any] | None) -> dict[str, Any]:
    """Patch (cordon) or, with patch None, delete a Node; KeyError if there is none.

    Deleting an etcd server's Node only marks it (deletionTimestamp): its finalizer stays until
    the member removal controller (rke2_members) has removed its etcd member. Other Nodes go
    at once.
    """

    def apply(state: dict[str, Any]) -> dict[str, Any]:
        node = state["nodes"][name]
        if patch is None:
            if node["role"] == "server":
                node.setdefault("deleting", time.time())
            else:
                del state["nodes"][name]
            return dict(node)
        spec = patch.get("spec", {})
        if "unschedulable" in spec:
            node["unschedulable"] = bool(spec["unschedulable"])
        node["labels"].update(patch.get("metadata", {}).get("labels", {}) or {})
        return dict(node)

    node = app.store.change(apply)
    copy: dict[str, Any] = json.loads(json.dumps(node))
    return copy
