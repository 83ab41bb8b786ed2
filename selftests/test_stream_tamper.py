"""The streaming rewriter and its faults: on real streams, on small made ones, and
against a judge that shares no code with them.  No QEMU (see
``test_stream_tamper_qemu.py`` for streams of a running guest, loaded by QEMU).

The judge (:func:`assert_rewritten_as_reported`) reads both streams with the
file reader: the rewritten one must be well formed, with the same sections
and device state byte for byte, and differ in exactly the pages the fault
reported, holding the reported bytes.  The near misses show it failing on a
rewriter that damages a header, a device section, or a page it did not report.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import random
import socket
import threading
from dataclasses import replace
from pathlib import Path
from typing import BinaryIO, Callable, Dict, List, Optional, Sequence, Set, Tuple, Union

import pytest

from migtest.arch import AARCH64_RAM, PROFILES, MiB, get_profile
from migtest.checks import check_counter_pattern, compare_memory
from migtest.errors import CheckFailure, ConfigError, Unavailable
from migtest.proxy import MigrationProxy
from migtest.stream import StreamError, StreamSummary, read_stream
from migtest.stream.model import (
    COMMAND,
    END,
    EOF,
    FLAG_COMPRESS_PAGE,
    FLAG_CONTINUE,
    FLAG_EOS,
    FLAG_HOOK,
    FLAG_MEM_SIZE,
    FLAG_PAGE,
    FLAG_XBZRLE,
    FLAG_ZERO,
    FOOTER,
    FULL,
    PART,
    START,
)
from migtest.stream.outcome import tamper_outcome
from migtest.stream.regions import NoRamThere, counter_pages, page_range, untouched_pages
from migtest.stream.rewriter import StreamRewriter
from migtest.stream.tamper import (
    ZERO_PAGE_FILLER,
    Change,
    NothingToStrike,
    OneByteChanged,
    PageFault,
    PageRange,
    PageRecord,
    StalePageInstead,
    StalePageResent,
    TamperError,
    TwoPagesSwapped,
    ZeroPageAsData,
    check_failure_names,
    check_failure_points_at,
    require_survived,
)

DATA = Path(__file__).resolve().parent / "data" / "stream"
FIXTURES = sorted(DATA.glob("qemu-*.mig.gz"))
#: Each fixture's main RAM block and where it starts in guest memory.
MAIN_RAM = {
    "x86_64": ("pc.ram", 0),
    "aarch64": ("mach-virt.ram", AARCH64_RAM),
    "s390x": ("s390.ram", 0),
    "ppc64": ("ppc_spapr.ram", 0),
}
#: Bytes fed to a rewriter at once, as the proxy reads them.
PIECE = 64 * 1024
#: Seconds any socket operation or thread of these tests may take.
TIMEOUT = 10.0

Page = Tuple[str, int]
Stream = Union[bytes, BinaryIO]


# -- the judge -----------------------------------------------------------------


def rewrite(
    data: bytes, fault: Optional[PageFault] = None, piece: int = PIECE
) -> Tuple[bytes, StreamRewriter]:
    """``data`` through a rewriter making ``fault``, fed ``piece`` bytes at a time."""
    rewriter = StreamRewriter(fault)
    out = [rewriter.feed(data[i : i + piece]) for i in range(0, len(data), piece)]
    out.append(rewriter.finish())
    return b"".join(out), rewriter


#: Bytes of a page kept as they are when the rest of it is zero.
HEAD = 16


class PageImage:
    """The pages a stream leaves on the destination: a digest of each, and some in full."""

    def __init__(self, keep: Set[Page]) -> None:
        self.digests: Dict[Page, bytes] = {}
        self.kept: Dict[Page, bytes] = {}
        self._keep = keep

    def __call__(self, block: str, offset: int, page: bytes) -> None:
        # Most pages are zeros after their first bytes (zero pages, the
        # guest's counters): kept exactly, and quickly; hashing every page
        # took three times as long.
        if page[HEAD:] == bytes(len(page) - HEAD):
            self.digests[(block, offset)] = page[:HEAD]
        else:
            self.digests[(block, offset)] = hashlib.blake2b(page).digest() + b"#"
        if (block, offset) in self._keep:
            self.kept[(block, offset)] = page


def _file(stream: Stream) -> BinaryIO:
    return io.BytesIO(stream) if isinstance(stream, bytes) else stream


def read_pages(stream: Stream, keep: Set[Page]) -> Tuple[StreamSummary, PageImage]:
    image = PageImage(keep)
    return read_stream(_file(stream), pages=image), image


def device_state(stream: Stream, summary: StreamSummary) -> List[bytes]:
    """Every section but ``ram``, and what follows the last section, as bytes."""
    file, parts = _file(stream), []
    for section in summary.sections:
        if section.idstr != "ram":
            file.seek(section.offset)
            parts.append(file.read(section.end - section.offset))
    file.seek(summary.sections[-1].end)
    parts.append(file.read())
    return parts


def assert_rewritten_as_reported(
    original: Stream, rewritten: Stream, changes: Sequence[Change], region: PageRange
) -> None:
    """``rewritten`` is ``original`` but for ``changes``, and a stream QEMU could have written.

    :raise AssertionError: (a StreamError is one) it is not.
    """
    keep = {(c.block, c.offset) for c in changes}
    before, old = read_pages(original, keep)
    after, new = read_pages(rewritten, keep)
    shape = [(s.kind, s.idstr, s.instance_id, s.version_id) for s in before.sections]
    assert shape == [(s.kind, s.idstr, s.instance_id, s.version_id) for s in after.sections]
    assert before.ram_blocks == after.ram_blocks and before.machine_type == after.machine_type
    assert before.configuration == after.configuration
    assert [name for _, name in before.commands] == [name for _, name in after.commands]
    assert device_state(original, before) == device_state(rewritten, after), "device state"
    pages = old.digests.keys() | new.digests.keys()
    differ = {p for p in pages if old.digests.get(p) != new.digests.get(p)}
    assert differ == keep, f"pages changed: {sorted(differ)}; reported: {sorted(keep)}"
    for change in changes:
        at = change.address - region.address_of(change.offset)
        was, now = old.kept[(change.block, change.offset)], new.kept[(change.block, change.offset)]
        assert was[at : at + len(change.old)] == change.old, change.describe()
        assert now[at : at + len(change.new)] == change.new, change.describe()
        assert was[:at] == now[:at], f"a byte before the first reported one: {change.describe()}"


# -- small streams, made record by record ---------------------------------------


def u(width: int, value: int) -> bytes:
    return value.to_bytes(width, "big")


def idstr(name: str) -> bytes:
    return bytes([len(name)]) + name.encode()


def record(kind: int, offset: int, block: Optional[str] = None, payload: bytes = b"") -> bytes:
    """A RAM record: CONTINUE unless ``block`` is named."""
    flags = kind | (0 if block else FLAG_CONTINUE)
    return u(8, offset | flags) + (idstr(block) if block else b"") + payload


def page(value: int, at: int = 0) -> bytes:
    """A page of zeros with ``value`` at byte ``at``: what the guest's pages hold."""
    data = bytearray(4096)
    data[at] = value
    return bytes(data)


