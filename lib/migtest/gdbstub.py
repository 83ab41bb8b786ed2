"""A small client of QEMU's GDB remote protocol stub, to read and write vCPU registers.

The suite's vCPU comparison reads registers through HMP's ``info
registers -a``, which shows what each architecture's dump function
prints; to measure what that comparison catches, a test must change
registers one by one on a paused QEMU, and only the gdbstub can: ``P n=``
writes register ``n`` of the selected vCPU, as GDB does.  Its target
description (``qXfer:features:read:target.xml`` and the files it
includes) names every register the stub knows, with its number and size.

The protocol (GDB's manual, "Remote Protocol"): packets ``$payload#cs``,
``cs`` the payload's byte sum modulo 256 in two hex digits, each
acknowledged by ``+`` (``-`` asks for it again); ``}`` escapes the next
byte (XOR 0x20), and ``*`` repeats the previous one (run-length
encoding).  Register values are hex bytes in the target's byte order.

Never send ``D`` (detach): QEMU's stub resumes the guest on it.  Closing
the socket leaves the guest as it is; connecting stops a running one.

Pure logic apart from :class:`GdbClient`, which talks to a socket.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Literal, Optional, Sequence, Tuple

from .errors import MigtestError
from .wait import wait_for

#: Seconds QEMU's stub may take to answer one packet (it answers in
#: microseconds; a stuck QEMU must still not hang the test).
PACKET_TIMEOUT = 10.0
#: Bytes of a target description asked for at once.
XFER_CHUNK = 0x1000
#: More vCPUs than any QEMU machine has: a thread list longer than this does not end.
MAX_THREADS = 4096

ByteOrder = Literal["little", "big"]

#: Byte order by the target description's ``<architecture>``: the stub
#: sends registers in the target's order (ppc64 would swap for a guest in
#: little-endian mode, MSR[LE]; the suite's guests run big-endian).
BIG_ENDIAN_ARCHITECTURES = ("s390", "powerpc")

_ESCAPED = b"#$}*"
_XINCLUDE = ("{http://www.w3.org/2001/XInclude}include", "include")
#: QEMU writes ``<xi:include>`` without declaring the ``xi`` prefix (GDB
#: does not mind; an XML parser does): read as ``<include>``.
_UNDECLARED_INCLUDE = re.compile(r"<xi:include\b")
_ERROR_REPLY = re.compile(r"^E[0-9a-fA-F]{2}$")

_log = logging.getLogger("migtest.gdbstub")


class GdbError(MigtestError):
    """The stub answered something unexpected, or refused a request."""


def checksum(payload: bytes) -> int:
    """The packet checksum: the payload's byte sum modulo 256."""
    return sum(payload) % 256


def escape(payload: bytes) -> bytes:
    """``payload`` with the bytes the framing reserves escaped (``}`` then XOR 0x20)."""
    out = bytearray()
    for byte in payload:
        if byte in _ESCAPED:
            out += bytes((ord("}"), byte ^ 0x20))
        else:
            out.append(byte)
    return bytes(out)


def unescape(data: bytes) -> bytes:
    """A received payload decoded: escapes undone, run-length encoding expanded.

    :raise GdbError: an escape or a repeat at the end, or a repeat with
        nothing before it.
    """
    out = bytearray()
    i = 0
    while i < len(data):
        byte = data[i]
        if byte == ord("}"):
            if i + 1 >= len(data):
                raise GdbError(f"an escape '}}' ends the payload {data[:60]!r}")
            out.append(data[i + 1] ^ 0x20)
            i += 2
        elif byte == ord("*"):
            if not out or i + 1 >= len(data):
                raise GdbError(f"a repeat '*' with nothing to repeat in {data[:60]!r}")
            out += bytes((out[-1],)) * (data[i + 1] - 29)
            i += 2
        else:
            out.append(byte)
            i += 1
    return bytes(out)


def frame(payload: bytes) -> bytes:
    """The packet that carries ``payload``: ``$escaped#cs``."""
    body = escape(payload)
    return b"$" + body + b"#" + f"{checksum(body):02x}".encode()


def take_packet(buffer: bytes) -> Tuple[Optional[bytes], bytes, int]:
    """The first whole packet in ``buffer``, if any.

    Acknowledgements before it are counted and dropped.

    :return: ``(payload or None, what is left of the buffer, acks seen)``.
    :raise GdbError: a negative acknowledgement, a byte outside any packet,
        or a packet whose checksum is wrong (it names both sums).
    """
    acks = 0
    while buffer[:1] in (b"+", b"-"):
        if buffer[:1] == b"-":
            raise GdbError("the stub refused our last packet ('-': bad checksum on its side)")
        acks += 1
        buffer = buffer[1:]
    if not buffer:
        return None, buffer, acks
    if buffer[:1] != b"$":
        raise GdbError(f"expected '$' or an ack from the stub, got {buffer[:40]!r}")
    end = buffer.find(b"#")
    if end < 0 or len(buffer) < end + 3:
        return None, buffer, acks
    body, sent = buffer[1:end], buffer[end + 1 : end + 3]
    if sent.lower() != f"{checksum(body):02x}".encode():
        raise GdbError(
            f"packet {body[:60]!r} has checksum {sent!r}, its bytes sum to {checksum(body):02x}"
        )
    return unescape(body), buffer[end + 3 :], acks


