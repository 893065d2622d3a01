"""What the manager knows of a cluster's etcd snapshots: the servers' lists as last listed.

``GET /api/clusters/{id}/snapshots`` never runs anything on the nodes (a read must not bypass
the cluster lock, nor wait on SSH). Every job that touches snapshots — save, delete, restore,
a server removal, an upgrade — lists them with ``rke2 etcd-snapshot ls`` on the servers it
reaches, and reports each table (``[rke2m] snapshot saved`` / ``[rke2m] snapshots listed``,
:mod:`rke2_manager.execution.events`). When the job ends, :func:`record_reports` replaces each
reporting server's rows and notes when (and by which job) it was listed, so a reader sees how
old each server's list is. Rows go with their node (foreign keys, ``ON DELETE CASCADE``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from rke2_manager.db import WriteSession
from rke2_manager.execution.events import HostEvent
from rke2_manager.models import Job, Node, NodeRole, Snapshot, SnapshotList, utcnow

#: A full snapshot name as RKE2 lists it (``<name>-<node>-<unix time>``, maybe ``.zip``).
FULL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$")
_BEGIN, _END = "--- snapshots", "--- end"


@dataclass(frozen=True)
class Row:
    name: str
    location: str
    size: int | None
    taken_at: datetime | None


def _time(text: str) -> datetime | None:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        return None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def parse_table(lines: list[Any]) -> list[Row] | None:
    """The rows of ``rke2 etcd-snapshot ls`` output framed by ``--- snapshots``/``--- end``
    (files/rke2m-snapshot.sh), or None when the frame is not there (nothing was listed).

    Columns: Name Location Size Created. The header and lines that are not a row (log lines
    some versions print) are left out; so are names that are not plausible snapshot names
    (the table comes from a host: it is not trusted to name files later).
    """
    text = [str(line) for line in lines]
    if _BEGIN not in text or _END not in text:
        return None
    body = text[text.index(_BEGIN) + 1 : text.index(_END)]
    rows: dict[str, Row] = {}
    for line in body:
        fields = line.split()
        if len(fields) < 4 or (fields[0], fields[1]) == ("Name", "Location"):
            continue
        name, location, size, created = fields[0], fields[1], fields[2], fields[3]
        if not FULL_NAME.fullmatch(name) or len(location) > 4096:
            continue
        rows.setdefault(
            name,
            Row(name, location, int(size) if size.isdigit() else None, _time(created)),
        )
    return list(rows.values())


def record_reports(session: WriteSession, job: Job, reports: list[HostEvent]) -> None:
    """Store what the run reported: each listed server's snapshots (replacing its rows), and
    the name of the snapshot a save made on the job. Hosts that are not servers of the
    job's cluster are ignored."""
    servers = {
        n.hostname: n
        for n in session.scalars(
            select(Node).where(Node.cluster_id == job.cluster_id, Node.role == NodeRole.SERVER)
        )
    }
    for report in reports:
        node = servers.get(report.host)
        data = report.data or {}
        if node is None:
            continue
        saved = data.get("snapshot")
        saved_here = report.task == "[rke2m] snapshot saved" and isinstance(saved, str)
        if saved_here and FULL_NAME.fullmatch(str(saved)):
            job.snapshot = str(saved)
        table = data.get("table")
        rows = parse_table(table) if isinstance(table, list) else None
        if rows is not None:
            replace_list(session, job, node, rows)


def replace_list(session: WriteSession, job: Job, node: Node, rows: list[Row]) -> None:
    """Make ``rows`` the snapshots ``node`` holds, listed now by ``job``."""
    session.execute(delete(Snapshot).where(Snapshot.node_id == node.id))
    for row in rows:
        session.add(
            Snapshot(
                cluster_id=node.cluster_id,
                node_id=node.id,
                name=row.name,
                location=row.location,
                size=row.size,
                taken_at=row.taken_at,
            )
        )
    listed = session.scalars(select(SnapshotList).where(SnapshotList.node_id == node.id)).first()
    if listed is None:
        session.add(SnapshotList(cluster_id=node.cluster_id, node_id=node.id, job_id=job.id))
    else:
        listed.listed_at, listed.job_id = utcnow(), job.id
    session.flush()


def holders(session: Session, cluster_id: int, name: str) -> list[tuple[Node, Snapshot]]:
    """The servers whose last list holds the snapshot ``name``, with its row."""
    return [
        (node, snap)
        for snap, node in session.execute(
            select(Snapshot, Node)
            .join(Node, Node.id == Snapshot.node_id)
            .where(Snapshot.cluster_id == cluster_id, Snapshot.name == name)
            .order_by(Node.id)
        )
    ]


def listing(
    session: Session, cluster_id: int
) -> tuple[list[tuple[Node, Snapshot]], dict[int, SnapshotList]]:
    """Every recorded snapshot with its server, and each server's last listing by node id."""
    rows = [
        (node, snap)
        for snap, node in session.execute(
            select(Snapshot, Node)
            .join(Node, Node.id == Snapshot.node_id)
            .where(Snapshot.cluster_id == cluster_id)
            .order_by(Snapshot.taken_at.desc(), Snapshot.name, Node.id)
        )
    ]
    lists = {
        entry.node_id: entry
        for entry in session.scalars(
            select(SnapshotList).where(SnapshotList.cluster_id == cluster_id)
        )
    }
    return rows, lists
