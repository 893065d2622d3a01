"""Shared input types: RFC 1123 hostnames, IP addresses, node roles."""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


def check_hostname(value: str) -> str:
    """A lowercase RFC 1123 host name (what Kubernetes accepts as a node name)."""
    name = value.strip().lower().rstrip(".")
    if not name or len(name) > 253 or not all(_LABEL.fullmatch(p) for p in name.split(".")):
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


_LABEL_RE = "[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
HOSTNAME_PATTERN = f"^{_LABEL_RE}(\\.{_LABEL_RE})*\\.?$"
"""Names :func:`check_hostname` accepts, for the OpenAPI document (the validator decides:
it also trims surrounding whitespace and trailing dots, and stores the name lowercased)."""
_OCTET = "(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_UNICAST_FIRST_OCTET = "(25[0-5]|24[0-9]|22[0-3]|2[01][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
IPV4_PATTERN = f"^{_UNICAST_FIRST_OCTET}(\\.{_OCTET}){{3}}$"
"""IPv4 addresses outside multicast (224.0.0.0/4), in dotted-quad form without leading zeros."""
_IPV4: dict[str, Any] = {"pattern": IPV4_PATTERN, "not": {"const": "0.0.0.0"}}
_IPV6: dict[str, Any] = {"format": "ipv6"}
_HOSTNAME_DOC = (
    "An RFC 1123 host name (what Kubernetes accepts as a node name): dot-separated labels of "
    "letters, digits and inner hyphens, each at most 63 characters, 253 in all; stored "
    "lowercased, without a trailing dot."
)
_IP_DOC = (
    "A unicast IPv4 or IPv6 address (not 0.0.0.0, ::, or multicast; no IPv6 zone id); stored "
    "in its canonical text form."
)

Hostname = Annotated[
    str,
    Field(
        max_length=253,
        description=_HOSTNAME_DOC,
        examples=["worker-01"],
        json_schema_extra={"pattern": HOSTNAME_PATTERN},
    ),
    AfterValidator(check_hostname),
]
IPAddress = Annotated[
    str,
    Field(
        max_length=45,
        description=_IP_DOC,
        examples=["10.0.0.5"],
        json_schema_extra={"anyOf": [_IPV4, _IPV6]},
    ),
    AfterValidator(check_ip),
]
Address = Annotated[
    str,
    Field(
        max_length=255,
        description="An IP address or a host name (see the node fields' rules)",
        examples=["10.0.0.10"],
        json_schema_extra={"anyOf": [_IPV4, _IPV6, {"pattern": HOSTNAME_PATTERN}]},
    ),
    AfterValidator(check_address),
]
Role = Annotated[
    Literal["server", "agent"],
    Field(
        description="server: a control-plane node (etcd, API server); agent: a worker node",
        examples=["agent"],
    ),
]
MAX_NODES_PER_REQUEST = 100


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid")


def example_of(model: type[BaseModel]) -> dict[str, Any]:
    """An example body of ``model`` for the OpenAPI document: each field's first example."""
    return {name: field.examples[0] for name, field in model.model_fields.items() if field.examples}


class NodeIn(StrictModel):
    """A node to add: ``{"hostname": "w2", "ip": "10.0.0.5", "role": "agent"}``."""

    hostname: Hostname
    ip: IPAddress
    role: Role


class NodeRef(StrictModel):
    """A node to remove, by hostname; ``ip`` and ``role``, when given, must match the node."""

    hostname: Hostname
    ip: IPAddress | None = Field(
        None, description="When given, must be the node's IP", examples=["10.0.0.5"]
    )
    role: Role | None = Field(
        None, description="When given, must be the node's role", examples=["agent"]
    )


class NodesIn(StrictModel):
    """The nodes to add (each hostname and IP new to the cluster and to the request)."""

    nodes: Annotated[
        list[NodeIn],
        Field(
            min_length=1,
            max_length=MAX_NODES_PER_REQUEST,
            description=f"1 to {MAX_NODES_PER_REQUEST} nodes to add",
            examples=[[{"hostname": "w2", "ip": "10.0.0.5", "role": "agent"}]],
        ),
    ]


class NodeRefsIn(StrictModel):
    """The nodes to remove."""

    nodes: Annotated[
        list[NodeRef],
        Field(
            min_length=1,
            max_length=MAX_NODES_PER_REQUEST,
            description=f"1 to {MAX_NODES_PER_REQUEST} nodes of the cluster to remove",
            examples=[[{"hostname": "w2"}]],
        ),
    ]
