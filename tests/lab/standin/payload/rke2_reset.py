"""``rke2 server --cluster-reset [--cluster-reset-restore-path=FILE]`` of the stand-in.

As RKE2's docs ("Cluster reset", "Restoring a snapshot to existing nodes") and k3s
pkg/etcd/etcd.go ``Reset``/``Restore`` and pkg/cluster ``start`` describe it, run in the
foreground with rke2-server stopped:
- with a restore path: the file must exist and be a file ("etcd: snapshot path does not
  exist: …" / "… must be a file, not a directory: …"); the old ``db/etcd`` is moved aside to
  ``db/etcd-old-<unix time>`` and the snapshot's data becomes this server's;
- membership becomes this server alone, under a new member name and a new cluster ID (old
  peers are rejected by ID from now on), node password secrets are dropped (k3s
  deleteNodePasswdSecret), ``db/reset-flag`` is written;
- it logs "Managed etcd cluster membership has been reset, restart without --cluster-reset
  flag now. Backup and delete ${datadir}/server/db on each peer etcd server and rejoin the
  nodes" and exits 0. Without a restore path a second reset is refused while the reset-flag
  exists; ``systemctl start rke2-server`` (a normal start) clears it.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import rke2_members
import rke2_net
import rke2_node
import rke2_pki
import rke2_snapshot
from rke2_cluster import STATE_FILE, new_node

DB = rke2_pki.DATA / "server" / "db"
RESET_FLAG = DB / "reset-flag"
DONE = (
    "Managed etcd cluster membership has been reset, restart without --cluster-reset flag now. "
    "Backup and delete ${datadir}/server/db on each peer etcd server and rejoin the nodes"
)


class ResetError(Exception):
    """Logged as fatal; the command exits 1."""


def fatal(msg: str) -> int:
    rke2_node.log("fatal", msg)
    return 1


def run(cfg: dict[str, Any]) -> int:
    name = rke2_node.node_name(cfg)
    restore = str(cfg.get("cluster-reset-restore-path") or "")
    for port in (9345, 6443, 2379):
        if rke2_net.tcp_open("127.0.0.1", port, 0.3):
            return fatal(
                f"starting kubernetes: preparing server: listen tcp :{port}: bind: address "
                "already in use (stop rke2-server first)"
            )
    if not (rke2_pki.TOKEN.exists() and rke2_pki.CA_CRT.exists()):
        return fatal(
            "starting kubernetes: preparing server: the stand-in resets only an initialised "
            f"server (no {rke2_pki.TOKEN})"
        )
    try:
        if restore:
            state = restored(restore)
        elif RESET_FLAG.exists():
            raise ResetError(
                "Managed etcd cluster membership was previously reset, please remove the "
                "cluster-reset flag and start rke2 normally. If you need to perform another "
                f"cluster reset, you must first manually delete the file at {RESET_FLAG}"
            )
        elif STATE_FILE.exists():
            state = json.loads(STATE_FILE.read_text())
        else:
            raise ResetError(f"etcd database not found in {DB / 'etcd'}")
    except (ResetError, OSError, ValueError, KeyError) as exc:
        return fatal(f"starting kubernetes: preparing server: start managed database: {exc}")
    rke2_node.log("info", "Managed etcd cluster initializing with cluster-reset=true")
    reset_membership(state, name, str(cfg.get("node-ip") or own_ip(state, name)))
    rke2_pki.write_private(STATE_FILE, json.dumps(state, indent=1))
    rke2_pki.write_private(RESET_FLAG, "")
    rke2_node.log("info", DONE)
    return 0


def restored(path_text: str) -> dict[str, Any]:
    """The snapshot's state; the current etcd data goes to ``db/etcd-old-<unix time>``."""
    path = Path(path_text)
    if not path.exists():
        raise ResetError(f"etcd: snapshot path does not exist: {path_text}")
    if path.is_dir():
        raise ResetError(f"etcd: snapshot path must be a file, not a directory: {path_text}")
    state = rke2_snapshot.load(path)
    if STATE_FILE.parent.exists():
        old = DB / f"etcd-old-{int(time.time())}"
        STATE_FILE.parent.rename(old)
        rke2_node.log("info", f"Pre-restore etcd database moved to {old}")
    rke2_node.log("info", f"Restoring etcd snapshot from {path_text}")
    return state


def own_ip(state: dict[str, Any], name: str) -> str:
    node = state.get("nodes", {}).get(name)
    return str(node["ip"]) if node else rke2_net.local_ip()


def reset_membership(state: dict[str, Any], name: str, ip: str) -> None:
    """This server alone, as a new member of a new cluster; other Nodes lose their
    password (k3s deletes node password secrets after a reset)."""
    state["members"], state["member_ids"] = {}, {}
    state["cluster_id"] = rke2_members.new_id()
    state["version"] = int(state.get("version", 0)) + 1
    rke2_members.add(state, name, ip, rke2_members.member_name(name, force=True))
    nodes = state.setdefault("nodes", {})
    for node_name, node in nodes.items():
        if node_name != name:
            node["password"] = None
    if name not in nodes:  # a snapshot from before this server joined: its kubelet registers
        pw = rke2_node.password_hash(rke2_node.node_password())
        nodes[name] = new_node(name, ip, "server", pw, rke2_node.VERSION)
    nodes[name].pop("deleting", None)
    nodes[name]["ip"] = ip
