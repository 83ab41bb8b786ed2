"""The gdbstub client's pure logic: framing, checksums, escapes, descriptions, values.

And the verdicts of the register-fault measurement (:mod:`migtest.vcpu_faults`).
"""

from __future__ import annotations

import socket
import threading
from pathlib import Path
from typing import Dict, Iterator

import pytest

from migtest.errors import CheckFailure, MigtestError, WaitTimeout
from migtest.gdbstub import (
    GdbClient,
    GdbError,
    Register,
    Target,
    byteorder_of,
    checksum,
    decode_value,
    encode_value,
    escape,
    frame,
    parse_target,
    take_packet,
    unescape,
)
from migtest.vcpu_faults import (
    Fault,
    Measurement,
    changed_lines,
    changed_registers,
    judge,
    measure,
    noisy_lines,
)
from migtest.vcpu_state import Run

# -- framing ----------------------------------------------------------------------


def test_checksum_is_the_byte_sum_modulo_256() -> None:
    assert checksum(b"OK") == (ord("O") + ord("K")) % 256 == 0x9A
    assert frame(b"OK") == b"$OK#9a"
    assert frame(b"") == b"$#00"


def test_reserved_bytes_are_escaped_and_back() -> None:
    payload = b"a#b$c}d*e"
    escaped = escape(payload)
    assert escaped == b"a}\x03b}\x04c}]d}\x0ae"
    assert b"#" not in escaped and b"$" not in escaped
    assert unescape(escaped) == payload
    # The checksum covers the bytes as sent, escapes included.
    assert frame(payload) == b"$" + escaped + b"#" + f"{checksum(escaped):02x}".encode()


def test_run_length_encoding_is_expanded() -> None:
    # '0* ' is '0' and 32 - 29 = 3 more: four zeros.
    assert unescape(b"0* ") == b"0000"
    assert unescape(b"ab*!c") == b"a" + b"b" * 5 + b"c"


@pytest.mark.parametrize("bad", [b"abc}", b"*!", b"ab*"])
def test_a_dangling_escape_or_repeat_is_refused(bad: bytes) -> None:
    with pytest.raises(GdbError, match=r"escape|repeat"):
        unescape(bad)


def test_a_packet_is_taken_after_its_acks() -> None:
    assert take_packet(b"+$OK#9a") == (b"OK", b"", 1)
    assert take_packet(b"+$OK#9a$E14#") == (b"OK", b"$E14#", 1)


def test_a_packet_not_whole_yet_is_left_in_the_buffer() -> None:
    assert take_packet(b"+$OK#9") == (None, b"$OK#9", 1)
    assert take_packet(b"+") == (None, b"", 1)
    assert take_packet(b"") == (None, b"", 0)


def test_a_bad_checksum_is_refused_naming_both_sums() -> None:
    with pytest.raises(GdbError, match=r"checksum b'9b', its bytes sum to 9a"):
        take_packet(b"$OK#9b")


def test_a_negative_ack_or_stray_bytes_are_refused() -> None:
    with pytest.raises(GdbError, match="refused our last packet"):
        take_packet(b"-")
    with pytest.raises(GdbError, match="expected '\\$' or an ack"):
        take_packet(b"hello")


# -- values -------------------------------------------------------------------------


def test_values_follow_the_targets_byte_order() -> None:
    assert decode_value("0100000000000000", "little") == 1
    assert decode_value("0000000000000001", "big") == 1
    assert encode_value(0x1234, 32, "little") == "34120000"
    assert encode_value(0x1234, 32, "big") == "00001234"
    assert encode_value(1 << 79, 80, "little") == "00" * 9 + "80"


def test_bad_values_are_refused() -> None:
    with pytest.raises(GdbError, match="not hex bytes"):
        decode_value("xyz0", "little")
    with pytest.raises(GdbError, match="not hex bytes"):
        decode_value("123", "little")
    with pytest.raises(GdbError, match="does not fit a 8-bit register"):
        encode_value(0x100, 8, "little")
    with pytest.raises(GdbError, match="does not fit"):
        encode_value(-1, 8, "little")