BLOCKS = {"ram0": 64 * 4096, "ram1": 8 * 4096}
#: The pages of ``ram0`` the faults of these tests strike in (guest address 1 MiB).
RAM0 = PageRange("ram0", 0, BLOCKS["ram0"], MiB)


class Made:
    """A stream QEMU's format allows, made section by section; ``ram`` is section 1."""

    def __init__(self, footers: bool = True, config: bytes = b"\x07" + u(4, 2) + b"pc") -> None:
        self.footers = footers
        self.data = b"QEVM" + u(4, 3) + config
        blocks = b"".join(idstr(name) + u(8, size) for name, size in BLOCKS.items())
        self.section(START, 1, u(8, sum(BLOCKS.values()) | FLAG_MEM_SIZE) + blocks, "ram")

    def section(self, kind: int, sid: int, body: bytes, name: str = "") -> Made:
        header = bytes([kind]) + u(4, sid)
        if kind in (START, FULL):
            header += idstr(name) + u(4, 0) + u(4, 4)
        eos = u(8, FLAG_EOS) if sid == 1 else b""
        footer = bytes([FOOTER]) + u(4, sid) if self.footers else b""
        self.data += header + body + eos + footer
        return self

    def ram(self, kind: int, *records: bytes) -> Made:
        return self.section(kind, 1, b"".join(records))

    def command(self, number: int, data: bytes) -> Made:
        self.data += bytes([COMMAND]) + u(2, number) + u(2, len(data)) + data
        return self

    def end(self) -> bytes:
        return self.data + bytes([EOF])


def made_with_pages() -> bytes:
    """Two passes over ``ram0``: the second, in the last section, with other counters."""
    first = [record(FLAG_PAGE, 0, "ram0", page(1))] + [
        record(FLAG_PAGE, n * 4096, payload=page(1)) for n in range(1, 8)
    ]
    last = [
        record(FLAG_ZERO, 0, "ram1", b"\0"),  # another block first: the next must name ram0
        record(FLAG_PAGE, 0, "ram0", page(3)),
        record(FLAG_PAGE, 4096, payload=page(3)),
        record(FLAG_PAGE, 2 * 4096, payload=page(2)),  # the guest was here when it stopped
        record(FLAG_PAGE, 3 * 4096, payload=page(2)),
    ]
    return Made().ram(PART, *first).ram(END, *last).section(FULL, 2, b"\x7e\0\0\0\2x", "dev").end()


# -- every fixture, no fault ------------------------------------------------------


def fixture(path: Path) -> bytes:
    return gzip.decompress(path.read_bytes())


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.name.split(".mig")[0])
def test_without_a_fault_a_real_stream_passes_byte_for_byte(path: Path) -> None:
    data = fixture(path)
    out, rewriter = rewrite(data)
    assert out == data
    report, summary = rewriter.report, read_stream(io.BytesIO(data))
    assert rewriter.done == "followed to its end" and report.reached_last_ram_section
    assert report.misread is None and report.not_applicable is None
    assert report.records["zero"] == summary.pages["zero"]
    assert report.records["normal"] == summary.pages["normal"]
    assert report.blocks == {b.name: b.used_length for b in summary.ram_blocks}


def fixture_region(path: Path, pages: Callable[..., Tuple[int, int]]) -> PageRange:
    arch = path.name.split(".mig")[0].rsplit("-", 1)[1]
    block, base = MAIN_RAM[arch]
    start, end = pages(get_profile(arch))
    return PageRange(block, start - base, end - base, start)


#: One fixture per architecture, both versions among them: the judge reads each twice.
ONE_PER_ARCH = [
    DATA / f"qemu-{name}.mig.gz"
    for name in ("7.2-x86_64", "7.2-aarch64", "11.1.3-s390x", "11.1.3-ppc64")
]


@pytest.mark.parametrize("path", ONE_PER_ARCH, ids=lambda p: p.name.split(".mig")[0])
def test_a_zero_page_arrives_as_text_in_a_real_stream(path: Path) -> None:
    data = fixture(path)
    region = fixture_region(path, untouched_pages)
    fault = ZeroPageAsData(region)
    out, _ = rewrite(data, fault)
    [change] = fault.changes
    assert change.offset == region.start and not change.final and change.survived
    assert change.old == bytes(8) and change.new == ZERO_PAGE_FILLER[:8]
    assert len(out) == len(data) + 4095  # a fill byte became a page
    assert_rewritten_as_reported(data, out, fault.changes, region)


