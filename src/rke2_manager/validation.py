"""Shared input types: RFC 1123 hostnames, IP addresses, node roles."""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


def check_hostname(value: str) -> str:
    """A lowercase RFC 1123 host name (what Kubernetes accepts as a node name)."""
    name = value.strip().lower().rstrip(".")
    if not name or len(name) > 253 or not all(_LABEL.match(p) for p in name.split(".")):
        raise ValueError(f"'{value}' is not a valid RFC 1123 hostname")
    return name


def check_ip(value: str) -> str:
    """A unicast IPv4 or IPv6 address, in its canonical text form; IPv6 zone ids (``%eth0``)
    are refused: a node is named by a global address, and the zone is free text."""
    shown = value if len(value) <= 64 else value[:61] + "..."
    if "%" in value:
        raise ValueError(f"'{shown}' is not a valid IP address (zone ids are not allowed)")
    try:
        addr = ipaddress.ip_address(value.strip())
    except ValueError:
        raise ValueError(f"'{shown}' is not a valid IP address") from None
    if addr.is_unspecified or addr.is_multicast:
        raise ValueError(f"'{value}' is not a unicast address")
    return str(addr)


def check_address(value: str) -> str:
    """A host name or an IP address (registration addresses)."""
    try:
        return check_ip(value)
    except ValueError:
        try:
            return check_hostname(value)
        except ValueError:
            raise ValueError(f"'{value}' is neither an IP address nor a hostname") from None


Hostname = Annotated[str, Field(max_length=253), AfterValidator(check_hostname)]
IPAddress = Annotated[str, Field(max_length=45), AfterValidator(check_ip)]
Address = Annotated[str, Field(max_length=255), AfterValidator(check_address)]
Role = Literal["server", "agent"]
MAX_NODES_PER_REQUEST = 100


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NodeIn(StrictModel):
    """A node to add: ``{"hostname": "w2", "ip": "10.0.0.5", "role": "agent"}``."""

    hostname: Hostname
    ip: IPAddress
    role: Role


class NodeRef(StrictModel):
    """A node to remove, by hostname; ``ip`` and ``role``, when given, must match the node."""

    hostname: Hostname
    ip: IPAddress | None = None
    role: Role | None = None


class NodesIn(StrictModel):
    nodes: Annotated[list[NodeIn], Field(min_length=1, max_length=MAX_NODES_PER_REQUEST)]


class NodeRefsIn(StrictModel):
    nodes: Annotated[list[NodeRef], Field(min_length=1, max_length=MAX_NODES_PER_REQUEST)]