def test_byte_order_by_architecture() -> None:
    assert byteorder_of("s390:64-bit") == "big"
    assert byteorder_of("powerpc:common64") == "big"
    assert byteorder_of("i386:x86-64") == "little"
    assert byteorder_of("aarch64") == "little"
    assert byteorder_of("riscv:rv64") == "little"


# -- target descriptions ------------------------------------------------------------

#: As QEMU sends them: ``xi:include`` without the ``xi`` prefix declared.
FILES: Dict[str, str] = {
    "target.xml": '<?xml version="1.0"?><!DOCTYPE target SYSTEM "gdb-target.dtd">'
    "<target><architecture>powerpc:common64</architecture>"
    '<xi:include href="core.xml"/><xi:include href="fpu.xml"/></target>',
    "core.xml": '<?xml version="1.0"?><feature name="org.gnu.gdb.power.core">'
    '<reg name="r0" bitsize="64"/><reg name="r1" bitsize="64"/>'
    '<reg name="pc" bitsize="64" regnum="64"/><reg name="msr" bitsize="64"/></feature>',
    "fpu.xml": '<feature name="org.gnu.gdb.power.fpu">'
    '<reg name="f0" bitsize="64" regnum="71"/><reg name="fpscr" bitsize="32"/></feature>',
}


def test_a_description_is_read_with_its_includes_and_numbers() -> None:
    target = parse_target(FILES.__getitem__)
    assert target.architecture == "powerpc:common64"
    assert target.byteorder == "big"
    assert [(r.number, r.name, r.bits, r.feature) for r in target.registers] == [
        (0, "r0", 64, "org.gnu.gdb.power.core"),
        (1, "r1", 64, "org.gnu.gdb.power.core"),
        (64, "pc", 64, "org.gnu.gdb.power.core"),
        (65, "msr", 64, "org.gnu.gdb.power.core"),
        (71, "f0", 64, "org.gnu.gdb.power.fpu"),
        (72, "fpscr", 32, "org.gnu.gdb.power.fpu"),
    ]
    assert target.ambiguous() == ()


def test_a_number_given_twice_is_ambiguous() -> None:
    files = dict(FILES, **{"fpu.xml": FILES["fpu.xml"].replace('regnum="71"', 'regnum="65"')})
    ambiguous = parse_target(files.__getitem__).ambiguous()
    assert [(r.number, r.name) for r in ambiguous] == [(65, "msr"), (65, "f0")]


@pytest.mark.parametrize(
    ("core", "message"),
    [
        ("<feature><reg name='r0'/></feature>", "without a name or a bitsize"),
        ("<feature><reg bitsize='64'/></feature>", "without a name or a bitsize"),
        ("<feature><reg name='r0' bitsize='64'", "is not XML"),
        ("<feature><xi:include href='target.xml'/></feature>", "includes itself"),
    ],
)
def test_bad_descriptions_are_refused(core: str, message: str) -> None:
    files = dict(FILES, **{"core.xml": core})
    with pytest.raises(GdbError, match=message):
        parse_target(files.__getitem__)


# -- the client, against a stand-in stub on a socket --------------------------------


@pytest.fixture
def stub(tmp_path: Path) -> Iterator[socket.socket]:
    """A listening unix socket in ``tmp_path``, ``gdb.sock``."""
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(tmp_path / "gdb.sock"))
    server.listen(1)
    yield server
    server.close()


def _serve(server: socket.socket, replies: Dict[bytes, bytes]) -> threading.Thread:
    """Answer each packet whose payload starts with a key, as given (raw bytes)."""

    def run() -> None:
        conn, _ = server.accept()
        with conn:
            buffer = b""
            while True:
                data = conn.recv(4096)
                if not data:
                    return
                buffer += data
                while b"#" in buffer and len(buffer) >= buffer.index(b"#") + 3:
                    end = buffer.index(b"#")
                    payload = buffer[buffer.index(b"$") + 1 : end]
                    buffer = buffer[end + 3 :]
                    for key, reply in replies.items():
                        if payload.startswith(key):
                            conn.sendall(reply)
                            break

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


