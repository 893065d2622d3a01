"""Forgetting a node: taking it out of the cluster without contacting its host.

For a node never installed (PENDING) there is nothing to undo: its job only deletes the row.
A dead node (FAILED, e.g. unreachable when a removal tried it) is removed through a live
server: its Kubernetes Node deleted (``--wait=false``: RKE2's etcd
finalizer holds it), for a server its etcd member removed explicitly through etcd's API (found
by its peer URL), then the Node waited gone. Servers pass G2 like a removal (last server,
quorum, ``confirm_master_removal=true``), except PENDING ones, which are no etcd members. Any
other status (ACTIVE, or a job working on the node) is refused with 409.

Like every operation it runs as a job under the cluster lock (409, or queued). A queued forget
is checked again when it starts; a job queued for the same node afterwards fails at its start
with "Node ... not found".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rke2_manager.config import Settings
from rke2_manager.db import WriteSession
from rke2_manager.errors import Conflict
from rke2_manager.jobs.create import Accepted, OnBusy, locked_cluster, start_jobs
from rke2_manager.jobs.plans import NodeRefSpec, RemoveRequest, targets_of
from rke2_manager.models import Cluster, Job, Node, NodeRole, NodeStatus, Operation

#: What may be forgotten: a node never installed, or one a job found failed (e.g. unreachable).
#: A node the manager last saw working is refused: forgetting a live server would take its etcd
#: member from under it; a removal reaches it, or fails on it and marks it FAILED.
FORGETTABLE = (NodeStatus.PENDING, NodeStatus.FAILED)


@dataclass(frozen=True)
class ForgetRequest(RemoveRequest):
    """Forget one node by hostname (build with :meth:`of`); ``status``: the node's status
    when the forget was asked."""

    status: str | None = None

    @classmethod
    def of(
        cls, hostname: str, confirm_master_removal: bool, status: str | None = None
    ) -> ForgetRequest:
        return cls(Operation.FORGET_NODE, (NodeRefSpec(hostname),), confirm_master_removal, status)

    def params(self) -> dict[str, Any]:
        return {**super().params(), "status": self.status}

    def check_cluster(self, cluster: Cluster) -> tuple[list[Node], list[str], str | None]:
        """Resolve the node (NotFound); refuse (409) if its status changed since the forget
        was asked (a queued forget of a PENDING node that a job ahead installed); G2 for a
        server that is not PENDING. Returns the node, warnings and the new initial master's
        name (when the node is it)."""
        nodes = self.resolve(cluster)
        node = nodes[0]
        if self.status is not None and node.status != self.status:
            raise Conflict(
                f"Node '{node.hostname}' is {node.status} now, not {self.status} as when it was "
                "asked to be forgotten. Ask again if it is still to be forgotten."
            )
        if node.status not in FORGETTABLE:
            raise Conflict(
                f"Node '{node.hostname}' is {node.status}: only a node never installed (PENDING) "
                "or a failed one (FAILED) can be forgotten. Remove a live node with "
                "scale/remove; if its machine is gone, that removal fails on it and marks it "
                "FAILED, and then it can be forgotten."
            )
        if node.role == NodeRole.SERVER and node.status != NodeStatus.PENDING:
            return super().check_cluster(cluster)
        successor = None
        if node.is_initial_master:
            others = [n for n in cluster.nodes if n.role == NodeRole.SERVER and n is not node]
            active = [n for n in others if n.status == NodeStatus.ACTIVE]
            successor = (active or others)[0].hostname if others else None
        return nodes, [], successor

    def apply(self, session: WriteSession, cluster: Cluster, job: Job) -> None:
        nodes, _, successor = self.check_cluster(cluster)
        if nodes[0].is_initial_master:
            for node in cluster.nodes:
                node.is_initial_master = node.hostname == successor
        job.targets = targets_of(nodes)
        job.params = {
            **self.params(),
            # never installed: nothing to do through a server
            "pending": [n.hostname for n in nodes if n.status == NodeStatus.PENDING],
        }


def start_forget(
    session: WriteSession,
    settings: Settings,
    cluster_id: int,
    hostname: str,
    confirm_master_removal: bool,
    actor: str,
    on_busy: OnBusy = "reject",
) -> Accepted:
    """Forget a node. Raises NotFound (cluster or node), ClusterBusy (409), Conflict (409: a node
    neither PENDING nor FAILED), GuardrailViolation (400: G2 for a server)."""
    cluster = locked_cluster(session, cluster_id, on_busy)
    node = next((n for n in cluster.nodes if n.hostname == hostname), None)
    status = node.status if node is not None else None
    request = ForgetRequest.of(hostname, confirm_master_removal, status)
    return start_jobs(session, settings, cluster, [request], actor, on_busy, None)
