"""The vocabulary of the migration stream: its constants, what a reader
finds (:class:`StreamSummary`) and how it says a stream is wrong
(:class:`StreamError`)."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

from ..errors import CheckFailure

MAGIC = 0x5145564D  # "QEVM"
VERSION = 3
EOF, START, PART, END, FULL, SUBSECTION, VMDESC, CONFIGURATION, COMMAND = range(9)
FOOTER = 0x7E
KINDS = {START: "start", PART: "part", END: "end", FULL: "full"}
COMMANDS = (
    "INVALID OPEN_RETURN_PATH PING POSTCOPY_ADVISE POSTCOPY_LISTEN POSTCOPY_RUN "
    "POSTCOPY_RAM_DISCARD PACKAGED ENABLE_COLO POSTCOPY_RESUME RECV_BITMAP SWITCHOVER_START"
).split()
MIG_CMD_PACKAGED = 7

# RAM_SAVE_FLAG_*, the low bits of each RAM record's u64.
FLAG_ZERO, FLAG_MEM_SIZE, FLAG_PAGE, FLAG_EOS = 0x02, 0x04, 0x08, 0x10
FLAG_CONTINUE, FLAG_XBZRLE, FLAG_HOOK = 0x20, 0x40, 0x80
FLAG_COMPRESS_PAGE, FLAG_MULTIFD_FLUSH = 0x100, 0x200  # the first gone since 9.1
PAGE_KINDS = {
    FLAG_ZERO: "zero",
    FLAG_PAGE: "normal",
    FLAG_XBZRLE: "xbzrle",
    FLAG_COMPRESS_PAGE: "compressed",
}
ENCODING_FLAG_XBZRLE = 0x01
#: The target page size when neither the configuration nor the vmdesc says:
#: x86_64, s390x and ppc64 fix it at 4 KiB; Arm sends target-page-bits.
DEFAULT_PAGE_SIZE = 4096
#: How far from the end the vmdesc is looked for (x86_64's is ~100 KB).
VMDESC_WINDOW = 16 << 20


class StreamError(CheckFailure):
    """A migration stream is not what QEMU writes: truncated, corrupted, unknown.

    A :class:`~migtest.errors.CheckFailure`: a stream QEMU wrote and
    reported ``completed`` must be well formed, so a bad one is QEMU's
    failure (FAIL), not the test's (ERROR).

    :ivar offset: the byte of the file where what was expected starts.
    :ivar where: what was being read, e.g. ``section 'ram' (id 2, part),
        normal page of block 'pc.ram'``.
    :ivar expected: what the format requires there.
    :ivar found: what the file holds instead.
    :ivar truncated_at: the file's size, if it ended too early; else None.
    """

    def __init__(
        self, offset: int, where: str, expected: str, found: str, truncated_at: Optional[int] = None
    ) -> None:
        self.offset, self.where, self.expected, self.found = offset, where, expected, found
        self.truncated_at = truncated_at
        if truncated_at is None:
            message = f"bad stream at byte {offset} in {where}: expected {expected}, found {found}"
        else:
            message = (
                f"truncated at byte {truncated_at} inside {where}: "
                f"expected {expected} from byte {offset}"
            )
        super().__init__(message)


@dataclass
class Section:
    """One section of the stream, as its header names it."""

    kind: str  #: start, part, end or full
    section_id: int
    idstr: str
    instance_id: int
    version_id: int
    offset: int  #: its header's first byte
    end: int = 0  #: the byte after its footer (or data)
    #: How its data was crossed: ``ram`` (read), ``vmdesc`` (its sizes),
    #: ``footer-search``, or ``empty``.
    crossed_by: str = ""


@dataclass
class RamBlock:
    """A RAM block the ``ram`` section announces (MEM_SIZE)."""

    name: str
    used_length: int
    page_size: Optional[int] = None  #: only sent for postcopy, when unusual
    addr: Optional[int] = None  #: only sent with x-ignore-shared


@dataclass
class StreamSummary:
    """What a stream holds, from :func:`read_stream`."""

    size: int
    version: int = 0
    machine_type: Optional[str] = None
    #: The configuration's subsections: target-page-bits, capabilities, uuid.
    configuration: Dict[str, object] = field(default_factory=dict)
    page_size: int = DEFAULT_PAGE_SIZE
    sections: List[Section] = field(default_factory=list)
    ram_blocks: List[RamBlock] = field(default_factory=list)
    #: RAM records by kind (normal, zero, xbzrle, compressed), all blocks.
    pages: Counter[str] = field(default_factory=Counter)
    pages_by_block: Counter[str] = field(default_factory=Counter)
    commands: List[Tuple[int, str]] = field(default_factory=list)  #: (offset, name)
    ended_with_eof: bool = False
    #: The vmdesc JSON; kept out of repr, which Avocado may dump.
    vmdesc: Optional[Dict[str, Any]] = field(default=None, repr=False)
    vmdesc_offset: Optional[int] = None

    def describe(self) -> str:
        """Several lines for people: the machine, blocks, pages, sections."""
        mib = 1 << 20
        lines = [
            f"QEMU migration stream v{self.version}, {self.size} bytes, machine "
            f"{self.machine_type or '(no configuration section)'}, page size {self.page_size}",
            "ended with EOF" if self.ended_with_eof else "NO EOF",
        ]
        if self.configuration:
            lines.append(f"configuration: {self.configuration}")
        for block in self.ram_blocks:
            lines.append(
                f"RAM block {block.name!r}: {block.used_length} bytes "
                f"({block.used_length / mib:.1f} MiB), {self.pages_by_block[block.name]} records"
            )
        lines.append(
            "RAM records: " + (", ".join(f"{n} {k}" for k, n in self.pages.items()) or "none")
        )
        groups: Dict[Tuple[str, int], List[Section]] = defaultdict(list)
        for s in self.sections:
            groups[(s.idstr, s.instance_id)].append(s)
        lines.append(f"{len(self.sections)} sections, {len(groups)} devices:")
        for (idstr, instance), parts in groups.items():
            kinds = Counter(s.kind for s in parts)
            how = sorted({s.crossed_by for s in parts})
            counts = ", ".join(f"{n} {k}" for k, n in kinds.items())
            lines.append(
                f"  {idstr!r} instance {instance} v{parts[0].version_id} "
                f"at byte {parts[0].offset}: {counts} ({'/'.join(how)})"
            )
        for offset, name in self.commands:
            lines.append(f"command {name} at byte {offset}")
        if self.vmdesc is not None:
            devices = len(self.vmdesc.get("devices", []))
            lines.append(f"vmdesc at byte {self.vmdesc_offset}: {devices} devices described")
        return "\n".join(lines)
