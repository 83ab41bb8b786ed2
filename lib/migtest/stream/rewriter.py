"""Following a live migration stream, and letting a fault rewrite its page records.

:class:`StreamRewriter` reads a migration stream as a proxy passes it on
(:mod:`.follow`): the header and configuration, every section header,
and every record of the ``ram`` sections, up to the end of the last one;
from there on (device state, EOF, vmdesc) everything passes unchanged.
Other sections (ppc64's ``spapr/htab``, s390x's storage attributes) are
crossed by finding their footer -- ``0x7e``, their section id -- and a
plausible header after it, as :mod:`.parser` crosses sections it has no
vmdesc sizes for; without footers it cannot, and says so.

The page records of the fault's range go to the fault
(:class:`~.tamper.PageFault`), which says what to send instead; any other
byte passes as it came.  A record the fault changed is encoded as QEMU
would: the block named, or CONTINUE where the destination's last record
was of the same block.

A postcopy stream is followed across the switch: the device state comes
packaged (a PACKAGED command), and every RAM record after it -- pages
the source pushes and pages the destination asked for -- is the page's
last copy, marked so for the fault (:attr:`~.tamper.PageRecord.postcopy`).
The return path, the other way, is no business of the rewriter.

Where the stream cannot be followed it says why, and passes everything
on unchanged: a stream that is no migration stream (TLS, a multifd
channel, a postcopy's preempt channel or recovery), RDMA, a
configuration it cannot size.  Where the pages go elsewhere (multifd,
compression, XBZRLE), the fault finds nothing to strike.
"""

from __future__ import annotations

from typing import Dict, Generator, List, Optional

from .follow import Follower, Misread, Parse, Peek, Request, Skip, SkipTo, StreamEnded, Take
from .model import (
    COMMAND,
    COMMANDS,
    CONFIGURATION,
    DEFAULT_PAGE_SIZE,
    END,
    EOF,
    FLAG_COMPRESS_PAGE,
    FLAG_CONTINUE,
    FLAG_EOS,
    FLAG_HOOK,
    FLAG_MEM_SIZE,
    FLAG_MULTIFD_FLUSH,
    FLAG_PAGE,
    FLAG_XBZRLE,
    FLAG_ZERO,
    FOOTER,
    FULL,
    KINDS,
    MAGIC,
    PAGE_KINDS,
    PART,
    START,
    SUBSECTION,
    VERSION,
    VMDESC,
)
from .outcome import RewriteReport
from .ram import flag_names, page_size_follows
from .tamper import PageFault, PageRecord

#: The first four bytes of channels that carry no migration stream.
OTHER_CHANNELS = {
    0x11223344: "a multifd channel (its pages are not in the main stream)",
}
#: The byte a TLS handshake starts with (a record of type handshake).
TLS_HANDSHAKE = 0x16
#: The commands a postcopy package starts and ends with: POSTCOPY_LISTEN, POSTCOPY_RUN.
PACKAGE_OPENS = bytes([COMMAND]) + COMMANDS.index("POSTCOPY_LISTEN").to_bytes(2, "big") + bytes(2)
PACKAGE_CLOSES = bytes([COMMAND]) + COMMANDS.index("POSTCOPY_RUN").to_bytes(2, "big") + bytes(2)
#: Records that carry no page, as reports count them.
RECORD_NAMES = {FLAG_EOS: "eos", FLAG_MEM_SIZE: "mem-size", FLAG_MULTIFD_FLUSH: "multifd-flush"}