ONE_REGISTER = (
    '<target><architecture>s390:64-bit</architecture><feature name="core">'
    '<reg name="pswa" bitsize="64"/></feature></target>'
)


def test_the_client_reads_and_writes_in_the_targets_order(
    tmp_path: Path, stub: socket.socket
) -> None:
    _serve(
        stub,
        {
            b"qXfer": b"+" + frame(b"l" + ONE_REGISTER.encode()),
            b"Hg1": b"+" + frame(b"OK"),
            b"p0": b"+" + frame(b"0000000000001234"),
            b"P0=0000000000001235": b"+" + frame(b"OK"),
            b"P0=": b"+" + frame(b"E14"),
        },
    )
    with GdbClient(tmp_path, "gdb.sock", timeout=5) as gdb:
        (pswa,) = gdb.target.registers
        gdb.select_cpu(0)
        assert gdb.read(pswa) == 0x1234
        assert gdb.write(pswa, 0x1235) is True
        assert gdb.write(pswa, 0x1) is False  # refused: E14


def test_a_stop_reply_sent_before_the_ack_is_no_answer(tmp_path: Path, stub: socket.socket) -> None:
    _serve(stub, {b"qXfer": frame(b"T05thread:01;") + b"+" + frame(b"l" + ONE_REGISTER.encode())})
    with GdbClient(tmp_path, "gdb.sock", timeout=5) as gdb:
        assert [r.name for r in gdb.target.registers] == ["pswa"]


def test_a_value_of_another_size_is_refused(tmp_path: Path, stub: socket.socket) -> None:
    _serve(
        stub,
        {b"qXfer": b"+" + frame(b"l" + ONE_REGISTER.encode()), b"p0": b"+" + frame(b"00000000")},
    )
    with GdbClient(tmp_path, "gdb.sock", timeout=5) as gdb:
        with pytest.raises(
            GdbError, match=r"reading pswa \(64 bits\): the stub answered '00000000'"
        ):
            gdb.read(gdb.target.registers[0])


def test_a_silent_stub_times_out_naming_the_request(tmp_path: Path, stub: socket.socket) -> None:
    _serve(stub, {b"qXfer": b"+"})  # acknowledges, never answers
    with pytest.raises(WaitTimeout, match=r"answer to 'qXfer:features:read:target.xml:0,1000'"):
        GdbClient(tmp_path, "gdb.sock", timeout=0.3)


def test_no_stub_is_an_error_naming_the_socket(tmp_path: Path) -> None:
    with pytest.raises(GdbError, match=r"cannot connect to the gdbstub at .*gdb\.sock"):
        GdbClient(tmp_path, "gdb.sock")


# -- verdicts of the fault measurement ----------------------------------------------

RUN = Run("x86_64", "tcg", (7, 2, 22), (7, 2, 22))
S390 = Run("s390x", "tcg", (7, 2, 22), (7, 2, 22))
DUMP = "CPU#0\nRAX=0000000000000000 RBX=0000000000000001\nRIP=0000000000007c00 RFL=00000002\n"


def test_changed_lines_and_registers_leave_noise_aside() -> None:
    after = DUMP.replace("RBX=0000000000000001", "RBX=0000000000000000")
    assert changed_lines(DUMP, after, set()) == ["RAX=0000000000000000 RBX=0000000000000000"]
    assert changed_lines(DUMP, after, {1}) == []
    assert noisy_lines(DUMP, after) == {1}
    with pytest.raises(MigtestError, match="differ in length: 3, 2"):
        noisy_lines(DUMP, "CPU#0\nRAX=0\n")
    # A dump whose lines came and went: every line the baseline lacks.
    assert changed_lines(DUMP, DUMP + "XMM08=1\n", {3}) == ["XMM08=1"]
    assert changed_registers(DUMP, after, "x86_64", set()) == ["CPU#0 RBX"]
    assert changed_registers(DUMP, after, "x86_64", {"CPU#0 RBX"}) == []


