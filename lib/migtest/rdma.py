"""Migration over RDMA (``rdma:HOST:PORT``), where the host has an RDMA link.

QEMU migrates over RDMA through the RDMA connection manager, to an IP
address bound to an RDMA device; a host without RDMA hardware can have a
Soft-RoCE link (the kernel's ``rdma_rxe``) on an Ethernet device.  QEMU's
own test (``/migration/precopy/rdma/plain``, 10.0) runs only where ``rdma
link`` shows such a link, which its ``scripts/rdma-migration-helper.sh
setup`` adds as root (``rdma link add NAME type rxe netdev IF``), and is
skipped otherwise.  This module finds a usable link, says precisely what
is missing when there is none (the kernel's RDMA subsystem, the link, the
link's IPv4 address, QEMU's RDMA build option), and names the channel.
It loads no kernel module and adds no link: that changes the host.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence

from .endpoint import Endpoint
from .errors import MigtestError, QMPError, Unavailable
from .qapi import Target
from .transport import Channel

#: Seconds ``rdma`` or ``ip`` may take to list links or addresses.
TOOL_TIMEOUT = 10.0
#: Locked memory QEMU's RDMA test wants when not run as root (``ulimit -l``):
#: RDMA registers (pins) guest RAM.
REQUIRED_MEMLOCK = 128 << 20
#: How QEMU refuses a transport it was built without (``migrate-incoming``).
NOT_BUILT = ("unknown migration protocol", "not supported", "rdma is disabled")
#: How a QEMU built with RDMA fails to listen where the host has no RDMA device.
NO_DEVICE = "RDMA ERROR"


@dataclass(frozen=True)
class RdmaLink:
    """An RDMA link that can carry a migration: active, on a netdev with an IPv4 address."""

    #: ``rdma link``'s name, ``rxe0/1``.
    name: str
    netdev: str
    address: str


def parse_links(text: str) -> List[Dict[str, Any]]:
    """The links of ``rdma -j link``.

    :raise MigtestError: the text is not the JSON list ``rdma`` prints.
    """
    try:
        links = json.loads(text or "[]")
    except ValueError as exc:
        raise MigtestError(f"'rdma -j link' printed no JSON: {text[:200]!r}") from exc
    if not isinstance(links, list) or not all(isinstance(link, dict) for link in links):
        raise MigtestError(f"'rdma -j link' printed no list of links: {text[:200]!r}")
    return links


def parse_ipv4(text: str) -> List[str]:
    """The IPv4 addresses in ``ip -j -4 addr show dev IF``'s answer.

    :raise MigtestError: the text is not the JSON ``ip`` prints.
    """
    try:
        interfaces = json.loads(text or "[]")
        return [
            str(info["local"])
            for interface in interfaces
            for info in interface.get("addr_info", [])
            if info.get("family") == "inet" and "local" in info
        ]
    except (ValueError, AttributeError, TypeError, KeyError) as exc:
        raise MigtestError(f"'ip -j -4 addr' printed something else: {text[:200]!r}") from exc


def find_link(
    links: Sequence[Mapping[str, Any]], addresses: Mapping[str, Sequence[str]]
) -> RdmaLink:
    """The first link that can carry a migration.

    :param links: as :func:`parse_links` gives them.
    :param addresses: each link's netdev and its IPv4 addresses.
    :raise Unavailable: none can; the message says what each link lacks.
    """
    if not links:
        raise Unavailable(
            "this host has no RDMA link ('rdma link' lists none): a Soft-RoCE link needs "
            "the rdma_rxe module and, as root, 'rdma link add rxe0 type rxe netdev IF'",
            expected=False,
        )
    why: List[str] = []
    for link in links:
        name = f"{link.get('ifname', '?')}/{link.get('port', '?')}"
        netdev = link.get("netdev")
        if link.get("state") != "ACTIVE":
            why.append(f"{name} is {link.get('state', 'in no state')}, not ACTIVE")
        elif not netdev:
            why.append(f"{name} is on no network device")
        elif not addresses.get(str(netdev)):
            why.append(f"{name}'s network device {netdev} has no IPv4 address")
        else:
            return RdmaLink(name, str(netdev), str(addresses[str(netdev)][0]))
    raise Unavailable(f"no usable RDMA link: {'; '.join(why)}", expected=False)


def _run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command, capture_output=True, text=True, timeout=TOOL_TIMEOUT, check=False
    )


def host_link() -> RdmaLink:
    """This host's usable RDMA link.

    :raise Unavailable: there is none; the message names what is missing:
        the ``rdma`` tool, the kernel's RDMA subsystem (and whether the
        kernel could load ``rdma_rxe`` at all), the link, its address.
    """
    tool = shutil.which("rdma")
    if tool is None:
        raise Unavailable("no RDMA tool: 'rdma' (iproute2) is not installed", expected=False)
    listed = _run(tool, "-j", "link")
    if listed.returncode != 0:
        said = (listed.stderr or listed.stdout).strip() or f"exit status {listed.returncode}"
        raise Unavailable(
            f"this kernel has no RDMA subsystem ('rdma link': {said}){_modules_note()}",
            expected=False,
        )
    links = parse_links(listed.stdout)
    addresses = {
        str(link["netdev"]): parse_ipv4(
            _run("ip", "-j", "-4", "addr", "show", "dev", str(link["netdev"])).stdout
        )
        for link in links
        if link.get("netdev")
    }
    try:
        return find_link(links, addresses)
    except Unavailable as missing:
        raise Unavailable(f"{missing}{_modules_note()}", expected=False) from None


def _modules_note() -> str:
    """Whether this kernel could load ``rdma_rxe``, for the message."""
    if not Path("/proc/modules").exists():
        return "; the kernel loads no modules (no /proc/modules), so not rdma_rxe either"
    if "rdma_rxe" in Path("/proc/modules").read_text():
        return "; rdma_rxe is loaded"
    return "; rdma_rxe is not loaded"


def require_memlock(guest_bytes: int) -> None:
    """:raise Unavailable: QEMU, not root, may lock less memory than RDMA pins."""
    if os.geteuid() == 0:
        return
    soft, _ = resource.getrlimit(resource.RLIMIT_MEMLOCK)
    wanted = max(REQUIRED_MEMLOCK, guest_bytes)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        raise Unavailable(
            f"RDMA pins guest RAM: 'ulimit -l' is {soft >> 10} KiB, {wanted >> 10} KiB needed",
            expected=False,
        )


def qemu_has_rdma(refusal: str) -> Optional[bool]:
    """What QEMU's refusal to listen on ``rdma:`` says of its build.

    :return: ``False``: built without RDMA; ``True``: built with it (it
        tried, and the host has no RDMA device); ``None``: neither.
    """
    lowered = refusal.lower()
    if any(words in lowered for words in NOT_BUILT):
        return False
    if NO_DEVICE in refusal:
        return True
    return None


def qemu_rdma_build(side: Endpoint, port: int) -> str:
    """Whether ``side``'s QEMU has RDMA, in words, asked by listening on ``rdma:``.

    For a message only: a destination that tried cannot migrate any more.
    """
    try:
        side.listen(f"rdma:127.0.0.1:{port}")
    except QMPError as refused:
        has = qemu_has_rdma(refused.desc)
        if has is None:
            return f"{side.describe()} refused rdma: for another reason: {refused.desc}"
        built = "built with RDMA" if has else "built without RDMA (CONFIG_RDMA)"
        return f"{side.describe()} is {built} ({refused.desc})"
    return f"{side.describe()} listens on rdma:127.0.0.1:{port}"


def free_port(address: str) -> int:
    """A port nothing listens on at ``address`` now (the RDMA CM takes no port 0 back)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((address, 0))
        port: int = probe.getsockname()[1]
        return port


class RdmaChannel(Channel):
    """``rdma:ADDRESS:PORT`` on the address of an RDMA link."""

    name = "rdma"

    def __init__(self, link: RdmaLink, label: str = "migration") -> None:
        super().__init__(label)
        self.link = link
        self.port = free_port(link.address)

    @property
    def uri(self) -> str:
        return f"rdma:{self.link.address}:{self.port}"

    def listen_target(self, dst: Endpoint) -> Target:
        return self.uri

    def send_target(self, src: Endpoint, dst: Endpoint) -> Target:
        return self.uri