def decode_value(text: str, byteorder: ByteOrder) -> int:
    """A register value as the stub sends it (hex bytes in ``byteorder``).

    :raise GdbError: not an even number of hex digits.
    """
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raise GdbError(f"register value {text[:40]!r} is not hex bytes") from None
    return int.from_bytes(raw, byteorder)


def encode_value(value: int, bits: int, byteorder: ByteOrder) -> str:
    """``value`` as the stub takes it for a register of ``bits`` bits.

    :raise GdbError: the value does not fit.
    """
    if value < 0 or value >> bits:
        raise GdbError(f"value 0x{value:x} does not fit a {bits}-bit register")
    return value.to_bytes((bits + 7) // 8, byteorder).hex()


def byteorder_of(architecture: str) -> ByteOrder:
    """The byte order of the target a description's ``<architecture>`` names."""
    return "big" if architecture.startswith(BIG_ENDIAN_ARCHITECTURES) else "little"


@dataclass(frozen=True)
class Register:
    """One register of a target description."""

    number: int
    name: str
    bits: int
    #: The ``<feature name=...>`` it belongs to (``org.gnu.gdb.i386.core``).
    feature: str


@dataclass(frozen=True)
class Target:
    """What a target description says: the architecture and every register."""

    architecture: str
    registers: Tuple[Register, ...]

    @property
    def byteorder(self) -> ByteOrder:
        """The order of the bytes of a register value."""
        return byteorder_of(self.architecture)

    def ambiguous(self) -> Tuple[Register, ...]:
        """Registers whose number the description gives another register too.

        QEMU 11.1's ppc64 description numbers its SPRs explicitly from
        169, which GDB's rule also gives to vs31h (measured): a read or
        write of such a number reaches one of them, and nobody can say
        which from the description.
        """
        numbers = [r.number for r in self.registers]
        return tuple(r for r in self.registers if numbers.count(r.number) > 1)


def parse_target(fetch: Callable[[str], str], annex: str = "target.xml") -> Target:
    """The target description ``annex``, with the files it includes.

    Registers are numbered in document order from 0, an ``<reg regnum=>``
    restarting the count there (GDB's rule).

    :param fetch: the text of a description file by its name.
    :raise GdbError: not XML, a ``<reg>`` without name or bitsize, or an
        include loop.
    """
    architecture: List[str] = []
    registers: List[Register] = []
    seen: List[str] = []

    def walk(name: str, feature: str) -> None:
        if name in seen:
            raise GdbError(f"target description {name} includes itself")
        seen.append(name)
        try:
            text = fetch(name)
            if "xmlns:xi" not in text:
                text = _UNDECLARED_INCLUDE.sub("<include", text)
            root = ElementTree.fromstring(text)
        except ElementTree.ParseError as exc:
            raise GdbError(f"target description {name} is not XML: {exc}") from exc
        if root.tag == "feature":  # an included file is one feature
            feature = root.get("name", "")
        visit(root, name, feature)

    def visit(element: ElementTree.Element, name: str, feature: str) -> None:
        for child in element:
            if child.tag == "architecture":
                architecture.append((child.text or "").strip())
            elif child.tag in _XINCLUDE:
                walk(child.get("href", ""), feature)
            elif child.tag == "feature":
                visit(child, name, child.get("name", ""))
            elif child.tag == "reg":
                add(child, name, feature)

    def add(reg: ElementTree.Element, name: str, feature: str) -> None:
        number = registers[-1].number + 1 if registers else 0
        try:
            number = int(reg.get("regnum", number))
            bits = int(reg.get("bitsize", ""))
            registers.append(Register(number, reg.attrib["name"], bits, feature))
        except (KeyError, ValueError):
            raise GdbError(f"{name}: a <reg> without a name or a bitsize: {reg.attrib}") from None

    walk(annex, "")
    return Target(architecture[0] if architecture else "", tuple(registers))


class GdbClient:
    """One connection to QEMU's gdbstub, on a unix socket QEMU listens on.

    :param directory: the directory of the socket (the test's workdir),
        reached through a descriptor so a long path fits the address.
    :param name: the socket's name in ``directory``.
    """

    def __init__(self, directory: Path, name: str, timeout: float = PACKET_TIMEOUT) -> None:
        self._timeout = timeout
        self._buffer = b""
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            self._sock.connect(f"/proc/self/fd/{fd}/{name}")
        except OSError as exc:
            self._sock.close()
            raise GdbError(f"cannot connect to the gdbstub at {directory / name}: {exc}") from exc
        finally:
            os.close(fd)
        try:
            self.target = parse_target(self._description)
        except BaseException:
            self._sock.close()  # no connection left open behind a failed start
            raise

    def close(self) -> None:
        """Close the socket; the guest stays stopped (no ``D``, which resumes it)."""
        self._sock.close()

    def __enter__(self) -> GdbClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(self, payload: str) -> str:
        """Send one packet and return the stub's answer.

        :raise WaitTimeout: no acknowledgement and answer in time, naming
            the request and what had arrived.
        :raise GdbError: the connection broke, or a packet was bad.
        """
        self._buffer = b""
        try:
            self._sock.sendall(frame(payload.encode()))
        except OSError as exc:
            raise GdbError(f"sending {payload[:40]!r} to the gdbstub: {exc}") from exc
        acked: List[int] = [0]

        def answer() -> Tuple[bool, bytes]:
            packet, rest, acks = take_packet(self._buffer)
            acked[0] += acks
            self._buffer = rest
            if packet is None:
                self._receive()
                return False, self._buffer
            self._sock.sendall(b"+")
            if not acked[0]:
                # Sent before it read ours: QEMU 7.2 reports the stop that
                # connecting to a running guest caused ("T05...").  No answer.
                _log.debug("gdbstub sent %r unasked", packet[:60])
                return False, self._buffer
            return True, packet

        reply: bytes = wait_for(
            answer,
            what=f"the gdbstub's answer to {payload[:40]!r} (bytes received shown)",
            timeout=self._timeout,
            interval=0,
        )
        return reply.decode("latin-1")

    def _receive(self) -> None:
        """Add what the stub sent within a short moment to the buffer."""
        self._sock.settimeout(0.05)
        try:
            data = self._sock.recv(65536)
        except socket.timeout:
            return
        except OSError as exc:
            raise GdbError(f"reading from the gdbstub: {exc}") from exc
        if not data:
            raise GdbError(f"the gdbstub closed the connection; it had sent {self._buffer!r}")
        self._buffer += data

    def _expect_ok(self, payload: str) -> None:
        reply = self.request(payload)
        if reply != "OK":
            raise GdbError(f"the gdbstub answered {payload[:40]!r} with {reply[:60]!r}, not OK")

    def _description(self, annex: str) -> str:
        """The text of target description file ``annex`` (``qXfer:features:read``)."""
        text = ""
        while True:
            reply = self.request(f"qXfer:features:read:{annex}:{len(text):x},{XFER_CHUNK:x}")
            if not reply or reply[0] not in "ml":
                raise GdbError(f"the gdbstub has no description {annex!r}: it answered {reply!r}")
            if reply == "m":  # more to come, yet nothing sent: it would never end
                raise GdbError(f"the gdbstub sent an empty piece of {annex!r} after {len(text)}")
            text += reply[1:]
            if reply[0] == "l":
                return text

    def threads(self) -> List[str]:
        """The stub's thread ids (one per vCPU), ``qfThreadInfo`` then ``qsThreadInfo``."""
        ids: List[str] = []
        reply = self.request("qfThreadInfo")
        while reply.startswith("m"):
            if reply == "m" or len(ids) > MAX_THREADS:
                raise GdbError(f"the thread list does not end: {reply!r} after {len(ids)} ids")
            ids += reply[1:].split(",")
            reply = self.request("qsThreadInfo")
        if reply != "l":
            raise GdbError(f"thread list ended with {reply!r}, not 'l'")
        return ids

    def select_cpu(self, index: int) -> None:
        """Make vCPU ``index`` (as ``CPU#n`` counts) the one registers are read and written on.

        Without the multiprocess extension QEMU's thread ids are the
        vCPU's index plus one.
        """
        self._expect_ok(f"Hg{index + 1:x}")

    def read(self, register: Register) -> int:
        """The value of ``register`` on the selected vCPU.

        :raise GdbError: the stub refused, or sent a value of another size.
        """
        reply = self.request(f"p{register.number:x}")
        if _ERROR_REPLY.match(reply) or len(reply) != (register.bits + 7) // 8 * 2:
            raise GdbError(
                f"reading {register.name} ({register.bits} bits): the stub answered {reply[:60]!r}"
            )
        return decode_value(reply, self.target.byteorder)

    def write(self, register: Register, value: int) -> bool:
        """Write ``value`` into ``register`` of the selected vCPU.

        :return: whether the stub took the write (``OK``); it refuses
            registers it only shows (``E..``).  A write taken may still be
            masked: read it back.
        :raise GdbError: any other answer.
        """
        encoded = encode_value(value, register.bits, self.target.byteorder)
        reply = self.request(f"P{register.number:x}={encoded}")
        if reply == "OK":
            return True
        if _ERROR_REPLY.match(reply) or reply == "":
            return False
        raise GdbError(f"writing {register.name}: the stub answered {reply[:60]!r}")


def gdb_options(chardev: str, path: str) -> Sequence[str]:
    """QEMU options for a gdbstub on unix socket ``path`` (relative to QEMU's directory).

    ``-gdb`` takes a character device, ``chardev:ID`` naming one (QEMU
    7.2 to 11.1); a socket that does not wait, so QEMU starts without a
    debugger.
    """
    return [
        "-chardev",
        f"socket,id={chardev},path={path},server=on,wait=off",
        "-gdb",
        f"chardev:{chardev}",
    ]