def test_a_fault_the_comparison_names_is_caught() -> None:
    failure = "vCPU state differs...\n  CPU#0 RBX: 1 on the source, 0 on the destination"
    fault = judge("rbx", 0, ["RBX..."], ["CPU#0 RBX"], failure, RUN)
    assert (fault.verdict, fault.shown_as) == ("caught", ("CPU#0 RBX",))


def test_a_fault_the_comparison_passes_is_missed() -> None:
    assert judge("rbx", 0, ["RBX..."], ["CPU#0 RBX"], None, RUN).verdict == "missed"
    # Failing for another register is no catch either.
    failure = "  CPU#0 RAX: 1 on the source, 0 on the destination"
    assert judge("rbx", 0, ["RBX..."], ["CPU#0 RBX"], failure, RUN).verdict == "missed"
    # A line HMP changed that the parser does not see is the parser's blind spot.
    assert judge("x", 0, ["XYZ 1"], [], None, RUN).verdict == "missed"


def test_an_unshown_fault_and_a_known_difference_are_reported_not_missed() -> None:
    assert judge("k_gs_base", 0, [], [], None, RUN).verdict == "not shown"
    fault = judge("pswm", 44, ["PSW..."], ["CPU#0 PSW.cc"], None, S390)
    assert fault.verdict == "known difference"
    assert "PSW.cc: internal" in fault.detail
    # The same register on a run the entry does not cover is missed.
    kvm = Run("s390x", "kvm", (7, 2, 22), (7, 2, 22))
    assert judge("pswm", 44, ["PSW..."], ["CPU#0 PSW.cc"], None, kvm).verdict == "missed"


def test_a_fault_only_the_newer_destination_shows_is_not_a_miss_across_versions() -> None:
    across = Run("s390x", "tcg", (7, 2, 22), (11, 1, 3))
    shows = {"CPU#0 PSW.addr"}
    fault = judge("fpc", 0, ["FPC=1"], ["CPU#0 FPC"], None, across, shows)
    assert fault.verdict == "destination only"
    # Shown by the source too, or within one version: a miss as before.
    assert judge("fpc", 0, ["FPC=1"], ["CPU#0 FPC"], None, across, {"CPU#0 FPC"}).verdict == (
        "missed"
    )
    same = Run("s390x", "tcg", (11, 1, 3), (11, 1, 3))
    assert judge("fpc", 0, ["FPC=1"], ["CPU#0 FPC"], None, same, shows).verdict == "missed"


def test_the_measurement_fails_naming_each_miss() -> None:
    measurement = Measurement("x86_64", 0, [Fault("rax", "caught"), Fault("rbx", "not shown")])
    measurement.assert_nothing_missed()
    figures = measurement.figures()
    assert (figures["registers"], figures["writable"], figures["caught"]) == (2, 2, 1)
    measurement.faults.append(Fault("rbx[bit 4]", "known difference"))
    assert (figures := measurement.figures())["registers"] == 2 and figures["faults"] == 3
    measurement.faults.pop()
    assert figures["not_shown_names"] == ["rbx"]
    assert measurement.summary() == "2 registers: 1 caught, 1 not shown; not shown: rbx"
    measurement.faults.append(Fault("rcx", "missed", 0, ("CPU#0 RCX",), "passed"))
    with pytest.raises(
        CheckFailure, match=r"let 1 register fault\(s\) on CPU#0 pass:\n  rcx: passed"
    ):
        measurement.assert_nothing_missed()


def test_a_register_no_longer_shown_counts_as_changed() -> None:
    # x86 shows DPL only in protected mode: clearing CR0.PE hides it.
    after = DUMP.replace(" RBX=0000000000000001", "")
    assert changed_registers(DUMP, after, "x86_64", set()) == ["CPU#0 RBX"]


# -- the measurement loop, on a stand-in register file ------------------------------


