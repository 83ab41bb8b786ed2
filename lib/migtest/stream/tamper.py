"""Wrong page data in a well-formed stream: the faults a tampering proxy makes.

Each fault rewrites the RAM records of a migration stream so that QEMU
loads it without complaint -- every header is one QEMU could have
written -- yet the destination's memory differs from the source's in one
or two pages.  The suite's checks must notice: only page data is wrong.

A fault sees the page records (:class:`PageRecord`) of one range of guest
memory (:class:`PageRange`), as :class:`~migtest.stream.rewriter.StreamRewriter`
hands them over, and says what to send instead.  It strikes once, where
the change will stay:

- in the last RAM section, sent once the source has stopped: no later
  copy of the page can repair it (:class:`OneByteChanged`,
  :class:`TwoPagesSwapped`, :class:`StalePageResent`);
- or on a page the guest never writes, sent once in the first pass
  (:class:`ZeroPageAsData`).

Either way it watches the rest of the stream, and a later copy of a
changed page from the source is recorded (:attr:`Change.resent_at`): the
change did not survive.

Made with ``postcopy=True``, a fault strikes only after the switch to
postcopy, where every page the source sends -- pushed, or asked for by
the destination -- is its last copy: the source has stopped and sends
each page once (:class:`StalePageInstead` sends the stale copy in place
of the right one, since a second copy there is not what QEMU sends).
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from dataclasses import dataclass, field, replace
from typing import ClassVar, Dict, List, Optional, Sequence, Tuple

from ..errors import CheckFailure, ConfigError, MigtestError
from .model import FLAG_PAGE, FLAG_ZERO

#: What :class:`ZeroPageAsData` writes into a page that was zero: text, so
#: that a memory dump shows where it came from.
ZERO_PAGE_FILLER = b"migtest: this page was zero on the source. "

#: Bytes of the old and new content a :class:`Change` keeps.
SHOWN = 8


class TamperError(MigtestError):
    """The proxy could not make the change a test asked for: the test cannot tell."""


class NothingToStrike(TamperError):
    """The guest left the fault nothing to change this time; another migration may.

    Not the proxy's failing nor QEMU's: e.g. a source whose guest stopped
    between two passes sends pages that are all alike, and swapping two of
    them changes nothing.
    """


@dataclass(frozen=True)
class PageRange:
    """Pages ``[start, end)`` of the RAM block ``block``, at guest physical ``address``.

    :raise ConfigError: the range is empty.
    """

    block: str
    start: int
    end: int
    #: The guest physical address of the block's byte ``start``.
    address: int

    def __post_init__(self) -> None:
        if not 0 <= self.start < self.end:
            raise ConfigError("range", f"[{self.start}, {self.end})", "a non-empty byte range")

    def covers(self, block: str, offset: int) -> bool:
        """Whether the page at ``offset`` of ``block`` is in the range."""
        return block == self.block and self.start <= offset < self.end

    def address_of(self, offset: int) -> int:
        """The guest physical address of byte ``offset`` of the block."""
        return self.address + offset - self.start

    def describe(self) -> str:
        return (
            f"block '{self.block}' [0x{self.start:x}, 0x{self.end:x}) "
            f"(guest 0x{self.address:x}-0x{self.address_of(self.end):x})"
        )


@dataclass(frozen=True)
class PageRecord:
    """A ZERO or PAGE record of the ``ram`` section, as sent or to be sent."""

    block: str
    offset: int
    #: ``FLAG_ZERO`` (payload: the fill byte) or ``FLAG_PAGE`` (payload: the page).
    kind: int
    payload: bytes
    page_size: int
    #: Whether it is in the last RAM section, sent with the source stopped.
    final: bool
    #: The stream offset of its header; -1 for a record the fault made.
    at: int = -1
    #: The bytes the source sent, as long as it is unchanged; None once changed.
    raw: Optional[bytes] = None
    #: Whether the source's header named the block (else CONTINUE: the last one).
    named: bool = True
    #: Whether it came after the switch to postcopy (then ``final`` too).
    postcopy: bool = False

    @property
    def content(self) -> bytes:
        """The page as the destination will hold it once this record is loaded."""
        if self.kind == FLAG_ZERO:
            return self.payload[:1] * self.page_size
        return self.payload

    def holding(self, content: bytes) -> PageRecord:
        """This record (block, offset) carrying ``content`` instead: a ZERO record if zero."""
        if not any(content):
            return replace(self, kind=FLAG_ZERO, payload=b"\0", raw=None)
        return replace(self, kind=FLAG_PAGE, payload=content, raw=None)


@dataclass
class Change:
    """One page the fault changed, as a test reports it."""

    fault: str
    block: str
    offset: int  #: of the page in its block
    address: int  #: guest physical address of the first byte that differs
    old: bytes  #: the source's bytes from there (up to :data:`SHOWN`)
    new: bytes  #: what the destination gets instead
    at: int  #: stream offset of the source's record of the page
    final: bool  #: in the last RAM section, or after the switch to postcopy
    #: Stream offsets of later records of the page from the source: each one
    #: replaced the change on the destination.
    resent_at: List[int] = field(default_factory=list)
    #: Whether its record came after the switch to postcopy.
    postcopy: bool = False
    #: The guest physical address of the changed page's first byte.
    page_address: Optional[int] = None

    @property
    def survived(self) -> bool:
        """Whether no later copy of the page from the source replaced the change."""
        return not self.resent_at

    def describe(self) -> str:
        where = (
            "the postcopy phase"
            if self.postcopy
            else "the last RAM section"
            if self.final
            else "an earlier RAM section"
        )
        fate = (
            "never sent again"
            if self.survived
            else f"sent again at byte(s) {', '.join(map(str, self.resent_at))}"
        )
        return (
            f"{self.fault}: block '{self.block}' page 0x{self.offset:x}, "
            f"guest 0x{self.address:x}: "
            f"{self.old.hex()} -> {self.new.hex()}, record at stream byte {self.at} in "
            f"{where}; {fate}"
        )


def changed(fault: str, region: PageRange, was: PageRecord, now: bytes) -> Change:
    """The :class:`Change` of ``was``'s page from its content to ``now``."""
    old = was.content
    first = next(i for i, (a, b) in enumerate(zip(old, now)) if a != b)
    return Change(
        fault=fault,
        block=was.block,
        offset=was.offset,
        address=region.address_of(was.offset + first),
        old=old[first : first + SHOWN],
        new=now[first : first + SHOWN],
        at=was.at,
        final=was.final,
        postcopy=was.postcopy,
        page_address=region.address_of(was.offset),
    )


