"""Which addresses the manager may connect to (``RKE2M_ALLOWED_NETWORKS``; empty = any)."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Sequence


class AddressNotAllowed(Exception):
    """A job or probe would connect outside the allowed networks."""


def resolve(address: str) -> list[str]:
    """The IP addresses ``address`` stands for (itself when it is an IP)."""
    try:
        return [str(ipaddress.ip_address(address))]
    except ValueError:
        infos = socket.getaddrinfo(address, None, proto=socket.IPPROTO_TCP)
        return sorted({str(info[4][0]) for info in infos})


def check_allowed(address: str, networks: Sequence[str]) -> None:
    """Raise AddressNotAllowed unless every IP of ``address`` lies in one of ``networks``."""
    if not networks:
        return
    nets = [ipaddress.ip_network(n, strict=False) for n in networks]
    try:
        ips = resolve(address)
    except OSError as exc:
        raise AddressNotAllowed(f"{address} does not resolve ({exc})") from None
    for ip in ips:
        addr = ipaddress.ip_address(ip)
        if not any(addr.version == net.version and addr in net for net in nets):
            raise AddressNotAllowed(
                f"{address} is outside RKE2M_ALLOWED_NETWORKS ({', '.join(networks)})"
            )