class StandIn:
    """A vCPU as a stub shows it (pure logic: no QEMU), and HMP's dump of it.

    ``rax``, ``rbx`` are shown; ``kgs`` is not; ``ftag`` ignores writes;
    ``tsc`` counts by itself; writing ``rcx`` also sets ``rdx`` (a side
    effect); ``sticky`` cannot be written back once changed.
    """

    def __init__(self) -> None:
        names = ("rax", "rbx", "kgs", "ftag", "tsc", "rcx", "rdx", "sticky")
        self.target = Target(
            "i386:x86-64", tuple(Register(n, name, 64, "core") for n, name in enumerate(names))
        )
        self.values = dict.fromkeys(names, 0)
        self.ticks = 0
        self.stuck = False
        self.selected = -1

    def select_cpu(self, index: int) -> None:
        self.selected = index

    def read(self, register: Register) -> int:
        if register.name == "tsc":
            self.ticks += 1
            return self.ticks
        return self.values[register.name]

    def write(self, register: Register, value: int) -> bool:
        if register.name == "sticky" and self.stuck:
            return True
        if register.name == "sticky":
            self.stuck = True
        if register.name == "rcx":
            self.values["rdx"] = 1
        if register.name != "ftag":
            self.values[register.name] = value
        return True

    def dump(self) -> str:
        v = self.values
        return (
            f"CPU#0\nRAX={v['rax']:016x} RBX={v['rbx']:016x}\n"
            f"RCX={v['rcx']:016x} RDX={v['rdx']:016x} STICKY={v['sticky']:016x}\n"
        )


def test_each_register_gets_its_verdict_and_side_effects_are_undone() -> None:
    stand_in = StandIn()
    source = stand_in.dump()
    stand_in.target = Target(stand_in.target.architecture, stand_in.target.registers[:7])
    measurement = measure(stand_in, 0, stand_in.dump, source, RUN)  # type: ignore[arg-type]
    verdicts = {f.register: f.verdict for f in measurement.faults}
    assert verdicts == {
        "rax": "caught",
        "rbx": "caught",
        "kgs": "not shown",
        "ftag": "not writable",
        "tsc": "counts by itself",
        "rcx": "caught",
        "rdx": "caught",
    }
    assert {f.register: f.shown_as for f in measurement.faults}["rcx"] == (
        "CPU#0 RCX",
        "CPU#0 RDX",
    )
    assert stand_in.dump() == source  # rdx, set by the write to rcx, was put back


def test_a_register_that_cannot_be_put_back_stops_the_measurement() -> None:
    stand_in = StandIn()
    with pytest.raises(MigtestError, match="after sticky: restoring sticky did not stick"):
        measure(stand_in, 0, stand_in.dump, stand_in.dump(), RUN)  # type: ignore[arg-type]


def test_a_bad_description_closes_the_connection(tmp_path: Path, stub: socket.socket) -> None:
    served = _serve(stub, {b"qXfer": b"+" + frame(b"l<target><reg name='r0'/></target>")})
    with pytest.raises(GdbError, match="without a name or a bitsize"):
        GdbClient(tmp_path, "gdb.sock", timeout=5)
    served.join(5)  # the stand-in reads the end of the connection and returns
    assert not served.is_alive()


def test_a_description_that_never_ends_is_refused(tmp_path: Path, stub: socket.socket) -> None:
    _serve(stub, {b"qXfer": b"+" + frame(b"m")})
    with pytest.raises(GdbError, match=r"an empty piece of 'target\.xml' after 0"):
        GdbClient(tmp_path, "gdb.sock", timeout=5)


def test_a_thread_list_that_never_ends_is_refused(tmp_path: Path, stub: socket.socket) -> None:
    _serve(
        stub,
        {
            b"qXfer": b"+" + frame(b"l" + ONE_REGISTER.encode()),
            b"qfThreadInfo": b"+" + frame(b"m1"),
            b"qsThreadInfo": b"+" + frame(b"m2"),
        },
    )
    with GdbClient(tmp_path, "gdb.sock", timeout=5) as gdb:
        with pytest.raises(GdbError, match="the thread list does not end"):
            gdb.threads()
