"""Replicated cluster state of the stand-in rke2 (stands in for etcd).

Every server keeps a full copy in ``server/db/etcd/standin-state.json``. A change is made on
one server, needs a quorum of etcd members reachable (like an etcd write), and is pushed to
every other member; a copy with a higher version replaces an older one. Members are servers
whose Node exists: deleting a server's Node removes its membership, as RKE2's controller does
(rke2_members). Copies carry the etcd cluster ID: a copy of another cluster (one that was reset,
k3s ``--cluster-reset``) is never adopted nor counted for quorum, as etcd rejects peers whose
cluster ID differs ("request cluster ID mismatch").
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import rke2_members
import rke2_net
import rke2_pki

STATE_FILE = rke2_pki.DATA / "server" / "db" / "etcd" / "standin-state.json"
SUPERVISOR_PORT = 9345


class NoQuorum(Exception):
    """Fewer than a majority of etcd members answer: the cluster cannot change."""


class Store:
    """This server's copy of the cluster state."""

    def __init__(self, me: str, password: str) -> None:
        self.me = me
        self.password = password
        self.lock = threading.RLock()  # serialises changes made here
        self.swap = threading.Lock()  # guards replacing the state (changes or adoption)
        self.state: dict[str, Any] = {"version": 0, "nodes": {}, "members": {}, "cluster_id": ""}
        if STATE_FILE.exists():
            self.state = json.loads(STATE_FILE.read_text())

    # -- persistence ---------------------------------------------------------------------------
    def save(self) -> None:
        rke2_pki.write_private(STATE_FILE, json.dumps(self.state, indent=1))

    @property
    def member(self) -> bool:
        return self.me in self.state["members"]

    def others(self) -> dict[str, str]:
        return {n: ip for n, ip in self.state["members"].items() if n != self.me}

    # -- peers ---------------------------------------------------------------------------------
    def _peer(self, ip: str, path: str, body: Any = None, method: str = "GET") -> Any:
        return rke2_net.call(
            f"https://{ip}:{SUPERVISOR_PORT}{path}",
            method,
            body,
            ca=rke2_pki.CA_CRT,
            auth=("server", self.password),
            timeout=2.0,
        )

    def _fan_out(self, fn: Callable[[str], Any], ips: list[str]) -> list[Any]:
        """Call fn(ip) for every ip in parallel; failures come back as None."""

        def safe(ip: str) -> Any:
            try:
                return fn(ip)
            except Exception:
                return None

        if not ips:
            return []
        with ThreadPoolExecutor(max_workers=len(ips)) as pool:
            return list(pool.map(safe, ips))

    def same_cluster(self, remote: dict[str, Any]) -> bool:
        return str(remote.get("cluster_id", "")) == str(self.state.get("cluster_id", ""))

    def peer_states(self) -> dict[str, dict[str, Any]]:
        """Node name -> state, of the other members that answer and share our cluster ID."""
        others = self.others()
        answers = self._fan_out(
            lambda ip: self._peer(ip, "/v1-rke2/standin/state"), list(others.values())
        )
        return {
            name: a
            for name, a in zip(others, answers, strict=True)
            if isinstance(a, dict) and self.same_cluster(a)
        }

    def has_quorum(self) -> bool:
        """A majority of members (this server included) answer."""
        if not self.member:
            return False
        answers = self.peer_states()
        for answer in answers.values():
            self.adopt(answer)
        return 1 + len(answers) >= len(self.state["members"]) // 2 + 1

    def leader(self) -> str:
        """The lowest-named member that answers (this server included): where controllers run."""
        return min([self.me, *self.peer_states()])

    def push(self, extra: list[str] | None = None) -> None:
        """Send the current state to every other member (and to extra addresses)."""
        ips = list(self.others().values()) + (extra or [])
        snapshot = json.loads(json.dumps(self.state))
        self._fan_out(lambda ip: self._peer(ip, "/v1-rke2/standin/sync", snapshot, "POST"), ips)

    def adopt(self, remote: dict[str, Any]) -> bool:
        """Take remote's state if it is newer; return whether it was."""
        with self.swap:
            if int(self.state["version"]) and not self.same_cluster(remote):
                return False
            if int(remote.get("version", 0)) <= int(self.state["version"]):
                return False
            self.state = remote
            self.save()
            return True

    def pull(self, ips: list[str]) -> None:
        """Catch up from whichever of ips answers with the newest state."""
        for answer in self._fan_out(lambda ip: self._peer(ip, "/v1-rke2/standin/state"), ips):
            if answer is not None:
                self.adopt(answer)

    # -- changes -------------------------------------------------------------------------------
    def change(self, fn: Callable[[dict[str, Any]], Any], notify: list[str] | None = None) -> Any:
        """Apply fn to the state under quorum, bump the version, persist and replicate.

        Raises NoQuorum when a majority of members does not answer; whatever fn raises
        leaves the state unchanged.
        """
        with self.lock:
            if not self.has_quorum():
                raise NoQuorum("etcdserver: request timed out (no quorum)")
            draft = json.loads(json.dumps(self.state))
            result = fn(draft)
            with self.swap:
                draft["version"] = int(self.state["version"]) + 1
                self.state = draft
                self.save()
            self.push(notify)
            return result

    def bootstrap(self, ip: str, node: dict[str, Any]) -> None:
        """Start a new cluster with this server as its only member."""
        with self.swap:
            self.state = {
                "version": 1,
                "nodes": {self.me: node},
                "members": {},
                "cluster_id": rke2_members.new_id(),
                "created": time.time(),
            }
            rke2_members.add(self.state, self.me, ip, rke2_members.member_name(self.me))
            self.save()


def new_node(name: str, ip: str, role: str, password_hash: str, version: str) -> dict[str, Any]:
    """A Node record as the stand-in keeps it."""
    return {
        "name": name,
        "ip": ip,
        "role": role,
        "created": time.time(),
        "unschedulable": False,
        "password": password_hash,
        "version": version,
        "labels": {},
    }
