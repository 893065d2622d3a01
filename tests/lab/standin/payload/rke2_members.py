"""etcd membership in the stand-in's cluster state, and RKE2's member removal controller.

``state["members"]`` maps node name -> IP (peer URL ``https://<ip>:2380``); ``state["member_ids"]``
maps node name -> ``{"id": <uint64 as decimal string>, "name": "<node>-<8 hex>"}`` (k3s
pkg/etcd/etcd.go ``setName``: the member name is the node name plus 8 hex digits of a UUID,
kept in ``server/db/etcd/name``). ``state["cluster_id"]`` changes on a cluster reset.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import Any

import rke2_pki

#: wrangler's OnRemove handler finalizer for k3s's "managed-etcd-controller"
#: (k3s pkg/etcd/member_controller.go registers nodes.OnRemove(ctx, "managed-etcd-controller")).
ETCD_FINALIZER = "wrangler.cattle.io/managed-etcd-controller"
#: k3s pkg/etcd/etcd.go NodeNameAnnotation / NodeAddressAnnotation (version.Program is "rke2").
NODE_NAME_ANNOTATION = "etcd.rke2.cattle.io/node-name"
NODE_ADDRESS_ANNOTATION = "etcd.rke2.cattle.io/node-address"
NAME_FILE = rke2_pki.DATA / "server" / "db" / "etcd" / "name"


def new_id() -> str:
    """A random non-zero uint64 (etcd derives member and cluster IDs from hashes)."""
    return str(int.from_bytes(os.urandom(8), "big") or 1)


def member_name(node: str, force: bool = False) -> str:
    """This server's etcd member name, created once (or anew with force, as a reset does)."""
    if force or not NAME_FILE.exists():
        rke2_pki.write_private(NAME_FILE, f"{node}-{os.urandom(4).hex()}")
    return NAME_FILE.read_text().strip()


def add(state: dict[str, Any], node: str, ip: str, name: str) -> None:
    """Make node an etcd member (keeps its ID if it already is one with that name)."""
    ids = state.setdefault("member_ids", {})
    old = ids.get(node)
    state["members"][node] = ip
    if old is None or old.get("name") != name:
        ids[node] = {"id": new_id(), "name": name}


def remove(state: dict[str, Any], node: str) -> str | None:
    """Drop node's membership; return its IP (None if it was no member)."""
    state.setdefault("member_ids", {}).pop(node, None)
    ip: str | None = state["members"].pop(node, None)
    return ip


def by_id(state: dict[str, Any], member_id: str) -> str | None:
    """The node name whose member has member_id."""
    for node, info in state.get("member_ids", {}).items():
        if info["id"] == member_id and node in state["members"]:
            return str(node)
    return None


NOT_ENOUGH_STARTED = "etcdserver: re-configuration failed due to not enough started members"


def removable(state: dict[str, Any]) -> bool:
    """etcd membership IsReadyToRemoveVotingMember: the members left (all started here) must
    be a quorum of themselves, so the last member can never be removed."""
    return len(state["members"]) - 1 >= 1


def gateway_members(state: dict[str, Any]) -> list[dict[str, Any]]:
    """Members as etcd's JSON gateway shows them (IDs as decimal strings)."""
    out = []
    for node, ip in sorted(state["members"].items()):
        info = state.get("member_ids", {}).get(node, {"id": "0", "name": node})
        out.append(
            {
                "ID": info["id"],
                "name": info["name"],
                "peerURLs": [f"https://{ip}:2380"],
                "clientURLs": [f"https://{ip}:2379"],
            }
        )
    return out


def member_controller(app: Any) -> None:
    """RKE2's etcd member removal controller (k3s pkg/etcd/member_controller.go onRemove): a
    deleted etcd Node keeps its finalizer until its member is removed, which needs quorum.
    It runs on one server at a time (leader-elected in k3s): here the lowest-named server
    that answers. A member removed otherwise (etcd API) only lets the finalizer go."""

    def finish(state: dict[str, Any]) -> list[str]:
        gone = []
        for name, node in list(state["nodes"].items()):
            if not node.get("deleting"):
                continue
            if name in state["members"] and not removable(state):
                raise RuntimeError(NOT_ENOUGH_STARTED)  # the last member: the Node stays
            ip = remove(state, name)
            if ip:
                gone.append(ip)
            del state["nodes"][name]
        return gone

    while True:
        time.sleep(1)
        try:
            if app.evicted or not any(n.get("deleting") for n in app.store.state["nodes"].values()):
                continue
            if app.store.leader() != app.name:
                continue
            removed = app.store.change(finish)
            if removed:
                app.store.push(removed)
        except Exception as exc:  # no quorum: retried, as the controller's work queue does
            stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            msg = f"Failed to remove etcd member: {exc}"
            print(f'time="{stamp}" level=error msg="{msg}"', file=sys.stderr, flush=True)


def start_member_controller(app: Any) -> None:
    threading.Thread(target=member_controller, args=(app,), daemon=True).start()
