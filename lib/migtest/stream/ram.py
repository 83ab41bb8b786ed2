"""The records of the ``ram`` section, read as ram.c's loader reads them.

Each record is a u64: a page-aligned offset with ``RAM_SAVE_FLAG_*`` in
its low bits, then the block name (u8 length + idstr) unless CONTINUE
says "the block of the last record", then what the flag announces: a
whole target page (PAGE), one fill byte (ZERO), an XBZRLE delta (a flag
byte, u16 length, data) or, before QEMU 9.1, a zlib page (u32 length,
data).  MEM_SIZE lists the blocks (name, used length, and a page size or
an address when postcopy or x-ignore-shared add them); EOS ends the
section's data.  The loader refuses any other flag or combination, and so
does this reader.
"""

from __future__ import annotations

import io
from typing import Callable, List, Optional

from .model import (
    ENCODING_FLAG_XBZRLE,
    FLAG_CONTINUE,
    FLAG_EOS,
    FLAG_HOOK,
    FLAG_MEM_SIZE,
    FLAG_MULTIFD_FLUSH,
    FLAG_PAGE,
    FLAG_XBZRLE,
    FLAG_ZERO,
    PAGE_KINDS,
    RamBlock,
    StreamSummary,
)
from .reader import Reader

#: Called with each ZERO or PAGE record's block name, page offset and the
#: page it leaves on the destination, for those who want the contents.
PageSink = Callable[[str, int, bytes], None]

#: What may stand alone in a record's flags, CONTINUE aside.  HOOK (RDMA)
#: never reaches a file; a record carrying it is refused like any stranger.
RECORD_KINDS = (*PAGE_KINDS, FLAG_MEM_SIZE, FLAG_EOS, FLAG_MULTIFD_FLUSH)
FLAG_NAMES = {
    FLAG_HOOK: "HOOK",
    FLAG_CONTINUE: "CONTINUE",
    FLAG_MEM_SIZE: "MEM_SIZE",
    FLAG_EOS: "EOS",
    FLAG_MULTIFD_FLUSH: "MULTIFD_FLUSH",
    0x01: "FULL",
    **{k: v.upper() for k, v in PAGE_KINDS.items()},
}


def flag_names(flags: int) -> str:
    """``0x28`` as ``0x28 (PAGE|CONTINUE)``, for messages."""
    names = [name for bit, name in sorted(FLAG_NAMES.items()) if flags & bit]
    unknown = flags & ~sum(FLAG_NAMES)
    return f"0x{flags:x} ({'|'.join(names + ([f'0x{unknown:x}?'] if unknown else [])) or 'none'})"


def page_size_follows(data: bytes) -> bool:
    """Whether the 8 bytes after a RAM block's length are its page size.

    Postcopy adds a block's page size to the block list only where it is
    not the host's (``ram_save_setup()``): a power of two from 1 KiB, which
    neither the next block's name (its length byte is not 0) nor a record
    header (it has flags in its low bits) can be.
    """
    value = int.from_bytes(data, "big")
    return len(data) == 8 and value >= 1024 and value & (value - 1) == 0


