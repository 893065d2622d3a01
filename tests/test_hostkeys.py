"""Accepting a node's new SSH host key: cleared pins, idle clusters only, audited."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from rke2_manager.clusters.hostkeys import accept_host_key, fingerprint
from rke2_manager.db import Database
from rke2_manager.errors import ClusterBusy, NotFound
from rke2_manager.models import AuditEntry, Node, utcnow
from tests.factories import lock_cluster, make_cluster

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHnA0i7sXk0m7S0jv0n1z3kq3aJ1gYpJtqGf4P2Zb7Zr"


def pin(db: Database, cluster_id: int, hostname: str) -> None:
    with db.transaction() as s:
        node = s.scalars(
            select(Node).where(Node.cluster_id == cluster_id, Node.hostname == hostname)
        ).one()
        node.host_key, node.host_key_pinned_at = KEY, utcnow()
        node.host_key_offered = "SHA256:offered"


def test_accept_clears_the_pin_and_is_audited(db: Database) -> None:
    cid = make_cluster(db, nodes=[("m1", "127.0.10.1", "server", "FAILED")])
    pin(db, cid, "m1")
    with db.transaction() as s:
        node = accept_host_key(s, cid, "m1", "alice")
        assert node.hostname == "m1"
    with db.read_session() as s:
        node = s.scalars(select(Node).where(Node.cluster_id == cid)).one()
        assert (node.host_key, node.host_key_pinned_at, node.host_key_offered) == (None,) * 3
        entry = s.scalars(select(AuditEntry)).one()
        assert (entry.actor, entry.action, entry.cluster_id) == (
            "alice",
            "node.accept_host_key",
            cid,
        )
        assert entry.detail == {
            "hostname": "m1",
            "old": fingerprint(KEY),
            "offered": "SHA256:offered",
        }
    assert (
        fingerprint(KEY) == "SHA256:" + fingerprint(KEY)[7:] and len(fingerprint(KEY) or "") == 50
    )


def test_unknown_node_and_busy_cluster_change_nothing(db: Database) -> None:
    cid = make_cluster(db, nodes=[("m1", "127.0.10.1", "server", "ACTIVE")])
    pin(db, cid, "m1")
    message = f"^Node 'w9' not found in cluster {cid}$"
    with pytest.raises(NotFound, match=message), db.transaction() as s:
        accept_host_key(s, cid, "w9", "alice")
    with pytest.raises(NotFound), db.transaction() as s:
        accept_host_key(s, cid + 100, "m1", "alice")
    lock_cluster(db, cid)
    with pytest.raises(ClusterBusy), db.transaction() as s:
        accept_host_key(s, cid, "m1", "alice")
    with db.read_session() as s:
        assert s.scalars(select(Node.host_key)).one() == KEY
        assert s.scalars(select(AuditEntry)).all() == []
