"""Pinned SSH host keys: accepting a node's new key after it was reinstalled."""

from __future__ import annotations

import base64
import hashlib

from rke2_manager import audit
from rke2_manager.cluster_lock import ensure_idle, lock_cluster_row
from rke2_manager.db import WriteSession
from rke2_manager.errors import NotFound
from rke2_manager.models import Node


def fingerprint(host_key: str | None) -> str | None:
    """OpenSSH's ``SHA256:…`` fingerprint of a ``<type> <base64>`` key (None if unreadable)."""
    if not host_key:
        return None
    parts = host_key.split()
    if len(parts) < 2:
        return None
    try:
        blob = base64.b64decode(parts[1], validate=True)
    except ValueError:
        return None
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def accept_host_key(session: WriteSession, cluster_id: int, hostname: str, actor: str) -> Node:
    """Forget the node's pinned host key, so the next job's first contact pins afresh.

    Locks the cluster row; raises NotFound for an unknown cluster or node and ClusterBusy
    while a job holds the cluster's lock (a running job may be about to pin a key). Audited;
    flushes only, the caller commits.
    """
    cluster = lock_cluster_row(session, cluster_id)
    ensure_idle(cluster)
    node = next((n for n in cluster.nodes if n.hostname == hostname), None)
    if node is None:
        raise NotFound(f"Node '{hostname}' not found in cluster {cluster_id}")
    old, offered = fingerprint(node.host_key), node.host_key_offered
    node.host_key = node.host_key_pinned_at = node.host_key_offered = None
    audit.record(
        session,
        actor,
        "node.accept_host_key",
        cluster_id,
        hostname=hostname,
        old=old,
        offered=offered,
    )
    session.flush()
    return node
