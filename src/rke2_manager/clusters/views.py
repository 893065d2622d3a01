"""What the guardrails see of a cluster: a plain snapshot of its nodes (no ORM, no I/O)."""

from __future__ import annotations

from rke2_manager.guardrails import ClusterView, NodeView
from rke2_manager.models import Cluster


def snapshot(cluster: Cluster) -> ClusterView:
    """The guardrails' view of a cluster (loaded with its nodes)."""
    return ClusterView(
        nodes=tuple(
            NodeView(
                id=n.id,
                hostname=n.hostname,
                ip=n.ip,
                role=n.role,
                status=n.status,
                is_initial_master=n.is_initial_master,
            )
            for n in cluster.nodes
        ),
        registration_address=cluster.registration_address,
    )