class PageFault(ABC):
    """A fault on the pages of ``region``: strikes once, then watches.

    :param postcopy: strike only after the switch to postcopy.
    :ivar changes: what it changed, once it struck.
    """

    #: What the fault does, in a few words, for reports.
    name: ClassVar[str]

    def __init__(self, region: PageRange, *, postcopy: bool = False) -> None:
        self.region = region
        self.postcopy = postcopy
        self.changes: List[Change] = []
        #: Page records of the region seen, by kind: what was there to strike.
        #: (``final`` counts those after the switch to postcopy too.)
        self.seen: Dict[str, int] = {"final": 0, "earlier": 0, "postcopy": 0}

    def in_phase(self, record: PageRecord) -> bool:
        """Whether ``record`` is sent where the fault may strike: after the switch, if postcopy."""
        return record.postcopy or not self.postcopy

    @property
    def struck(self) -> bool:
        return bool(self.changes)

    def covers(self, block: str, offset: int) -> bool:
        return self.region.covers(block, offset)

    def record(self, record: PageRecord) -> List[PageRecord]:
        """The records to send in place of ``record`` (none while it is held)."""
        self.seen["final" if record.final else "earlier"] += 1
        self.seen["postcopy"] += record.postcopy
        self.resent(record.block, record.offset, record.at)
        return self.strike(record)

    def resent(self, block: str, offset: int, at: int) -> None:
        """The source sent the page at ``offset`` of ``block`` again, at stream byte ``at``."""
        for change in self.changes:
            if change.block == block and change.offset == offset and at > change.at:
                change.resent_at.append(at)

    def release(self) -> List[PageRecord]:
        """Records held back, to be sent now: a section ends or another record comes."""
        return []

    @abstractmethod
    def strike(self, record: PageRecord) -> List[PageRecord]:
        """What to send for ``record`` of the region; ``[record]`` leaves it be."""

    def nothing_to_strike(self) -> Optional[str]:
        """Why the pages seen left this fault nothing to change, if that is why it did not strike.

        ``None``: it saw nothing it could strike, or it struck.
        """
        return None

    def describe(self) -> str:
        after = " after the switch to postcopy" if self.postcopy else ""
        return f"{self.name}{after} in {self.region.describe()}"


