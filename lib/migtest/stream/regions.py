"""Where guest memory is in a migration stream: RAM block and offset.

A stream addresses pages by RAM block and offset in the block; tests and
their checks by guest physical address.  QEMU's flat memory map (HMP
``info mtree -f``) says which block backs an address, and at which
offset: each line of it is ``START-END (prio N, ram): NAME [@OFFSET]``,
where NAME is the memory region, whose RAM block has the same name (the
block of a machine's main RAM is its memory region's, an alias showing
the offset into it).  Asking QEMU keeps the arch profiles free of
block names and bases (``pc.ram`` at 0, ``mach-virt.ram`` at 1 GiB...).
"""

from __future__ import annotations

import re
from typing import Tuple

from ..arch import ArchProfile
from ..errors import MigtestError
from .tamper import PageRange

_RAM_LINE = re.compile(
    r"^\s*(?P<start>[0-9a-f]+)-(?P<end>[0-9a-f]+) \(prio -?\d+, ram\): "
    r"(?P<name>\S+)(?: @(?P<at>[0-9a-f]+))?",
    re.MULTILINE,
)


class NoRamThere(MigtestError):
    """QEMU's memory map has no RAM block holding a range of guest memory."""


def page_range(mtree: str, start: int, end: int) -> PageRange:
    """The RAM block and offsets that hold guest physical ``[start, end)``.

    :param mtree: the output of HMP ``info mtree -f``.
    :raise NoRamThere: no RAM region of the map holds the whole range.
    """
    for line in _RAM_LINE.finditer(mtree):
        first, last = int(line["start"], 16), int(line["end"], 16)
        if first <= start and end - 1 <= last:
            offset = start - first + int(line["at"] or "0", 16)
            return PageRange(line["name"], offset, offset + end - start, start)
    raise NoRamThere(
        f"no RAM region of QEMU's memory map holds [0x{start:x}, 0x{end:x}) "
        "(HMP 'info mtree -f' lists none)"
    )


def counter_pages(profile: ArchProfile) -> Tuple[int, int]:
    """Guest physical addresses of the pages the guest counts in: its test range."""
    return profile.test_range


def untouched_pages(profile: ArchProfile) -> Tuple[int, int]:
    """Pages of compared RAM the guest never writes: from its test range's end up.

    The part of the RAM range holding the test range that lies above it:
    the suite compares it byte for byte, and the guest contract keeps the
    guest out of it (QEMU may have loaded something there -- aarch64's
    device tree, s390x's firmware -- which is not zero, and so not sent
    as a zero page).

    :raise NoRamThere: the profile compares no RAM above its test range.
    """
    start, end = profile.test_range
    for first, last in profile.ram_ranges:
        if first <= start and end < last:
            return end, last
    raise NoRamThere(
        f"{profile.name}: no compared RAM above the test range [0x{start:x}, 0x{end:x})"
    )
