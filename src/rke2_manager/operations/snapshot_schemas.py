"""Request and response bodies of the snapshot and restore endpoints."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, Field

from rke2_manager.models import Node, Snapshot, SnapshotList
from rke2_manager.validation import StrictModel

#: A name to save a snapshot under: it becomes part of a file name on the servers.
NAME_PATTERN = r"^[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?$"
#: A full snapshot name as listed (``<name>-<node>-<unix time>``, maybe ``.zip``).
FULL_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$"
FullName = Annotated[
    str,
    Field(
        max_length=255,
        pattern=FULL_NAME_PATTERN,
        description="A snapshot's full name, as GET …/snapshots lists it",
        examples=["before-change-m1-1764680000"],
    ),
]


class SnapshotIn(StrictModel):
    """A snapshot to save."""

    name: Annotated[str, Field(min_length=1, max_length=40, pattern=NAME_PATTERN)] = Field(
        description="1 to 40 characters: lowercase letters, digits and inner '-'. RKE2 saves "
        "the snapshot as <name>-<node>-<unix time>",
        examples=["before-change"],
    )


class RestoreIn(StrictModel):
    """The snapshot to restore."""

    snapshot: FullName


class SnapshotOut(BaseModel):
    name: str = Field(description="Full name, as RKE2 lists it", examples=["pre-x-m1-1764680000"])
    node: str = Field(description="The server that holds it", examples=["m1"])
    size: int | None = Field(description="Bytes, as listed", examples=[5238816])
    taken_at: datetime | None = Field(
        description="When RKE2 says it was created", examples=["2026-12-02T10:00:00Z"]
    )
    location: str = Field(
        description="Where RKE2 says it is", examples=["file:///var/lib/rancher/rke2/server/db/…"]
    )


class ServerListOut(BaseModel):
    node: str = Field(description="A server of the cluster", examples=["m1"])
    listed_at: datetime | None = Field(
        description="When its snapshots were last listed (by a job); null: never, so its "
        "snapshots are unknown",
        examples=["2026-12-02T10:00:05Z"],
    )
    job_id: int | None = Field(description="The job that listed them", examples=[42])


class SnapshotsOut(BaseModel):
    """The cluster's snapshots as each server last listed them: not read live from the
    nodes. Every job that saves, deletes or restores a snapshot, or removes a server, lists
    the snapshots of the servers it reaches."""

    snapshots: list[SnapshotOut] = Field(
        description="Every snapshot of every server, newest first",
        examples=[
            [
                {
                    "name": "before-change-m1-1764680000",
                    "node": "m1",
                    "size": 5238816,
                    "taken_at": "2026-12-02T10:00:00Z",
                    "location": "file:///var/lib/rancher/rke2/server/db/snapshots/"
                    "before-change-m1-1764680000",
                }
            ]
        ],
    )
    servers: list[ServerListOut] = Field(
        description="Each installed server and when its snapshots were last listed",
        examples=[[{"node": "m1", "listed_at": "2026-12-02T10:00:05Z", "job_id": 42}]],
    )


def snapshots_out(
    servers: list[Node], rows: list[tuple[Node, Snapshot]], lists: dict[int, SnapshotList]
) -> SnapshotsOut:
    return SnapshotsOut(
        snapshots=[
            SnapshotOut(
                name=s.name, node=n.hostname, size=s.size, taken_at=s.taken_at, location=s.location
            )
            for n, s in rows
        ],
        servers=[
            ServerListOut(
                node=n.hostname,
                listed_at=lists[n.id].listed_at if n.id in lists else None,
                job_id=lists[n.id].job_id if n.id in lists else None,
            )
            for n in servers
        ],
    )