@pytest.mark.parametrize("make", [OneByteChanged, TwoPagesSwapped, StalePageResent])
def test_a_fault_with_nothing_to_strike_changes_nothing(
    make: Callable[[PageRange], PageFault],
) -> None:
    """A paused guest's stream sends every page before the last section, which is empty."""
    path = DATA / "qemu-11.1.3-x86_64.mig.gz"
    data = fixture(path)
    fault = make(fixture_region(path, counter_pages))
    out, _ = rewrite(data, fault)
    assert out == data and not fault.changes
    assert fault.seen == {"earlier": 25344, "final": 0, "postcopy": 0}


def test_pieces_of_any_size_give_the_same_stream() -> None:
    path = DATA / "qemu-7.2-s390x.mig.gz"
    data = fixture(path)
    whole, _ = rewrite(data, ZeroPageAsData(fixture_region(path, untouched_pages)), len(data))
    rng = random.Random(16)
    rewriter = StreamRewriter(ZeroPageAsData(fixture_region(path, untouched_pages)))
    out, at = [], 0
    while at < len(data):
        size = rng.choice([1, 2, 7, 9, 4095, 4096, 4097, 30_000])
        out.append(rewriter.feed(data[at : at + size]))
        at += size
    out.append(rewriter.finish())
    assert b"".join(out) == whole != data


# -- each fault, on streams made to show it -----------------------------------------


def test_one_byte_changes_the_first_page_of_the_last_section() -> None:
    data = made_with_pages()
    fault = OneByteChanged(RAM0)
    out, _ = rewrite(data, fault)
    [change] = fault.changes
    assert (change.block, change.offset, change.final) == ("ram0", 0, True)
    assert change.address == MiB + 2048 and change.old[0] == 0 and change.new[0] == 0xFF
    assert len(out) == len(data)
    assert_rewritten_as_reported(data, out, fault.changes, RAM0)


def test_one_byte_where_asked() -> None:
    fault = OneByteChanged(RAM0, at=0)
    rewrite(made_with_pages(), fault)
    assert fault.changes[0].address == MiB and fault.changes[0].old[:1] == b"\x03"
    with pytest.raises(ConfigError):
        rewrite(made_with_pages(), OneByteChanged(RAM0, at=4096))
    with pytest.raises(ConfigError):
        OneByteChanged(RAM0, at=-1)


def test_two_pages_swap_where_the_counters_step() -> None:
    data = made_with_pages()
    fault = TwoPagesSwapped(RAM0)
    out, _ = rewrite(data, fault)
    first, second = fault.changes
    assert (first.offset, second.offset) == (4096, 2 * 4096)
    assert (first.old[0], first.new[0], second.old[0], second.new[0]) == (3, 2, 2, 3)
    assert len(out) == len(data)
    assert_rewritten_as_reported(data, out, fault.changes, RAM0)


def made_between_passes() -> bytes:
    """A last section whose pages are all alike: the guest stopped between two passes."""
    last = [record(FLAG_PAGE, 0, "ram0", page(4))] + [
        record(FLAG_PAGE, n * 4096, payload=page(4)) for n in range(1, 8)
    ]
    return Made().ram(PART, record(FLAG_PAGE, 0, "ram0", page(3))).ram(END, *last).end()


def test_pages_all_alike_leave_nothing_to_swap_and_say_why() -> None:
    data = made_between_passes()
    fault = TwoPagesSwapped(RAM0)
    out, rewriter = rewrite(data, fault)
    assert out == data and not fault.changes
    with pytest.raises(
        NothingToStrike, match=r"each of the 7 pairs .* stopped between two passes"
    ) as nothing:
        tamper_outcome(fault, [rewriter.report])
    assert isinstance(nothing.value, TamperError)  # a test that cannot retry still errs


def test_a_swap_that_struck_or_saw_too_little_claims_nothing() -> None:
    struck = TwoPagesSwapped(RAM0)
    rewrite(made_with_pages(), struck)
    assert struck.changes and struck.nothing_to_strike() is None
    unseen = TwoPagesSwapped(RAM0)
    rewrite(Made().ram(END, record(FLAG_PAGE, 0, "ram0", page(4))).end(), unseen)
    assert unseen.nothing_to_strike() is None  # one page: the stream, not the guest
    with pytest.raises(TamperError) as error:
        tamper_outcome(unseen, [])
    assert not isinstance(error.value, NothingToStrike)


def test_pages_never_sent_one_after_the_other_do_not_blame_the_guest() -> None:
    """Another block's record between each two: no pair compared, so no claim."""
    last: List[bytes] = []
    for n in range(4):
        last += [
            record(FLAG_PAGE, n * 4096, "ram0", page(4 + n)),
            record(FLAG_ZERO, n * 4096, "ram1", b"\0"),
        ]
    fault = TwoPagesSwapped(RAM0)
    _, rewriter = rewrite(Made().ram(END, *last).end(), fault)
    assert fault.seen["final"] == 4  # seen, but never two in a row
    assert not fault.changes and fault.nothing_to_strike() is None
    with pytest.raises(TamperError) as error:
        tamper_outcome(fault, [rewriter.report])
    assert not isinstance(error.value, NothingToStrike)


def test_other_faults_never_blame_the_guest() -> None:
    for fault in (OneByteChanged(RAM0), StalePageResent(RAM0), ZeroPageAsData(RAM0)):
        rewrite(made_between_passes(), fault)
        assert fault.nothing_to_strike() is None


