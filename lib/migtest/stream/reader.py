"""Bounded reads of a stream file, and the vmdesc at its end."""

from __future__ import annotations

import gzip
import io
import json
from pathlib import Path
from typing import Any, BinaryIO, Dict, Optional, Tuple, Union

from .model import VMDESC, VMDESC_WINDOW, StreamError


class Reader:
    """Bounded big-endian reads that name the place of any shortfall."""

    def __init__(self, file: BinaryIO, size: int) -> None:
        self.file, self.size, self.pos = file, size, 0
        self.where = "the file header"

    def fail(self, expected: str, found: str, offset: Optional[int] = None) -> StreamError:
        return StreamError(self.pos if offset is None else offset, self.where, expected, found)

    def short(self, expected: str) -> StreamError:
        """The file ends before ``expected``, which would start at the current byte."""
        return StreamError(self.pos, self.where, expected, "end of file", truncated_at=self.size)

    def take(self, n: int, what: str) -> bytes:
        data = self.file.read(n) if n else b""
        if len(data) < n:
            raise self.short(f"{what} ({n} bytes)")
        self.pos += n
        return data

    def skip(self, n: int, what: str) -> None:
        if self.pos + n > self.size:
            raise self.short(f"{what} ({n} bytes)")
        self.file.seek(n, io.SEEK_CUR)
        self.pos += n

    def peek(self) -> Optional[int]:
        byte = self.file.read(1)
        if byte:
            self.file.seek(-1, io.SEEK_CUR)
        return byte[0] if byte else None

    def uint(self, width: int, what: str) -> int:
        return int.from_bytes(self.take(width, what), "big")

    def name(self, what: str) -> str:
        """A u8 length and that many bytes of printable ASCII (an idstr)."""
        start = self.pos
        raw = self.take(self.uint(1, f"{what} length"), what)
        if not raw or not all(0x20 <= b < 0x7F for b in raw):
            raise self.fail(f"{what}: 1-255 printable characters", repr(raw), start)
        return raw.decode()


def open_stream(path: Union[str, Path]) -> BinaryIO:
    """The file, decompressed first when gzip'ed (the committed fixtures)."""
    file = open(path, "rb")
    if file.read(2) == b"\x1f\x8b":
        file.close()
        with gzip.open(path, "rb") as packed:
            return io.BytesIO(packed.read())
    file.seek(0)
    return file


class StreamAt(io.RawIOBase):
    """A file seen from byte ``start`` on: a stream saved at an offset.

    ``file:...,offset=N`` leaves the file's first N bytes alone and writes
    the stream after them; this view numbers the stream's bytes from 0, as
    the reader expects, so offsets in messages count from the stream.
    """

    def __init__(self, file: BinaryIO, start: int) -> None:
        super().__init__()
        self._file = file
        self._start = start
        file.seek(start)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._file.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def seek(self, position: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_SET:
            position += self._start
        return self._file.seek(position, whence) - self._start

    def tell(self) -> int:
        return self._file.tell() - self._start


def find_vmdesc(file: BinaryIO, size: int) -> Optional[Tuple[int, Dict[str, Any]]]:
    """The vmdesc at the end of the file, or None.

    JSON holds no byte 0x06, so the last one in the file is the vmdesc's
    marker if there is one; its length must reach exactly the end.
    """
    start = max(0, size - VMDESC_WINDOW)
    file.seek(start)
    tail = file.read()
    at = tail.rfind(bytes([VMDESC]))
    if (
        at < 0
        or at + 5 > len(tail)
        or int.from_bytes(tail[at + 1 : at + 5], "big") != len(tail) - at - 5
    ):
        return None
    try:
        desc = json.loads(tail[at + 5 :])
    except ValueError:
        return None
    return (start + at, desc) if isinstance(desc, dict) else None


def vmsd_size(desc: Dict[str, Any]) -> int:
    """The bytes a VMState description's fields and subsections take.

    QEMU writes each field's ``size`` for one element, and ``array_len``
    when there are several; each subsection adds its marker, name and version.
    """
    total = sum(int(f.get("size", 0)) * int(f.get("array_len", 1)) for f in desc.get("fields", []))
    for sub in desc.get("subsections", []):
        total += 1 + 1 + len(str(sub.get("vmsd_name", ""))) + 4 + vmsd_size(sub)
    return total
