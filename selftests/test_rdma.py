"""The RDMA link detection (lib/migtest/rdma.py), on made-up ``rdma``/``ip`` answers."""

from __future__ import annotations

import json
from typing import Any, Dict, List

import pytest

from migtest.errors import MigtestError, Unavailable
from migtest.rdma import RdmaLink, find_link, parse_ipv4, parse_links, qemu_has_rdma

#: ``rdma -j link`` with a Soft-RoCE link on eth0 (iproute2's JSON).
RXE = {
    "ifindex": 0,
    "ifname": "rxe0",
    "port": 1,
    "state": "ACTIVE",
    "physical_state": "LINK_UP",
    "netdev": "eth0",
    "netdev_index": 2,
}
#: ``ip -j -4 addr show dev eth0``.
ETH0 = [{"ifname": "eth0", "addr_info": [{"family": "inet", "local": "10.0.2.15"}]}]


def test_an_active_rxe_link_with_an_address_is_used() -> None:
    links = parse_links(json.dumps([RXE]))
    addresses = {"eth0": parse_ipv4(json.dumps(ETH0))}
    assert find_link(links, addresses) == RdmaLink("rxe0/1", "eth0", "10.0.2.15")


def test_the_first_usable_link_wins() -> None:
    down = {**RXE, "ifname": "rxe1", "state": "DOWN", "netdev": "eth1"}
    assert find_link([down, RXE], {"eth0": ["10.0.2.15"], "eth1": ["10.0.3.1"]}).name == "rxe0/1"


@pytest.mark.parametrize(
    ("links", "addresses", "named"),
    [
        ([], {}, "no RDMA link"),
        ([{**RXE, "state": "DOWN"}], {"eth0": ["10.0.2.15"]}, "rxe0/1 is DOWN, not ACTIVE"),
        ([{**RXE, "netdev": ""}], {}, "on no network device"),
        ([RXE], {"eth0": []}, "eth0 has no IPv4 address"),
        ([RXE], {}, "eth0 has no IPv4 address"),
    ],
)
def test_no_usable_link_says_what_is_missing(
    links: List[Dict[str, Any]], addresses: Dict[str, List[str]], named: str
) -> None:
    with pytest.raises(Unavailable, match=named) as missing:
        find_link(links, addresses)
    assert not missing.value.expected  # a host without RDMA: a CANCEL, even in strict mode


@pytest.mark.parametrize("text", ["Failed to open NETLINK_RDMA socket", '{"link": 1}', "[1]"])
def test_unreadable_rdma_output_is_an_error(text: str) -> None:
    with pytest.raises(MigtestError):
        parse_links(text)


def test_ipv6_only_device_has_no_ipv4() -> None:
    v6 = [{"ifname": "eth0", "addr_info": [{"family": "inet6", "local": "fe80::1"}]}]
    assert parse_ipv4(json.dumps(v6)) == []
    with pytest.raises(MigtestError):
        parse_ipv4('{"addr_info": 1}')


@pytest.mark.parametrize(
    ("refusal", "has"),
    [
        # QEMU 7.2.22, 10.0.13 and 11.1.3 on this host (measured): built with it.
        ("RDMA ERROR: could not create rdma event channel", True),
        ("unknown migration protocol: rdma:127.0.0.1:4444", False),
        ("Parameter 'transport' does not accept value 'rdma'", None),
    ],
)
def test_qemu_refusal_tells_its_build(refusal: str, has: Any) -> None:
    assert qemu_has_rdma(refusal) is has