class StreamRewriter(Follower):
    """One connection's stream, followed and rewritten by ``fault`` (none: followed only)."""

    def __init__(self, fault: Optional[PageFault] = None) -> None:
        super().__init__()
        self.fault = fault
        self.report = RewriteReport()
        self.page_size = DEFAULT_PAGE_SIZE
        self.capabilities: List[str] = []
        self.open: Dict[int, str] = {}  # started sections: id -> idstr
        self.footers: Optional[bool] = None
        self.where = "the stream header"
        self._src_block: Optional[str] = None  # the block CONTINUE means in what came
        self._dst_block: Optional[str] = None  # ... and in what was passed on
        self._names: Dict[bytes, str] = {}  # the RAM blocks, by their names' bytes
        #: Whether the switch to postcopy passed: every RAM record since is a page's last copy.
        self.postcopy = False

    def misread(
        self, expected: str, found: str, at: Optional[int] = None, where: str = ""
    ) -> Misread:
        byte = self.offset if at is None else at
        message = f"at byte {byte} in {where or self.where}: expected {expected}, found {found}"
        self.report.misread = message
        return Misread(message)

    def not_applicable(self, why: str) -> Misread:
        """Stop following: the rest passes unchanged, and the report says why."""
        self.report.not_applicable = why
        self._release()
        return Misread(f"not applicable: {why}")

    def parse(self) -> Parse:
        try:
            yield from self._stream()
        except StreamEnded:
            self._release()
            raise StreamEnded(f"the stream ended inside {self.where}") from None
        except Misread:
            self._release()
            raise

    def _uint(self, width: int) -> Generator[Request, bytes, int]:
        return int.from_bytes((yield Take(width)), "big")

    def _name(self, what: str) -> Generator[Request, bytes, str]:
        """A u8 length and that many printable characters (an idstr)."""
        start = self.offset
        raw = yield Take((yield from self._uint(1)))
        if not raw or not all(0x20 <= b < 0x7F for b in raw):
            raise self.misread(f"{what}: 1-255 printable characters", repr(raw), start)
        return raw.decode()

    def _stream(self) -> Parse:
        head = yield Take(8)
        magic, version = int.from_bytes(head[:4], "big"), int.from_bytes(head[4:], "big")
        if magic != MAGIC:
            other = OTHER_CHANNELS.get(magic)
            if other is None and head[0] == TLS_HANDSHAKE:
                other = "TLS (the stream is encrypted)"
            raise self.not_applicable(
                f"no migration stream: it starts with 0x{magic:08x}, {other or 'not QEVM'}"
            )
        if version != VERSION:
            raise self.misread(f"stream version {VERSION}", str(version), 4)
        self.commit()
        while True:
            self.where = f"the section after byte {self.offset}"
            start = self.offset
            kind = (yield Take(1))[0]
            if kind == CONFIGURATION and start == 8:
                yield from self._configuration()
            elif kind in KINDS:
                if (yield from self._section(kind, start)):
                    return  # the last RAM section is over: nothing more to rewrite
            elif kind == COMMAND:
                yield from self._command(start)
            elif kind == EOF:
                return
            else:
                raise self.misread("a section type (0x00-0x04, 0x07, 0x08)", f"0x{kind:02x}", start)
            self.commit()

    def _configuration(self) -> Parse:
        self.where = "the configuration section"
        yield Take((yield from self._uint(4)))  # the machine type
        while (yield Peek(1)) == bytes([SUBSECTION]):
            yield Take(1)
            name = yield from self._name("a configuration subsection name")
            self.where = f"the configuration subsection '{name}'"
            yield Take(4)  # its version
            short = name.rpartition("/")[2]
            if short == "target-page-bits":
                self.page_size = 1 << (yield from self._uint(4))
            elif short == "capabilities":
                count = yield from self._uint(4)
                for _ in range(count):
                    self.capabilities.append((yield from self._name("a capability name")))
            elif short == "uuid":
                yield Take(16)
            else:
                raise self.not_applicable(f"a configuration subsection '{name}' of unknown size")
        if "mapped-ram" in self.capabilities:
            raise self.not_applicable("mapped-ram: pages are not records of the stream")

    def _section(self, kind: int, start: int) -> Generator[Request, bytes, bool]:
        """Cross one section; return whether it was the last RAM section."""
        sid = yield from self._uint(4)
        if kind in (START, FULL):
            idstr = yield from self._name("the section's idstr")
            yield Take(8)  # instance and version ids
            if kind == START:
                self.open[sid] = idstr
        elif sid in self.open:
            idstr = self.open[sid]
        else:
            raise self.misread("the id of a started section", f"section id {sid}", start + 1)
        self.where = f"section '{idstr}' (id {sid}, {KINDS[kind]})"
        self.commit()
        if kind == END:
            del self.open[sid]
        if idstr != "ram":
            yield from self._cross(sid)
            return False
        self.report.ram_sections += 1
        yield from self._ram(final=kind == END or self.postcopy)
        if self.footers is None:
            self.footers = (yield Peek(1)) == bytes([FOOTER])
        if self.footers:
            footer = yield Take(5)
            if footer != bytes([FOOTER]) + sid.to_bytes(4, "big"):
                raise self.misread(f"the footer of section id {sid}", footer.hex())
        self.commit()
        self.report.reached_last_ram_section = kind == END
        return kind == END

    def _cross(self, sid: int) -> Parse:
        """Pass a section we do not read: up to its footer, then a plausible header."""
        if self.footers is False:
            raise self.not_applicable(
                "a stream without section footers (an old machine type): "
                f"{self.where} cannot be crossed"
            )
        footer = bytes([FOOTER]) + sid.to_bytes(4, "big")
        while True:
            yield SkipTo(footer)
            ahead = yield Peek(len(footer) + 10)
            if len(ahead) < len(footer):
                raise StreamEnded()
            if self._plausible_header(ahead[len(footer) :]):
                yield Skip(len(footer))
                return
            yield Skip(1)

    def _plausible_header(self, data: bytes) -> bool:
        """Whether ``data`` can start what follows a section: another, a command, EOF."""
        if not data:
            return True  # the stream ended there
        kind, sid = data[0], int.from_bytes(data[1:5], "big")
        if kind in (PART, END):
            return len(data) >= 5 and sid in self.open
        if kind in (START, FULL):
            name = data[6 : 6 + data[5]] if len(data) > 5 else b""
            return len(data) > 5 and data[5] > 0 and all(0x20 <= b < 0x7F for b in name)
        if kind == COMMAND:
            return len(data) >= 3 and 0 < int.from_bytes(data[1:3], "big") < len(COMMANDS)
        return kind == EOF and (len(data) == 1 or data[1] == VMDESC)

    def _command(self, start: int) -> Parse:
        self.where = f"the command at byte {start}"
        cmd = yield from self._uint(2)
        length = yield from self._uint(2)
        if not 0 < cmd < len(COMMANDS):
            raise self.misread(f"a command number 1-{len(COMMANDS) - 1}", str(cmd), start + 1)
        self.commit()
        name = COMMANDS[cmd]
        if name == "POSTCOPY_ADVISE":
            self.report.postcopy_advised = True
        if name == "PACKAGED":
            yield from self._package(start, length)
            return
        yield Skip(length)

    def _package(self, start: int, length: int) -> Parse:
        """The switch to postcopy: the device state, packaged; RAM records follow it.

        The package (a u32 length, then that many bytes) is a stream of its
        own without a header: POSTCOPY_LISTEN first, the device sections,
        POSTCOPY_RUN last (``postcopy_start()``, migration/migration.c).
        It is passed whole once read (the destination reads it whole before
        loading it); every RAM record after it is sent with the source
        stopped, each page once (the destination discarded the pages dirty
        at the switch, ``ram_postcopy_send_discard_bitmap()``): its last copy.
        """
        if length != 4:
            raise self.misread("a PACKAGED command of 4 bytes (the package's length)", str(length))
        size = yield from self._uint(4)
        self.commit()
        self.where = f"the package of {size} bytes at byte {start}"
        package = yield Take(size)
        listen, run = PACKAGE_OPENS, PACKAGE_CLOSES
        if not (package.startswith(listen) and package.endswith(run)):
            raise self.misread(
                f"a package from POSTCOPY_LISTEN ({listen.hex()}) to POSTCOPY_RUN ({run.hex()})",
                f"{package[:5].hex()}...{package[-5:].hex()}",
                self.offset - size,
            )
        self.commit()
        self.postcopy = True
        self.report.postcopy_at = start

    def _ram(self, final: bool) -> Parse:
        """The records of one ``ram`` section, up to and including EOS."""
        while True:
            self._pass_records()
            start = self.offset
            header = int.from_bytes((yield Take(8)), "big")
            flags, addr = header & (self.page_size - 1), header & ~(self.page_size - 1)
            kind = flags & ~FLAG_CONTINUE
            if kind in PAGE_KINDS:
                yield from self._record(kind, flags, addr, start, final)
                continue
            self._release()
            if flags & FLAG_CONTINUE or kind not in RECORD_NAMES:
                if kind & FLAG_HOOK:
                    raise self.not_applicable("RDMA (RAM_SAVE_FLAG_HOOK records)")
                raise self.misread(
                    "RAM flags: ZERO, PAGE, XBZRLE or COMPRESS_PAGE (maybe with CONTINUE), "
                    "MEM_SIZE, EOS, MULTIFD_FLUSH",
                    flag_names(flags),
                    start,
                )
            self.report.records[RECORD_NAMES[kind]] += 1
            if kind == FLAG_EOS:
                self.commit()
                return
            if kind == FLAG_MEM_SIZE:
                yield from self._blocks(addr)
            self.commit()

    def _pass_records(self) -> None:
        """Pass on the whole ZERO and PAGE records at hand that are no business of the fault.

        The same as :meth:`_record` does with them, without a generator's
        round trip for each: most records of a stream are these.
        """
        buf, pos, end = self._buf, self._pos, len(self._buf)
        mask, blocks, fault = self.page_size - 1, self.report.blocks, self.fault
        sizes = {FLAG_ZERO: 1, FLAG_PAGE: self.page_size}
        counts = {FLAG_ZERO: 0, FLAG_PAGE: 0}
        block, released = self._src_block, False
        while pos + 8 <= end:
            header = int.from_bytes(buf[pos : pos + 8], "big")
            kind = header & mask & ~FLAG_CONTINUE
            size = sizes.get(kind)
            if size is None:
                break
            if header & FLAG_CONTINUE:
                length = 8
            elif pos + 9 > end:
                break
            else:
                length = 9 + buf[pos + 8]
                block = self._names.get(bytes(buf[pos + 9 : pos + length]))
            addr = header & ~mask
            if block is None or pos + length + size > end or addr >= blocks[block]:
                break
            if fault is not None and fault.covers(block, addr):
                break
            if not released:  # what the fault holds goes first
                self._release()
                released = True
            if header & FLAG_CONTINUE and block != self._dst_block:
                break  # to be named: the destination's last record is of another block
            self._src_block = self._dst_block = block
            counts[kind] += 1
            pos += length + size
        self._pos = pos
        self.commit()
        for kind, count in counts.items():
            if count:
                self.report.records[PAGE_KINDS[kind]] += count

    def _page_where(self, kind: int, addr: int, block: str) -> str:
        return f"{self.where}, {PAGE_KINDS[kind]} page 0x{addr:x} of block '{block}'"

    def _blocks(self, total: int) -> Parse:
        context, seen = self.where, 0
        while seen < total:
            self.where = f"the RAM block list after {seen} of {total} bytes"
            name = yield from self._name("a RAM block name")
            length = yield from self._uint(8)
            self.report.blocks[name] = length
            self._names[name.encode()] = name
            if self.report.postcopy_advised and page_size_follows((yield Peek(8))):
                yield Take(8)  # the block's page size, sent where it is not the host's
            if "x-ignore-shared" in self.capabilities:
                yield Take(8)  # the block's address
            seen += length
        if seen != total:
            raise self.misread(f"RAM blocks adding up to MEM_SIZE's {total} bytes", f"{seen}")
        self.where = context

    def _record(self, kind: int, flags: int, addr: int, start: int, final: bool) -> Parse:
        """One page record: to the fault if it is in its range, else passed on."""
        named = not flags & FLAG_CONTINUE
        if named:
            block = yield from self._name("the page's block name")
            if block not in self.report.blocks:
                raise self.misread("a block MEM_SIZE listed", repr(block), start + 8)
        elif self._src_block is None:
            raise self.misread("a block name: no record named one yet", "CONTINUE", start)
        else:
            block = self._src_block
        self._src_block = block
        if addr >= self.report.blocks[block]:
            raise self.misread(
                f"an offset below the block's {self.report.blocks[block]}",
                hex(addr),
                start,
                self._page_where(kind, addr, block),
            )
        self.report.records[PAGE_KINDS[kind]] += 1
        fault = self.fault
        mine = fault is not None and fault.covers(block, addr) and kind in (FLAG_ZERO, FLAG_PAGE)
        if not mine:
            self._release()
            if not named and self._dst_block != block:
                self.replace(self._header(addr | kind, block))
            self._dst_block = block
            self.commit()
            if fault is not None and fault.covers(block, addr):
                fault.resent(block, addr, start)  # an XBZRLE or compressed copy
            yield from self._skip_payload(kind)
            return
        assert fault is not None
        payload = yield Take(1 if kind == FLAG_ZERO else self.page_size)
        record = PageRecord(
            block,
            addr,
            kind,
            payload,
            self.page_size,
            final,
            start,
            self._pending(),
            named,
            postcopy=self.postcopy,
        )
        self._send(fault.record(record), read=record)

    def _skip_payload(self, kind: int) -> Parse:
        if kind == FLAG_ZERO:
            yield Skip(1)
        elif kind == FLAG_PAGE:
            yield Skip(self.page_size)
        elif kind == FLAG_XBZRLE:
            head = yield Take(3)
            self.commit()
            yield Skip(int.from_bytes(head[1:], "big"))
        else:
            assert kind == FLAG_COMPRESS_PAGE
            length = yield from self._uint(4)
            self.commit()
            yield Skip(length)

    def _pending(self) -> bytes:
        """The bytes read but neither passed on nor replaced: the current record's."""
        return bytes(self._buf[self._mark : self._pos])

    def _send(self, records: List[PageRecord], read: Optional[PageRecord] = None) -> None:
        """Pass ``records`` on in place of ``read`` (the record just read), if given."""
        encoded = [self._encode(r) for r in records]
        if read is None:
            self.insert(b"".join(encoded))
        elif len(records) == 1 and records[0] is read and encoded[0] is read.raw:
            self.commit()  # as it came
        else:
            self.replace(b"".join(encoded))

    def _release(self) -> None:
        """Send what the fault holds, before anything read since."""
        if self.fault is not None:
            held = self.fault.release()
            if held:
                self._send(held)

    def _encode(self, record: PageRecord) -> bytes:
        """The record as QEMU would send it after what was passed on so far."""
        continued = self._dst_block == record.block and not record.named
        self._dst_block = record.block
        if record.raw is not None and (continued or record.named):
            return record.raw
        flags = record.kind | (FLAG_CONTINUE if continued else 0)
        return self._header(record.offset | flags, None if continued else record.block) + (
            record.payload
        )

    def _header(self, word: int, block: Optional[str]) -> bytes:
        """A record header: the u64, and the block's name unless CONTINUE."""
        head = word.to_bytes(8, "big")
        if block is None:
            return head
        name = block.encode()
        return head + bytes([len(name)]) + name
