"""The guard against server-side request forgery for outbound targets (``forward``).

A target is checked on the addresses its host *resolves to*, every one of them, right
before connecting, and the connection goes to exactly those checked addresses — so a
hostname that resolves to a private address, or one whose DNS answer changes between a
check and a connect, cannot reach an internal service. Refused: loopback, private
(RFC 1918, ULA fc00::/7), link-local, unspecified, multicast, shared (100.64.0.0/10),
reserved and documentation ranges — anything Python's ``ipaddress`` does not call
global — and IPv6 addresses that embed such an IPv4 address (IPv4-mapped ``::ffff:a.b.c.d``,
6to4 ``2002::/16``, NAT64 ``64:ff9b::/96``). ``allow_private`` lifts the check, for a
collector on your own network.

Host spellings such as ``2130706433`` or ``0177.0.0.1`` need no rule of their own: the
system resolver turns them into ``127.0.0.1``, and that is what is checked.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address, IPv6Network, ip_address
from typing import Any

from trailseal.errors import TrailsealError

IPAddress = IPv4Address | IPv6Address
Resolver = Callable[..., Sequence[tuple[Any, ...]]]

_NAT64 = IPv6Network("64:ff9b::/96")


class TargetRefused(TrailsealError):
    """The target resolves to an address outside the public Internet."""


class TargetUnresolved(TrailsealError):
    """The target's name does not resolve (now: DNS may answer later)."""


@dataclass(frozen=True)
class Endpoint:
    """One checked address of a target, ready for ``socket.connect``."""

    family: socket.AddressFamily
    sockaddr: tuple[Any, ...]
    address: IPAddress


def _embedded_v4(address: IPv6Address) -> IPv4Address | None:
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64:
        return IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def non_public_reason(address: IPAddress) -> str | None:
    """Why ``address`` is not a public unicast address, or None when it is."""
    if isinstance(address, IPv6Address):
        inner = _embedded_v4(address)
        if inner is not None:
            reason = non_public_reason(inner)
            return f"{reason} (embedded {inner})" if reason else None
    for reason, flagged in (
        ("loopback", address.is_loopback),
        ("unspecified", address.is_unspecified),
        ("link-local", address.is_link_local),
        ("multicast", address.is_multicast),
        ("private", address.is_private),
    ):
        if flagged:
            return reason
    if address.is_reserved or not address.is_global:
        return "not globally routable"
    return None


def check_addresses(host: str, addresses: Sequence[IPAddress], *, allow_private: bool) -> None:
    """Refuse ``host`` unless every one of its ``addresses`` is public."""
    if allow_private:
        return
    for address in addresses:
        reason = non_public_reason(address)
        if reason is not None:
            raise TargetRefused(
                f"refusing {host}: it resolves to {address} ({reason}); "
                "pass --allow-private to send to addresses on your own network"
            )


def resolve(
    host: str,
    port: int,
    *,
    allow_private: bool,
    kind: socket.SocketKind = socket.SOCK_STREAM,
    resolver: Resolver = socket.getaddrinfo,
) -> list[Endpoint]:
    """Every address ``host`` resolves to, once all of them pass the check
    (``TargetRefused`` otherwise; ``TargetUnresolved`` when there are none)."""
    try:
        found = resolver(host, port, type=kind)
    except (socket.gaierror, UnicodeError) as exc:
        raise TargetUnresolved(f"cannot resolve {host}: {exc}") from None
    endpoints = [
        Endpoint(family, sockaddr, ip_address(str(sockaddr[0]).split("%")[0]))
        for family, _, _, _, sockaddr in found
        if family in (socket.AF_INET, socket.AF_INET6)
    ]
    if not endpoints:
        raise TargetUnresolved(f"cannot resolve {host}: no IPv4 or IPv6 address")
    check_addresses(host, [e.address for e in endpoints], allow_private=allow_private)
    return endpoints


def connect(
    endpoints: Sequence[Endpoint], *, kind: socket.SocketKind, timeout: float
) -> socket.socket:
    """A socket connected to the first of ``endpoints`` that answers."""
    last: OSError | None = None
    for endpoint in endpoints:
        sock = socket.socket(endpoint.family, kind)
        sock.settimeout(timeout)
        try:
            sock.connect(endpoint.sockaddr)
            return sock
        except OSError as exc:
            sock.close()
            last = exc
    raise last or OSError("no address to connect to")