class OneByteChanged(PageFault):
    """One byte of one page: the first page sent with data in the last RAM section.

    :param at: the byte of the page to change; by default its middle, which
        the test guest never writes.
    """

    name = "one byte of one page changed"

    def __init__(
        self, region: PageRange, at: Optional[int] = None, *, postcopy: bool = False
    ) -> None:
        super().__init__(region, postcopy=postcopy)
        if at is not None and at < 0:
            raise ConfigError("at", at, "a byte offset within a page, from 0")
        self.at = at

    def strike(self, record: PageRecord) -> List[PageRecord]:
        if self.struck or not record.final or record.kind != FLAG_PAGE:
            return [record]
        if not self.in_phase(record):
            return [record]
        at = record.page_size // 2 if self.at is None else self.at
        if at >= record.page_size:
            raise ConfigError("at", at, f"a byte offset within a page of {record.page_size}")
        page = bytearray(record.payload)
        page[at] ^= 0xFF
        self.changes.append(changed(self.name, self.region, record, bytes(page)))
        return [replace(record, payload=bytes(page), raw=None)]


class TwoPagesSwapped(PageFault):
    """Two pages' contents exchanged, each record keeping its address.

    The two are consecutive records of the last RAM section whose contents
    differ: the first is held until the next one shows whether they do
    (at most one page is ever held).
    """

    name = "two pages swapped"

    def __init__(self, region: PageRange, *, postcopy: bool = False) -> None:
        super().__init__(region, postcopy=postcopy)
        self._held: Optional[PageRecord] = None
        #: Pairs of pages compared, and how many of them were alike.
        self._compared = self._alike = 0

    def strike(self, record: PageRecord) -> List[PageRecord]:
        if self.struck or not record.final or not self.in_phase(record):
            return [*self.release(), record]
        held, self._held = self._held, record
        if held is None:
            return []
        self._compared += 1
        if held.content == record.content:
            self._alike += 1
            return [held]
        self._held = None
        first, second = held.holding(record.content), record.holding(held.content)
        self.changes += [
            changed(self.name, self.region, held, record.content),
            changed(self.name, self.region, record, held.content),
        ]
        return [first, second]

    def release(self) -> List[PageRecord]:
        held, self._held = self._held, None
        return [] if held is None else [held]

    def nothing_to_strike(self) -> Optional[str]:
        # Only pages sent one after the other are compared: a record of
        # another range or a section's end between two lets both go.
        if self.struck or not self._compared or self._alike < self._compared:
            return None
        where = "after the switch to postcopy" if self.postcopy else "in the last RAM section"
        return (
            f"each of the {self._compared} pairs of pages of the range sent one after the other "
            f"{where} was alike: the source's guest stopped between two passes, every counter "
            "equal, and there were no two different pages to swap"
        )