def test_two_pages_swap_a_zero_page_and_a_full_one() -> None:
    last = [record(FLAG_ZERO, 0, "ram0", b"\0"), record(FLAG_PAGE, 4096, payload=page(9))]
    data = Made().ram(END, *last).end()
    fault = TwoPagesSwapped(RAM0)
    out, _ = rewrite(data, fault)
    assert [c.new[0] for c in fault.changes] == [9, 0]
    assert_rewritten_as_reported(data, out, fault.changes, RAM0)


def test_the_stale_copy_follows_the_right_one() -> None:
    data = made_with_pages()
    fault = StalePageResent(RAM0)
    out, _ = rewrite(data, fault)
    [change] = fault.changes
    assert (change.offset, change.old[0], change.new[0], change.final) == (0, 3, 1, True)
    assert len(out) == len(data) + 8 + 4096  # a record with CONTINUE: ram0 was the last block
    assert_rewritten_as_reported(data, out, fault.changes, RAM0)
    with pytest.raises(ConfigError):
        StalePageResent(RAM0, remember=0)


def test_stale_copies_are_watched_for_pages_spread_over_the_range() -> None:
    """Of 8 pages, 2 remembered: pages 0 and 4; the last section sends only 4 of them."""
    region = PageRange("ram0", 0, 8 * 4096, MiB)
    first = [record(FLAG_PAGE, 0, "ram0", page(1))]
    first += [record(FLAG_PAGE, n * 4096, payload=page(1)) for n in range(1, 8)]
    last = [record(FLAG_PAGE, n * 4096, "ram0", page(2)) for n in (3, 5, 4)]
    data = Made().ram(PART, *first).ram(END, *last).end()
    fault = StalePageResent(region, remember=2)
    out, _ = rewrite(data, fault)
    [change] = fault.changes
    assert (change.offset, change.old[0], change.new[0]) == (4 * 4096, 2, 1)
    assert_rewritten_as_reported(data, out, fault.changes, region)


def test_a_stale_copy_must_differ() -> None:
    """A page whose earlier copies all hold what its last one holds gets no stale copy."""
    data = (
        Made()
        .ram(PART, record(FLAG_PAGE, 0, "ram0", page(5)))
        .ram(END, record(FLAG_PAGE, 0, "ram0", page(5)))
        .end()
    )
    fault = StalePageResent(RAM0)
    assert rewrite(data, fault)[0] == data and not fault.changes


class InsertsAnotherBlock(PageFault):
    """Sends a page of ``ram1`` after the first page it sees: the next CONTINUE must name ram0."""

    name = "a page of another block inserted"

    def strike(self, record: PageRecord) -> List[PageRecord]:
        if self.seen["earlier"] > 1:
            return [record]
        other = PageRecord("ram1", 4096, FLAG_PAGE, page(7), 4096, False, -1, None, True)
        return [record, other]


def assert_only_inserted(data: bytes, out: bytes) -> None:
    """``out`` is ``data`` with page 4096 of ram1 added, holding ``page(7)``."""
    _, old = read_pages(data, set())
    _, new = read_pages(out, {("ram1", 4096)})
    pages = old.digests.keys() | new.digests.keys()
    assert {p for p in pages if new.digests.get(p) != old.digests.get(p)} == {("ram1", 4096)}
    assert new.kept[("ram1", 4096)] == page(7)


#: Two pages of ram0, the second CONTINUE: what follows an inserted page of ram1.
TWO_PAGES = (
    Made()
    .ram(PART, record(FLAG_PAGE, 0, "ram0", page(1)), record(FLAG_PAGE, 4096, payload=page(2)))
    .end()
)


def test_a_record_after_another_block_names_its_own() -> None:
    out, rewriter = rewrite(TWO_PAGES, InsertsAnotherBlock(RAM0))
    assert rewriter.report.misread is None
    assert len(out) == len(TWO_PAGES) + (8 + 5 + 4096) + 5  # ram1's page, ram0's name
    assert_only_inserted(TWO_PAGES, out)


# -- near misses: the judge fails on a rewriter with a bug ------------------------------


def test_check_catches_a_header_with_the_wrong_address(monkeypatch: pytest.MonkeyPatch) -> None:
    write_header = StreamRewriter._header
    monkeypatch.setattr(
        StreamRewriter, "_header", lambda self, word, block: write_header(self, word + 4096, block)
    )
    data = made_with_pages()
    fault = OneByteChanged(RAM0)
    out, _ = rewrite(data, fault)
    with pytest.raises(AssertionError, match="one byte of one page changed: block 'ram0' page 0x0"):
        assert_rewritten_as_reported(data, out, fault.changes, RAM0)


def test_check_catches_a_header_with_the_wrong_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    write_header = StreamRewriter._header
    monkeypatch.setattr(
        StreamRewriter,
        "_header",
        lambda self, word, block: write_header(self, word ^ (FLAG_PAGE | FLAG_ZERO), block),
    )
    data = made_with_pages()
    fault = TwoPagesSwapped(RAM0)
    out, _ = rewrite(data, fault)
    with pytest.raises(StreamError):
        assert_rewritten_as_reported(data, out, fault.changes, RAM0)


