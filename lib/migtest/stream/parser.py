"""The savevm level of a stream: header, configuration, sections, commands.

Device sections are VMState, which does not say its own sizes: they are
crossed by the sizes QEMU writes into the vmdesc (each field's size times
its array length, plus subsections), and the footer must be exactly
there.  A section the vmdesc does not describe (a truncated file, an
iterable section other than ``ram``), or whose described size misses the
footer (QEMU 7.2 describes an array of pointers by its first element), is
crossed by finding its footer: ``0x7e``, its section id, then a section
type.  Bytes of device state could imitate that; :attr:`Section.crossed_by`
says which way each section went.
"""

from __future__ import annotations

from collections import defaultdict, deque
from typing import Any, BinaryIO, Deque, Dict, List, Optional, Tuple

from .model import (
    COMMAND,
    COMMANDS,
    CONFIGURATION,
    DEFAULT_PAGE_SIZE,
    END,
    EOF,
    FOOTER,
    FULL,
    KINDS,
    MAGIC,
    MIG_CMD_PACKAGED,
    PART,
    START,
    SUBSECTION,
    VERSION,
    VMDESC,
    Section,
    StreamSummary,
)
from .ram import PageSink, RamReader
from .reader import Reader, find_vmdesc, vmsd_size


class Parser:
    """One pass over a stream, filling a :class:`StreamSummary`."""

    def __init__(
        self, file: BinaryIO, size: int, use_vmdesc: bool = True, pages: Optional[PageSink] = None
    ) -> None:
        self.r = Reader(file, size)
        self.s = StreamSummary(size=size)
        found = find_vmdesc(file, size)
        file.seek(0)
        #: vmdesc entries not yet matched, by (idstr, instance): the order of saving.
        self.described: Dict[Tuple[str, int], Deque[Dict[str, Any]]] = defaultdict(deque)
        if found is not None:
            self.s.vmdesc_offset, self.s.vmdesc = found
            self.s.page_size = int(self.s.vmdesc.get("page_size", DEFAULT_PAGE_SIZE))
            for dev in self.s.vmdesc.get("devices", []) if use_vmdesc else []:
                self.described[(str(dev.get("name")), int(dev.get("instance_id", 0)))].append(dev)
        self.open: Dict[int, Section] = {}  # started iterable sections, by id
        self.footers: Optional[bool] = None  # learnt from the first section
        self.capabilities: List[str] = []
        self.ram = RamReader(self.r, self.s, self.capabilities, pages)

    def run(self) -> StreamSummary:
        r = self.r
        magic = r.uint(4, "the magic 'QEVM'")
        if magic != MAGIC:
            raise r.fail("the magic 'QEVM' (0x5145564d)", f"0x{magic:08x}", 0)
        self.s.version = r.uint(4, "the stream version")
        if self.s.version != VERSION:
            raise r.fail(f"stream version {VERSION}", str(self.s.version), 4)
        while not self.s.ended_with_eof:
            r.where = f"the section after byte {r.pos}"
            start = r.pos
            kind = r.uint(1, "a section type")
            if kind == CONFIGURATION and start == 8:
                self._configuration()
            elif kind in KINDS:
                self._section(kind, start)
            elif kind == COMMAND:
                self._command(start)
            elif kind == EOF:
                self.s.ended_with_eof = True
            else:
                raise r.fail("a section type (0x00-0x04, 0x08)", f"0x{kind:02x}", start)
        r.where = "the end of the stream"
        if r.pos != r.size and r.pos != self.s.vmdesc_offset:
            self._bad_tail()
        return self.s

    def _bad_tail(self) -> None:
        """Say what follows EOF instead of nothing or a vmdesc reaching the end."""
        r, expected = self.r, "the end of the file or the vmdesc (0x06 u32:length JSON)"
        if r.peek() != VMDESC or r.size - r.pos < 5:
            raise r.fail(expected, f"{r.size - r.pos} more bytes")
        r.skip(1, "the vmdesc marker")
        length = r.uint(4, "the vmdesc's length")
        if length > r.size - r.pos:
            r.where = "the vmdesc"
            raise r.short(f"{length} bytes of JSON")
        rest = r.size - r.pos - length
        found = f"then {rest} more bytes" if rest else "not a JSON object"
        raise r.fail(expected, f"a vmdesc of {length} bytes, {found}", r.pos - 5)

    def _configuration(self) -> None:
        r = self.r
        r.where = "the configuration section"
        length = r.uint(4, "the machine type's length")
        raw = r.take(length, "the machine type")
        if not raw or not raw.isascii() or not raw.decode().isprintable():
            raise r.fail("a machine type name", repr(raw[:40]), r.pos - length)
        self.s.machine_type = raw.decode()
        config = (self.s.vmdesc or {}).get("configuration", {})
        described = {str(sub.get("vmsd_name")): sub for sub in config.get("subsections", [])}
        while r.peek() == SUBSECTION:
            r.skip(1, "the subsection marker")
            name = r.name("a configuration subsection name")
            r.where = f"the configuration subsection '{name}'"
            r.uint(4, "its version")
            short = name.rpartition("/")[2]
            if short == "target-page-bits":
                bits = r.uint(4, "the target page bits")
                if not 10 <= bits <= 16:
                    raise r.fail("target page bits 10-16", str(bits), r.pos - 4)
                self.s.page_size = 1 << bits
                self.s.configuration[short] = bits
            elif short == "capabilities":
                count = r.uint(4, "the number of capabilities")
                self.capabilities[:] = [r.name("a capability name") for _ in range(count)]
                self.s.configuration[short] = self.capabilities
            elif short == "uuid":
                self.s.configuration[short] = r.take(16, "the UUID").hex()
            elif name in described:
                r.skip(vmsd_size(described[name]), "the subsection, as the vmdesc sizes it")
                self.s.configuration[short] = "skipped"
            else:
                raise r.fail("a known configuration subsection", repr(name))

    def _section(self, kind: int, start: int) -> None:
        r = self.r
        sid = r.uint(4, "the section id")
        if kind in (START, FULL):
            idstr = r.name("the section's idstr")
            section = Section(
                KINDS[kind],
                sid,
                idstr,
                r.uint(4, "the instance id"),
                r.uint(4, "the version id"),
                start,
            )
            if kind == START:
                self.open[sid] = section
        elif sid in self.open:
            first = self.open[sid]
            section = Section(
                KINDS[kind], sid, first.idstr, first.instance_id, first.version_id, start
            )
        else:
            raise r.fail("the id of a started section", f"section id {sid}", start + 1)
        r.where = f"section '{section.idstr}' (id {sid}, {section.kind})"
        if kind == END:
            del self.open[sid]
        if section.idstr == "ram":
            self.ram.read()
            section.crossed_by = "ram"
            self._footer(section, required=False)
        else:
            self._device(section)
        section.end = r.pos
        self.s.sections.append(section)

    def _footer(self, section: Section, required: bool) -> None:
        """Read the footer if the stream has them; the first section tells."""
        r = self.r
        if self.footers is None:
            self.footers = r.peek() == FOOTER
        if not self.footers:
            if required:
                raise r.fail("a section footer (0x7e)", "a stream without footers")
            return
        mark = r.uint(1, "the section footer (0x7e)")
        if mark != FOOTER:
            raise r.fail("the section footer (0x7e)", f"0x{mark:02x}", r.pos - 1)
        sid = r.uint(4, "the footer's section id")
        if sid != section.section_id:
            raise r.fail(f"footer of section id {section.section_id}", f"id {sid}", r.pos - 4)

    def _device(self, section: Section) -> None:
        """Cross a VMState section by the vmdesc's sizes, or find its footer."""
        r = self.r
        queue = self.described.get((section.idstr, section.instance_id))
        size = vmsd_size(queue.popleft()) if section.kind == "full" and queue else None
        if size is not None and (self.footers is False or self._footer_at(r.pos + size, section)):
            r.skip(size, "the device state, as the vmdesc sizes it")
            section.crossed_by = "vmdesc"
        elif r.peek() == FOOTER and self._footer_at(r.pos, section):
            section.crossed_by = "empty"
        elif self._search_footer(section, strict=size is not None):
            # QEMU 7.2 sizes arrays of pointers by their first element (s390_css).
            section.crossed_by = "footer-search" if size is None else "footer-search, vmdesc off"
        else:  # assert size is not None: the footer is not where the vmdesc says
            r.skip(min(size or 0, r.size - r.pos), "the device state, as the vmdesc sizes it")
        self._footer(section, required=True)

    def _footer_at(self, at: int, section: Section, then_section: bool = True) -> bool:
        """Whether ``section``'s footer is at ``at``, followed by a section or EOF."""
        file, here = self.r.file, self.r.file.tell()
        file.seek(at)
        data = file.read(6)
        file.seek(here)
        if data[:5] != bytes([FOOTER]) + section.section_id.to_bytes(4, "big"):
            return False
        return (
            not then_section or len(data) == 5 or data[5] in (EOF, START, PART, END, FULL, COMMAND)
        )

    def _search_footer(self, section: Section, strict: bool) -> bool:
        """Move to the first footer of ``section`` that a section follows.

        Failing that, to the first footer of it at all, unless ``strict``
        (the vmdesc said where it should be): the next read says what is
        wrong there.  :return: whether one was found.
        """
        r = self.r
        if self.footers is False:
            raise r.fail("a vmdesc entry for this section", "none, and no footers to find its end")
        wanted = bytes([FOOTER]) + section.section_id.to_bytes(4, "big")
        chunk, at, loose = 1 << 20, r.pos, None
        while at < r.size:
            r.file.seek(at)
            data = r.file.read(chunk + len(wanted))
            hit = data.find(wanted)
            if hit >= 0 and loose is None:
                loose = at + hit
            while hit >= 0 and not self._footer_at(at + hit, section):
                hit = data.find(wanted, hit + 1)
            if hit >= 0 or (at + chunk >= r.size and loose is not None and not strict):
                r.file.seek(r.pos)
                r.skip((at + hit if hit >= 0 else loose or 0) - r.pos, "the device state")
                return True
            at += chunk
        r.file.seek(r.pos)
        if strict:
            return False
        raise r.short(f"the device state and footer of section id {section.section_id}")

    def _command(self, start: int) -> None:
        r = self.r
        r.where = f"the command at byte {start}"
        cmd = r.uint(2, "the command number")
        length = r.uint(2, "the command's length")
        if not 0 < cmd < len(COMMANDS):
            raise r.fail(f"a command number 1-{len(COMMANDS) - 1}", str(cmd), start + 1)
        data = r.take(length, "the command's data")
        self.s.commands.append((start, COMMANDS[cmd]))
        if cmd == MIG_CMD_PACKAGED:  # a whole stream wrapped; listed, not read
            r.skip(int.from_bytes(data[:4], "big"), "the packaged stream")