class ZeroPageAsData(PageFault):
    """A page QEMU sends as a zero page arrives as a full page of text instead.

    Meant for pages the guest never writes (sent once, in the first pass):
    the destination gets :data:`ZERO_PAGE_FILLER` where the source has zeros.
    """

    name = "zero page sent as data"

    def strike(self, record: PageRecord) -> List[PageRecord]:
        if self.struck or record.kind != FLAG_ZERO or record.payload != b"\0":
            return [record]
        if not self.in_phase(record):
            return [record]
        size = record.page_size
        filler = (ZERO_PAGE_FILLER * (size // len(ZERO_PAGE_FILLER) + 1))[:size]
        self.changes.append(changed(self.name, self.region, record, filler))
        return [replace(record, kind=FLAG_PAGE, payload=filler, raw=None)]


class StalePageResent(PageFault):
    """A page sent twice in the last RAM section: its right copy, then a stale one.

    The stale copy is what the page held when an earlier pass sent it.
    Which pages the last section sends depends on where the guest was
    between the last two syncs, so ``remember`` pages spread evenly over
    the range are watched before it, a few distinct contents each; the
    first of them that the last section sends with other contents is
    followed by a copy of it as it was.

    :raise ConfigError: ``remember`` is below 1.
    """

    name = "page sent twice, the later copy stale"

    #: Distinct earlier contents kept per page.
    KEPT = 4

    def __init__(self, region: PageRange, remember: int = 256, *, postcopy: bool = False) -> None:
        super().__init__(region, postcopy=postcopy)
        if remember < 1:
            raise ConfigError("remember", remember, "a number of pages of at least 1")
        self.remember = remember
        self._earlier: Dict[Tuple[str, int], List[bytes]] = {}

    def _watched(self, record: PageRecord) -> bool:
        pages = (self.region.end - self.region.start) // record.page_size
        stride = max(1, pages // self.remember)
        return (record.offset - self.region.start) // record.page_size % stride == 0

    def strike(self, record: PageRecord) -> List[PageRecord]:
        if self.struck or not self._watched(record):
            return [record]
        content = record.content
        contents = self._earlier.setdefault((record.block, record.offset), [])
        if not record.final:
            if content not in contents and len(contents) < self.KEPT:
                contents.append(content)
            return [record]
        stale = next((c for c in contents if c != content), None)
        if stale is None or not self.in_phase(record):
            return [record]
        self.changes.append(changed(self.name, self.region, record, stale))
        self._earlier.clear()
        return self.stale_sent(record, stale)

    def stale_sent(self, record: PageRecord, stale: bytes) -> List[PageRecord]:
        """What goes in place of ``record`` once ``stale`` was picked: both, right first."""
        return [record, replace(record.holding(stale), at=-1, named=False)]


class StalePageInstead(StalePageResent):
    """After the switch to postcopy, a page arrives as an earlier pass sent it.

    The stale copy replaces the right one: after the switch the source
    sends a page once (it clears the page's dirty bit as it sends it), so
    a second copy is not what QEMU sends.  The destination ends with the
    copy an earlier pass sent, as it would had the page been missed by the
    switch's discard and never sent again.  Always ``postcopy``.
    """

    name = "page sent after the switch as an earlier pass had it"

    def __init__(self, region: PageRange, remember: int = 256) -> None:
        super().__init__(region, remember, postcopy=True)

    def stale_sent(self, record: PageRecord, stale: bytes) -> List[PageRecord]:
        return [record.holding(stale)]


def require_survived(changes: Sequence[Change]) -> None:
    """Every change must still be on the destination: no later copy replaced it.

    :raise TamperError: the source sent a changed page again; the test's
        premise (a destination that differs) broke, not QEMU.
    """
    for change in changes:
        if not change.survived:
            raise TamperError(f"the change did not survive: {change.describe()}")


def check_failure_names(message: str, changes: Sequence[Change]) -> None:
    """A check's failure must name each changed byte: its address, expected and found value.

    The memory comparison's message lists ``0xADDR: expected 0xOLD, found
    0xNEW`` for the first differing bytes; a failure that names other
    bytes was caused by something else.

    :raise CheckFailure: ``message`` does not name one of the changes.
    """
    if not changes:
        raise CheckFailure("no change to look for in the failure")
    for change in changes:
        named = f"0x{change.address:x}: expected 0x{change.old[0]:02x}, found 0x{change.new[0]:02x}"
        if named not in message:
            raise CheckFailure(
                f"the check failed, but does not name the change ({named!r}: "
                f"{change.describe()}):\n{message}"
            )


#: An address a check's failure names, as :func:`check_failure_names` expects them.
_NAMED_ADDRESS = re.compile(r"\b0x([0-9a-f]+): expected 0x[0-9a-f]{2}, found 0x[0-9a-f]{2}")


def check_failure_points_at(message: str, changes: Sequence[Change], page_size: int) -> None:
    """A check's failure must name a byte of each changed page, or of the page after it.

    For a destination whose guest ran on after the change (postcopy): a
    counter it moved on since no longer shows the values the proxy wrote,
    but the counter check still names where the pattern broke -- at the
    changed page's counter, or at the next page's when the changed one
    passed for the pattern's single step down.

    :raise CheckFailure: ``message`` names no byte of those pages.
    """
    if not changes:
        raise CheckFailure("no change to look for in the failure")
    named = [int(found, 16) for found in _NAMED_ADDRESS.findall(message)]
    for change in changes:
        if change.page_address is None:
            raise CheckFailure(f"the change's page is not known: {change.describe()}")
        start, end = change.page_address, change.page_address + 2 * page_size
        if not any(start <= address < end for address in named):
            raise CheckFailure(
                f"the check failed, but names no byte in [0x{start:x}, 0x{end:x}) "
                f"({change.describe()}):\n{message}"
            )