def test_check_catches_a_continue_that_means_another_block(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A rewriter that sends a record as it came, CONTINUE though the block changed."""
    encode = StreamRewriter._encode
    monkeypatch.setattr(
        StreamRewriter,
        "_encode",
        lambda self, record: record.raw if record.raw is not None else encode(self, record),
    )
    out, _ = rewrite(TWO_PAGES, InsertsAnotherBlock(RAM0))
    with pytest.raises(AssertionError):
        assert_only_inserted(TWO_PAGES, out)


def test_check_catches_a_device_byte_changed() -> None:
    data = made_with_pages()
    fault = OneByteChanged(RAM0)
    out = bytearray(rewrite(data, fault)[0])
    out[-7] ^= 1  # the last byte of the device section 'dev', before its footer
    with pytest.raises(AssertionError, match="device state"):
        assert_rewritten_as_reported(data, bytes(out), fault.changes, RAM0)


def test_check_catches_a_change_not_reported() -> None:
    data = made_with_pages()
    fault = TwoPagesSwapped(RAM0)
    out, _ = rewrite(data, fault)
    with pytest.raises(AssertionError, match="pages changed"):
        assert_rewritten_as_reported(data, out, fault.changes[:1], RAM0)


def test_check_catches_other_bytes_than_reported() -> None:
    data = made_with_pages()
    fault = OneByteChanged(RAM0)
    out, _ = rewrite(data, fault)
    fault.changes[0].new = b"\x01" + fault.changes[0].new[1:]
    with pytest.raises(AssertionError):
        assert_rewritten_as_reported(data, out, fault.changes, RAM0)


# -- streams it cannot rewrite: everything passes, and the report says why ----------------


def made_none(data: bytes) -> Tuple[bytes, StreamRewriter, PageFault]:
    fault = OneByteChanged(RAM0)
    out, rewriter = rewrite(data, fault)
    assert out == data and not fault.changes
    return out, rewriter, fault


@pytest.mark.parametrize(
    "data, why",
    [
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(600), "TLS"),
        (u(4, 0x11223344) + u(4, 1) + bytes(100), "multifd"),
        (
            Made(
                config=b"\x07" + u(4, 2) + b"pc\x05" + idstr("strange") + u(4, 1) + bytes(9)
            ).end(),
            "'strange' of unknown size",
        ),
        (Made().ram(PART, record(FLAG_HOOK, 0)).end(), "RDMA"),
        (
            Made(footers=False).section(START, 3, b"\1\2\3", "spapr/htab").end(),
            "without section footers",
        ),
    ],
    ids=["tls", "multifd-channel", "configuration", "rdma", "no-footers"],
)
def test_what_cannot_be_rewritten_is_not_applicable(data: bytes, why: str) -> None:
    _, rewriter, fault = made_none(data)
    assert why in (rewriter.report.not_applicable or "")
    with pytest.raises(Unavailable, match="not applicable") as cancelled:
        tamper_outcome(fault, [rewriter.report])
    assert not cancelled.value.expected


def test_a_stream_it_misreads_passes_unchanged_and_is_an_error() -> None:
    head = Made().ram(PART, record(FLAG_ZERO, 0, "ram0", b"\0")).data
    _, rewriter, fault = made_none(head + b"\x0b" + bytes(30))  # no such section type
    assert rewriter.report.misread is not None
    assert f"at byte {len(head)} in the section after byte {len(head)}" in rewriter.report.misread
    with pytest.raises(TamperError, match="could not follow"):
        tamper_outcome(fault, [rewriter.report])


def test_a_stream_cut_inside_a_page_passes_what_came() -> None:
    data = made_with_pages()[:300]
    _, rewriter, _ = made_none(data)
    assert rewriter.done is not None and rewriter.done.startswith("the stream ended inside")


def test_nothing_struck_is_an_error_saying_what_was_there() -> None:
    data = Made().ram(END, record(FLAG_ZERO, 0, "ram0", b"\0")).end()
    _, rewriter, fault = made_none(data)
    with pytest.raises(
        TamperError, match=r"nothing struck \(0 pages .* 1 in it or after .*, 0 of them after\)"
    ):
        tamper_outcome(fault, [rewriter.report])


@pytest.mark.parametrize(
    "record_, went",
    [
        (record(FLAG_XBZRLE, 0, "ram0", b"\x01" + u(2, 2) + b"\0\7"), "XBZRLE-encoded"),
        (record(FLAG_COMPRESS_PAGE, 4096, "ram0", u(4, 3) + b"xyz"), "compressed"),
        (u(8, 0x200), "sent over multifd channels"),  # MULTIFD_FLUSH
    ],
    ids=["xbzrle", "compressed", "multifd"],
)
def test_pages_gone_where_faults_do_not_reach_are_not_applicable(record_: bytes, went: str) -> None:
    data = Made().ram(END, record_).end()
    _, rewriter, fault = made_none(data)
    assert rewriter.report.reached_last_ram_section
    with pytest.raises(Unavailable, match=f"not applicable: pages were {went}"):
        tamper_outcome(fault, [rewriter.report])


def test_a_multifd_channel_beside_a_main_stream_without_pages_is_not_applicable() -> None:
    _, main, fault = made_none(Made().ram(END).end())
    _, channel, _ = made_none(u(4, 0x11223344) + bytes(60))
    with pytest.raises(Unavailable, match="multifd"):
        tamper_outcome(fault, [main.report, channel.report])


def test_a_change_is_known_to_survive_only_to_the_last_ram_section() -> None:
    """A rewriter that struck, then saw no last RAM section (a stream cut short): unproven."""
    data = Made().ram(PART, record(FLAG_ZERO, 0, "ram0", b"\0")).end()
    fault = ZeroPageAsData(RAM0)
    _, rewriter = rewrite(data, fault)
    assert fault.changes and not rewriter.report.reached_last_ram_section
    with pytest.raises(TamperError, match="did not follow the stream to its last RAM section"):
        tamper_outcome(fault, [rewriter.report])
    with pytest.raises(TamperError, match="could not follow"):
        tamper_outcome(fault, [replace(rewriter.report, misread="at byte 9 in x")])


@pytest.mark.parametrize(
    "copy",
    [record(FLAG_XBZRLE, 0, "ram0", b"\x01" + u(2, 2) + b"\0\7"),
     record(FLAG_COMPRESS_PAGE, 0, "ram0", u(4, 3) + b"xyz"),
     record(FLAG_PAGE, 0, "ram0", page(4))],
    ids=["xbzrle", "compressed", "page"],
)  # fmt: skip
def test_a_change_sent_again_did_not_survive(copy: bytes) -> None:
    first = Made().ram(PART, record(FLAG_ZERO, 0, "ram0", b"\0"))
    copied_at = len(first.data) + 5  # after the END section's header
    data = first.ram(END, copy).end()
    fault = ZeroPageAsData(RAM0)
    _, rewriter = rewrite(data, fault)
    assert rewriter.report.misread is None
    [change] = fault.changes
    assert change.resent_at == [copied_at] and not change.survived
    with pytest.raises(TamperError, match="did not survive"):
        require_survived(fault.changes)
    change.resent_at.clear()
    require_survived(fault.changes)


def test_sections_it_does_not_read_are_crossed_at_their_footer() -> None:
    """Another iterable section between RAM sections, its data holding a false footer."""
    decoy = bytes([FOOTER]) + u(4, 3) + b"\x09junk"  # the footer, then no section
    data = (
        Made().section(START, 3, b"htab" + decoy, "spapr/htab")
        .ram(PART, record(FLAG_PAGE, 0, "ram0", page(1)))
        .section(PART, 3, decoy + decoy)
        .ram(END, record(FLAG_PAGE, 0, "ram0", page(2)))
        .section(END, 3, b"")
        .end()
    )  # fmt: skip
    fault = StalePageResent(RAM0)
    out, rewriter = rewrite(data, fault, piece=3)
    assert rewriter.report.reached_last_ram_section and rewriter.report.ram_sections == 3
    assert_rewritten_as_reported(data, out, fault.changes, RAM0)


# -- the verdicts a test draws ----------------------------------------------------------------


def test_a_failure_must_name_every_change() -> None:
    source, destination = bytearray(3 * 4096), bytearray(3 * 4096)
    destination[4096 + 7] = 0x5A
    with pytest.raises(CheckFailure) as caught:
        compare_memory(source, destination, MiB, "source and destination RAM")
    message = str(caught.value)
    named = Change("x", "ram0", 4096, MiB + 4096 + 7, b"\0", b"\x5a", 1, True)
    check_failure_names(message, [named])
    for wrong in (
        Change("x", "ram0", 4096, MiB + 4096 + 8, b"\0", b"\x5a", 1, True),  # another byte
        Change("x", "ram0", 4096, MiB + 4096 + 7, b"\0", b"\x5b", 1, True),  # another value
    ):
        with pytest.raises(CheckFailure, match="does not name the change"):
            check_failure_names(message, [named, wrong])
    with pytest.raises(CheckFailure, match="no change"):
        check_failure_names(message, [])


def counter_failure(counters: Sequence[int]) -> str:
    """The counter check's message on a test range whose pages hold ``counters``."""
    dump = b"".join(page(value) for value in counters)
    with pytest.raises(CheckFailure) as caught:
        check_counter_pattern(dump, MiB)
    return str(caught.value)


def stale_change(page_no: int) -> Change:
    """A stale copy of the counter page ``page_no`` of a range at 1 MiB."""
    where = MiB + page_no * 4096
    return Change("x", "ram0", page_no * 4096, where, b"\5", b"\3", 1, True, [], True, where)


def test_a_failure_after_the_guest_ran_must_point_at_the_changed_page() -> None:
    """A stale counter page, the guest run on: the counter check names it or the page after."""
    at_the_page = counter_failure([7, 7, 5, 7, 7, 6, 6])  # 7 to 5 is no single step
    check_failure_points_at(at_the_page, [stale_change(2)], 4096)
    after_it = counter_failure([7, 7, 6, 7, 7, 7, 7])  # the step to 6 passes; 6 to 7 does not
    assert "0x102000" not in after_it
    check_failure_points_at(after_it, [stale_change(2)], 4096)
    for elsewhere in (stale_change(0), stale_change(4)):
        with pytest.raises(CheckFailure, match="names no byte in"):
            check_failure_points_at(at_the_page, [elsewhere], 4096)
    unknown = replace(stale_change(2), page_address=None)
    with pytest.raises(CheckFailure, match="page is not known"):
        check_failure_points_at(at_the_page, [unknown], 4096)
    with pytest.raises(CheckFailure, match="no change"):
        check_failure_points_at(at_the_page, [], 4096)


# -- where guest memory is in the stream -------------------------------------------------------

MTREE_X86 = """FlatView #0
 AS "memory", root: system
 Root memory region: system
  0000000000000000-00000000000bffff (prio 0, ram): pc.ram
  00000000000c0000-00000000000dffff (prio 1, rom): pc.rom
  0000000000100000-00000000095fffff (prio 0, ram): pc.ram @0000000000100000 KVM
  00000000fffc0000-00000000ffffffff (prio 0, rom): pc.bios
"""
MTREE_AARCH64 = """  0000000040000000-00000000495fffff (prio 0, ram): mach-virt.ram"""


def test_a_guest_range_is_found_in_its_ram_block() -> None:
    assert page_range(MTREE_X86, MiB, 100 * MiB) == PageRange("pc.ram", MiB, 100 * MiB, MiB)
    assert page_range(MTREE_X86, 0x1000, 0x2000) == PageRange("pc.ram", 0x1000, 0x2000, 0x1000)
    region = page_range(MTREE_AARCH64, AARCH64_RAM + 100 * MiB, AARCH64_RAM + 150 * MiB)
    assert region == PageRange("mach-virt.ram", 100 * MiB, 150 * MiB, AARCH64_RAM + 100 * MiB)
    assert region.address_of(100 * MiB + 5) == AARCH64_RAM + 100 * MiB + 5
    for start, end in [(0xA0000, 0x200000), (0xC0000, 0xC1000), (0, 151 * MiB)]:
        with pytest.raises(NoRamThere, match="no RAM region"):
            page_range(MTREE_X86, start, end)
    with pytest.raises(ConfigError):
        PageRange("pc.ram", 5, 5, 0)


def test_every_profile_has_untouched_pages_above_its_counters() -> None:
    for profile in PROFILES.values():
        start, end = untouched_pages(profile)
        assert start == counter_pages(profile)[1] < end
        assert any(first <= start and end <= last for first, last in profile.ram_ranges)
    x86 = get_profile("x86_64")
    assert untouched_pages(x86) == (100 * MiB, 150 * MiB)
    with pytest.raises(NoRamThere):
        untouched_pages(replace(x86, ram_ranges=((MiB, 100 * MiB),)))


# -- the proxy, rewriting between two sockets ---------------------------------------------------


def test_the_proxy_sends_on_what_the_rewriter_makes() -> None:
    path = DATA / "qemu-7.2-aarch64.mig.gz"
    data = fixture(path)
    region = fixture_region(path, untouched_pages)
    expected, _ = rewrite(data, ZeroPageAsData(region))
    fault = ZeroPageAsData(region)
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(TIMEOUT)
        target = listener.getsockname()[:2]
        proxy = MigrationProxy(lambda: socket.create_connection(target, TIMEOUT), tamper=fault)
        try:
            source = socket.create_connection(proxy.start(), timeout=TIMEOUT)
            received = bytearray()
            with source, listener.accept()[0] as dest:
                dest.settimeout(TIMEOUT)

                def send() -> None:
                    source.sendall(data)
                    source.shutdown(socket.SHUT_WR)

                sender = threading.Thread(target=send)
                sender.start()
                while piece := dest.recv(1 << 20):
                    received += piece
                sender.join(TIMEOUT)
                assert not sender.is_alive()
        finally:
            proxy.close()
    assert bytes(received) == expected
    [rewriter] = proxy.rewriters
    assert rewriter.report.reached_last_ram_section and len(fault.changes) == 1
    assert tamper_outcome(fault, [rewriter.report]) == fault.changes


def test_the_proxy_reaches_the_destination_in_the_order_the_source_connected() -> None:
    """QEMU before 8.0 takes the first connection for the main channel (multifd's come
    after): a slow first dial must not let the second overtake it."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(TIMEOUT)
        target = listener.getsockname()[:2]
        dialled = threading.Event()

        def dial() -> socket.socket:
            if not dialled.is_set():
                dialled.set()
                threading.Event().wait(0.5)  # the first dial is the slow one
            return socket.create_connection(target, TIMEOUT)

        proxy = MigrationProxy(dial)
        try:
            address = proxy.start()
            with socket.create_connection(address, TIMEOUT) as first:
                assert dialled.wait(TIMEOUT)
                with socket.create_connection(address, TIMEOUT) as second:
                    first.sendall(b"1")
                    second.sendall(b"2")
                    accepted = [listener.accept()[0] for _ in range(2)]
                    for sock in accepted:
                        sock.settimeout(TIMEOUT)
                    try:
                        assert [sock.recv(1) for sock in accepted] == [b"1", b"2"]
                    finally:
                        for sock in accepted:
                            sock.close()
        finally:
            proxy.close()


# -- postcopy: followed across the switch, faults after it ------------------------------

#: POSTCOPY_ADVISE's payload: the host page size summary and the target page size.
ADVISE = u(8, 4096) + u(8, 4096)
#: A device section inside the package, with a footer of its own.
PACKAGED_DEVICE = bytes([FULL]) + u(4, 2) + idstr("dev") + u(4, 0) + u(4, 4) + b"\x7e\0\0\0\2x"


def package(first: int = 4, last: int = 5, device: bytes = PACKAGED_DEVICE) -> bytes:
    """The switch to postcopy: PACKAGED, then LISTEN (4), a device section, PING, RUN (5)."""
    body = (
        bytes([COMMAND]) + u(2, first) + u(2, 0)
        + device
        + bytes([COMMAND]) + u(2, 2) + u(2, 4) + u(4, 3)  # PING 3
        + bytes([COMMAND]) + u(2, last) + u(2, 0)
    )  # fmt: skip
    return bytes([COMMAND]) + u(2, 7) + u(2, 4) + u(4, len(body)) + body


def made_postcopy(switch: Optional[bytes] = None, page_size: bytes = b"") -> bytes:
    """A postcopy stream, as ``postcopy_start()`` orders it.

    Advised before the RAM section starts; a precopy pass of ``ram0``'s
    first 4 pages (counter 1, page 2 zero); at the switch a discard of
    pages 0-3 and the package; then, after it, pages 0-3 pushed again
    (counter 2 on pages 0-1, 1 on 3, page 2 zero) and the END section.

    :param page_size: inserted after ``ram0``'s length in the block list
        (postcopy's page size where it is not the host's).
    """
    made = Made()
    made.data = b"QEVM" + u(4, 3) + b"\x07" + u(4, 2) + b"pc"
    made.command(1, b"").command(2, u(4, 1)).command(3, ADVISE)  # OPEN_RETURN_PATH, PING 1
    blocks = idstr("ram0") + u(8, BLOCKS["ram0"]) + page_size + idstr("ram1") + u(8, BLOCKS["ram1"])
    made.section(START, 1, u(8, sum(BLOCKS.values()) | FLAG_MEM_SIZE) + blocks, "ram")
    made.ram(
        PART,
        record(FLAG_PAGE, 0, "ram0", page(1)),
        record(FLAG_PAGE, 4096, payload=page(1)),
        record(FLAG_ZERO, 2 * 4096, payload=b"\0"),
        record(FLAG_PAGE, 3 * 4096, payload=page(1)),
    )
    discard = b"\0" + idstr("ram0") + u(8, 0) + u(8, 4 * 4096)
    made.command(6, discard).command(2, u(4, 2))  # POSTCOPY_RAM_DISCARD, PING 2
    made.data += package() if switch is None else switch
    made.ram(
        PART,
        record(FLAG_ZERO, 0, "ram1", b"\0"),  # the next record must name ram0 again
        record(FLAG_PAGE, 0, "ram0", page(2)),
        record(FLAG_PAGE, 4096, payload=page(2)),
        record(FLAG_ZERO, 2 * 4096, payload=b"\0"),
    )
    return made.ram(END, record(FLAG_PAGE, 3 * 4096, "ram0", page(1))).end()


def test_a_postcopy_stream_is_followed_across_the_switch_unchanged() -> None:
    data = made_postcopy()
    for piece in (1, 7, PIECE):
        out, rewriter = rewrite(data, piece=piece)
        assert out == data
        report = rewriter.report
        assert rewriter.done == "followed to its end" and report.reached_last_ram_section
        assert report.misread is None and report.not_applicable is None
        assert report.postcopy_advised and report.postcopy_at == data.index(package())
        assert report.records["normal"] == 6 and report.records["zero"] == 3
        assert "switched to postcopy at byte" in report.describe()
    summary = read_stream(io.BytesIO(data))  # the judge's reader takes it too
    assert [name for _, name in summary.commands][-1] == "PACKAGED"


def test_a_block_page_size_postcopy_adds_is_crossed() -> None:
    data = made_postcopy(page_size=u(8, 2 << 20))
    out, rewriter = rewrite(data, OneByteChanged(RAM0, postcopy=True))
    assert rewriter.report.blocks == BLOCKS and rewriter.report.misread is None
    assert out != data and len(out) == len(data)


def test_one_byte_changed_only_after_the_switch() -> None:
    data = made_postcopy()
    fault = OneByteChanged(RAM0, postcopy=True)
    out, _ = rewrite(data, fault)
    [change] = fault.changes
    assert (change.offset, change.postcopy, change.final, change.at) == (0, True, True, change.at)
    assert change.at > data.index(package()) and change.old == bytes(8)
    assert "the postcopy phase" in change.describe() and "after the switch" in fault.describe()
    assert package() in out and len(out) == len(data)
    assert_rewritten_as_reported(data, out, fault.changes, RAM0)
    assert tamper_outcome(fault, [rewrite(data)[1].report]) == fault.changes


def test_a_zero_page_after_the_switch_arrives_as_text() -> None:
    data = made_postcopy()
    fault = ZeroPageAsData(RAM0, postcopy=True)
    out, _ = rewrite(data, fault)
    [change] = fault.changes
    assert (change.offset, change.postcopy) == (2 * 4096, True)
    assert change.at > data.index(package())  # not the zero page of the precopy pass
    assert change.new == ZERO_PAGE_FILLER[:8]
    assert_rewritten_as_reported(data, out, fault.changes, RAM0)


def test_the_stale_copy_replaces_the_right_one_after_the_switch() -> None:
    data = made_postcopy()
    fault = StalePageInstead(RAM0)
    out, _ = rewrite(data, fault)
    [change] = fault.changes
    assert (change.offset, change.old[0], change.new[0], change.postcopy) == (0, 2, 1, True)
    assert len(out) == len(data)  # in place: no second copy
    assert_rewritten_as_reported(data, out, fault.changes, RAM0)


def test_a_stale_copy_is_only_one_that_differs() -> None:
    """Page 3 holds after the switch what precopy sent: no stale copy to give it."""
    region = PageRange("ram0", 3 * 4096, 4 * 4096, MiB)
    fault = StalePageInstead(region)
    assert rewrite(made_postcopy(), fault)[0] == made_postcopy() and not fault.changes


def test_faults_after_the_switch_strike_nothing_in_a_precopy_stream() -> None:
    data = made_with_pages()
    for fault in (
        OneByteChanged(RAM0, postcopy=True),
        ZeroPageAsData(RAM0, postcopy=True),
        TwoPagesSwapped(RAM0, postcopy=True),
        StalePageInstead(RAM0),
    ):
        out, rewriter = rewrite(data, fault)
        assert out == data and not fault.changes
        with pytest.raises(TamperError, match=r"after the switch to postcopy.*nothing struck"):
            tamper_outcome(fault, [rewriter.report])


@pytest.mark.parametrize(
    "switch, expected",
    [
        (package(first=2), "a package from POSTCOPY_LISTEN"),
        (package(last=2), "a package from POSTCOPY_LISTEN"),
        (bytes([COMMAND]) + u(2, 7) + u(2, 8) + u(8, 1), "a PACKAGED command of 4 bytes"),
    ],
    ids=["no-listen", "no-run", "length"],
)
def test_a_package_it_does_not_know_passes_unchanged_and_is_an_error(
    switch: bytes, expected: str
) -> None:
    data = made_postcopy(switch)
    fault = OneByteChanged(RAM0, postcopy=True)
    out, rewriter = rewrite(data, fault)
    assert out == data and not fault.changes
    assert expected in (rewriter.report.misread or "")
    with pytest.raises(TamperError, match="could not follow"):
        tamper_outcome(fault, [rewriter.report])


def test_a_stream_advised_but_never_switched_says_so() -> None:
    data = Made().command(3, ADVISE).end()
    fault = OneByteChanged(RAM0, postcopy=True)
    _, rewriter = rewrite(data, fault)
    with pytest.raises(TamperError, match="postcopy advised but never switched to"):
        tamper_outcome(fault, [rewriter.report])