class RamReader:
    """Reads ``ram`` sections into a summary, keeping the block CONTINUE means.

    :param capabilities: the capabilities the configuration section names
        (x-ignore-shared adds an address to each block; mapped-ram is not
        read); the parser's own list, filled before the first ``ram``.
    :param pages: given each ZERO and PAGE record's page, if not None.
    """

    def __init__(
        self,
        reader: Reader,
        summary: StreamSummary,
        capabilities: List[str],
        pages: Optional[PageSink] = None,
    ) -> None:
        self.r, self.s, self.capabilities = reader, summary, capabilities
        self.pages = pages
        self.block: Optional[RamBlock] = None

    def read(self) -> None:
        """Read records up to and including EOS."""
        r, s = self.r, self.s
        context = r.where
        while True:
            start = r.pos
            header = r.uint(8, "a RAM record header")
            flags, addr = header & (s.page_size - 1), header & ~(s.page_size - 1)
            kind = flags & ~FLAG_CONTINUE
            if kind not in RECORD_KINDS or (flags & FLAG_CONTINUE and kind not in PAGE_KINDS):
                raise r.fail(
                    "RAM flags: one of ZERO, PAGE, XBZRLE (each maybe with CONTINUE), "
                    "MEM_SIZE, EOS, MULTIFD_FLUSH",
                    flag_names(flags),
                    start,
                )
            if kind == FLAG_EOS:
                return
            if kind == FLAG_MEM_SIZE:
                self._blocks(addr)
            elif kind in PAGE_KINDS:
                block = self._block_of(flags, start)
                r.where = f"{context}, {PAGE_KINDS[kind]} page of block '{block.name}'"
                if addr >= block.used_length:
                    raise r.fail(
                        f"an offset below the block's {block.used_length}", hex(addr), start
                    )
                self._page(kind, block.name, addr)
                s.pages[PAGE_KINDS[kind]] += 1
                s.pages_by_block[block.name] += 1
                r.where = context

    def _blocks(self, total: int) -> None:
        r = self.r
        if "mapped-ram" in self.capabilities:
            raise r.fail("RAM in sequence", "a mapped-ram file, which this reader does not read")
        postcopy = any(name == "POSTCOPY_ADVISE" for _, name in self.s.commands)
        context, seen = r.where, 0
        while seen < total:
            r.where = f"{context}, the RAM block list after {seen} of {total} bytes"
            block = RamBlock(r.name("a RAM block name"), r.uint(8, "the block's used length"))
            if postcopy and self._page_size_follows():
                block.page_size = r.uint(8, "the block's page size")
            if "x-ignore-shared" in self.capabilities:
                block.addr = r.uint(8, "the block's address")
            self.s.ram_blocks.append(block)
            seen += block.used_length
        if seen != total:
            raise r.fail(f"RAM blocks adding up to MEM_SIZE's {total} bytes", f"{seen} bytes")
        r.where = context

    def _page_size_follows(self) -> bool:
        data = self.r.file.read(8)
        self.r.file.seek(-len(data), io.SEEK_CUR)
        return page_size_follows(data)

    def _block_of(self, flags: int, start: int) -> RamBlock:
        r = self.r
        if flags & FLAG_CONTINUE:
            if self.block is None:
                raise r.fail("a block name: no record named one yet", "CONTINUE", start)
            return self.block
        name = r.name("the page's block name")
        for block in self.s.ram_blocks:
            if block.name == name:
                self.block = block
                return block
        raise r.fail("a block MEM_SIZE listed", repr(name), start + 8)

    def _page(self, kind: int, block: str, addr: int) -> None:
        r, size = self.r, self.s.page_size
        if kind == FLAG_ZERO and self.pages is not None:
            self.pages(block, addr, r.take(1, "the zero page's fill byte") * size)
        elif kind == FLAG_ZERO:
            r.skip(1, "the zero page's fill byte")
        elif kind == FLAG_PAGE and self.pages is not None:
            self.pages(block, addr, r.take(size, "the page's data"))
        elif kind == FLAG_PAGE:
            r.skip(size, "the page's data")
        elif kind == FLAG_XBZRLE:
            encoding = r.uint(1, "the XBZRLE encoding flag")
            if encoding != ENCODING_FLAG_XBZRLE:
                raise r.fail("the XBZRLE encoding flag 0x01", f"0x{encoding:02x}", r.pos - 1)
            length = r.uint(2, "the XBZRLE length")
            if length > size:
                raise r.fail(f"an XBZRLE length up to the page size {size}", str(length), r.pos - 2)
            r.skip(length, "the XBZRLE data")
        else:
            r.skip(r.uint(4, "the compressed page's length"), "the compressed page")
