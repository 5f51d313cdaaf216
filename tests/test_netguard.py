"""The SSRF guard: which addresses are refused, on the resolved addresses, all of them."""

from __future__ import annotations

import socket
from ipaddress import ip_address

import pytest

from trailseal.netguard import (
    TargetRefused,
    TargetUnresolved,
    check_addresses,
    non_public_reason,
    resolve,
)


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("127.255.0.9", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("172.31.255.255", "private"),
        ("192.168.1.1", "private"),
        ("169.254.169.254", "link-local"),  # cloud metadata services live here
        ("0.0.0.0", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("239.255.255.250", "multicast"),
        ("100.64.0.1", "not globally routable"),  # shared address space (RFC 6598)
        ("192.0.2.1", "private"),  # documentation
        ("240.0.0.1", "private"),  # reserved
        ("255.255.255.255", "private"),
        ("::1", "loopback"),
        ("::", "unspecified"),
        ("fe80::1", "link-local"),
        ("fc00::1", "private"),
        ("fd12:3456::1", "private"),
        ("ff02::1", "multicast"),
        ("2001:db8::1", "private"),  # documentation
        ("::ffff:127.0.0.1", "loopback (embedded 127.0.0.1)"),
        ("::ffff:10.0.0.1", "private (embedded 10.0.0.1)"),
        ("::ffff:169.254.169.254", "link-local (embedded 169.254.169.254)"),
        ("2002:7f00:1::", "loopback (embedded 127.0.0.1)"),  # 6to4
        ("64:ff9b::a00:1", "private (embedded 10.0.0.1)"),  # NAT64
    ],
)
def test_non_public_addresses_are_named(address, reason):
    assert non_public_reason(ip_address(address)) == reason


@pytest.mark.parametrize(
    "address", ["8.8.8.8", "1.1.1.1", "151.101.1.69", "2606:4700:4700::1111",
                "2a00:1450:4001:80b::200e", "::ffff:8.8.8.8"],
)
def test_public_addresses_pass(address):
    assert non_public_reason(ip_address(address)) is None


@pytest.mark.parametrize(
    "host", ["127.0.0.1", "localhost", "2130706433", "0177.0.0.1", "0x7f.0.0.1", "127.1",
             "017700000001", "::1", "::ffff:127.0.0.1"],
)
def test_spellings_of_loopback_are_refused_once_resolved(host):
    with pytest.raises(TargetRefused, match="loopback"):
        resolve(host, 514, allow_private=False)


def test_allow_private_lifts_the_check():
    (endpoint, *_) = resolve("127.0.0.1", 514, allow_private=True)
    assert str(endpoint.address) == "127.0.0.1" and endpoint.sockaddr[1] == 514


def _resolver(*addresses: str):
    def getaddrinfo(host, port, type=0):
        found = []
        for text in addresses:
            family = socket.AF_INET6 if ":" in text else socket.AF_INET
            sockaddr = (text, port, 0, 0) if family == socket.AF_INET6 else (text, port)
            found.append((family, type, 6, "", sockaddr))
        return found

    return getaddrinfo


def test_every_resolved_address_must_be_public():
    # A name with one public and one private address is refused: a client may use either.
    mixed = _resolver("93.184.215.14", "10.0.0.5")
    with pytest.raises(TargetRefused, match=r"collector\.example: it resolves to 10\.0\.0\.5"):
        resolve("collector.example", 443, allow_private=False, resolver=mixed)
    endpoints = resolve("collector.example", 443, allow_private=False,
                        resolver=_resolver("93.184.215.14", "2606:2800:21f:cb07::1"))
    assert [str(e.address) for e in endpoints] == ["93.184.215.14", "2606:2800:21f:cb07::1"]


def test_a_name_that_does_not_resolve_is_refused():
    with pytest.raises(TargetUnresolved, match="cannot resolve"):
        resolve("no-such-host.invalid", 443, allow_private=False)


def test_the_message_says_how_to_allow_it():
    with pytest.raises(TargetRefused) as caught:
        check_addresses("db.internal", [ip_address("192.168.0.10")], allow_private=False)
    assert "--allow-private" in str(caught.value) and "192.168.0.10" in str(caught.value)
