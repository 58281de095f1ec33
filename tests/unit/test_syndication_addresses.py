"""Which addresses a partner may be reached at: the syndication worker's classifier, on IP
objects (no network)."""

from __future__ import annotations

from ipaddress import ip_address

import pytest

from syndication_worker.delivery import non_public_reason


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        # RFC 1918, both ends of each range
        ("10.0.0.1", "private"),
        ("10.255.255.254", "private"),
        ("172.16.0.1", "private"),
        ("172.31.255.254", "private"),
        ("192.168.0.1", "private"),
        ("192.168.255.254", "private"),
        # the cloud metadata service (IPv4 and EC2's IPv6 one) and the rest of link-local
        ("169.254.169.254", "link-local (the cloud metadata service)"),
        ("fd00:ec2::254", "link-local (the cloud metadata service)"),
        ("169.254.1.1", "link-local"),
        ("fe80::1", "link-local"),
        ("febf:ffff::1", "link-local"),
        # loopback
        ("127.0.0.1", "loopback"),
        ("127.255.0.9", "loopback"),
        ("::1", "loopback"),
        # IPv6 unique local addresses (fc00::/7)
        ("fc00::1", "private"),
        ("fdff:ffff::1", "private"),
        # IPv4-mapped and NAT64 IPv6 addresses count by their IPv4 address
        ("::ffff:10.0.0.1", "private"),
        ("::ffff:127.0.0.1", "loopback"),
        ("::ffff:169.254.169.254", "link-local (the cloud metadata service)"),
        ("64:ff9b::10.0.0.1", "private"),
        # unspecified, multicast, reserved, shared (carrier-grade NAT)
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("239.255.255.250", "multicast"),
        ("ff02::1", "multicast"),
        ("ff0e::1", "multicast"),
        ("240.0.0.1", "reserved"),
        ("255.255.255.255", "reserved"),
        ("100.64.0.1", "not globally routable"),
    ],
)
def test_an_address_off_the_public_internet_is_refused_with_why(address: str, reason: str) -> None:
    # Given an address a partner's name could resolve to
    # When it is classified
    # Then it is refused, and the reason names its kind
    assert non_public_reason(ip_address(address)) == reason


@pytest.mark.parametrize(
    "address",
    [
        "8.8.8.8",
        "1.1.1.1",
        "172.32.0.1",  # just past 172.16.0.0/12
        "192.169.0.1",  # just past 192.168.0.0/16
        "11.0.0.1",  # just past 10.0.0.0/8
        "52.94.236.248",  # an AWS public address
        "2606:4700:4700::1111",
        "2a00:1450:4001:82b::200e",
        "::ffff:8.8.8.8",
        "64:ff9b::8.8.8.8",
    ],
)
def test_a_public_address_is_allowed(address: str) -> None:
    # Given a public address (IPv4, IPv6, or a public IPv4 address inside IPv6)
    # When it is classified, then nothing stands against it
    assert non_public_reason(ip_address(address)) is None


def test_a_scoped_link_local_address_as_a_socket_reports_it_is_refused() -> None:
    # Given a link-local IPv6 peer as getpeername() gives it, with its interface
    # When it is classified, then the scope does not hide it
    assert non_public_reason(ip_address("fe80::1%eth0")) == "link-local"
