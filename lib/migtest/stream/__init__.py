"""A reader of QEMU's migration stream, to prove a saved stream well formed.

A stream written by ``exec:`` or ``file:`` is checked from its magic to its
EOF marker: every section header, every RAM record, every section footer.
Written from the format as QEMU documents and implements it
(docs/devel/migration/main.rst, migration/savevm.c, ram.c, vmstate.c), for
QEMU 7.2 to 11.x.  The layout, all integers big-endian::

    "QEVM" u32:3                       magic and version
    0x07 u32:len name [subsections]    configuration: the machine type
    0x01|0x04 u32:id u8:len idstr u32:instance u32:version <data> [footer]
    0x02|0x03 u32:id <data> [footer]   later parts of an iterable section
    0x08 u16:cmd u16:len <len bytes>   a command (postcopy, return path)
    0x00                               EOF
    0x06 u32:len <JSON>                vmdesc: the device state, described
    footer: 0x7e u32:id                (send-section-footer, on by default)

The ``ram`` section is read record by record (:mod:`.ram`); device
sections are crossed by the sizes the vmdesc gives, or by finding their
footer (:mod:`.parser`).  Not read, with a :class:`StreamError` saying
so: mapped-ram files, RDMA, version-2 streams.

:func:`check_stream` is the verdict for tests, :func:`describe_stream`
the text for failure messages, ``migtest-stream FILE`` the command.
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path
from typing import BinaryIO, Optional, Sequence, Union, cast

from .model import RamBlock, Section, StreamError, StreamSummary
from .parser import Parser
from .ram import PageSink
from .reader import StreamAt, open_stream

__all__ = [
    "PageSink",
    "RamBlock",
    "Section",
    "StreamError",
    "StreamSummary",
    "check_stream",
    "describe_stream",
    "main",
    "read_stream",
]


def read_stream(
    source: Union[str, Path, BinaryIO],
    use_vmdesc: bool = True,
    offset: int = 0,
    pages: Optional[PageSink] = None,
) -> StreamSummary:
    """Read a whole migration stream and say what it holds.

    :param source: a file name (gzip'ed or not), or a seekable binary file.
    :param use_vmdesc: cross device sections by the vmdesc's sizes; with
        False, by their footers only (the self-tests compare both).
    :param offset: where in the file the stream starts (``file:``'s
        ``offset=``); byte numbers in messages count from there.
    :param pages: called with each ZERO and PAGE record's block name, page
        offset and page, in stream order (a later copy of a page replaces
        an earlier one on the destination).
    :raise StreamError: the stream is truncated, corrupted, or of a kind
        this reader does not know; the message names the byte.
    :raise OSError: the file cannot be read.
    """
    file = open_stream(source) if isinstance(source, (str, Path)) else source
    try:
        stream = file if offset == 0 else cast(BinaryIO, io.BufferedReader(StreamAt(file, offset)))
        size = stream.seek(0, io.SEEK_END)
        stream.seek(0)
        return Parser(stream, size, use_vmdesc, pages).run()
    finally:
        if file is not source:
            file.close()


def check_stream(path: Union[str, Path]) -> StreamSummary:
    """Require a stream file QEMU wrote to be whole and well formed.

    :raise StreamError: (a :class:`~migtest.errors.CheckFailure`) it is not.
    """
    return read_stream(path)


def describe_stream(path: Union[str, Path], brief: bool = False) -> str:
    """The summary of a stream file, or why it cannot be read: for failure messages.

    Never raises: a message about a failed migration must not fail itself.

    :param brief: one line (machine, size, EOF, RAM records) instead of
        one per RAM block and device.
    """
    try:
        summary = read_stream(path)
    except (StreamError, OSError) as exc:
        return f"{path}: {exc}"
    except Exception as exc:  # noqa: BLE001 - a reader's bug must not hide the failure
        return f"{path}: unreadable by migtest.stream ({type(exc).__name__}: {exc})"
    if not brief:
        return summary.describe()
    records = ", ".join(f"{n} {kind}" for kind, n in summary.pages.items()) or "none"
    return (
        f"{path}: machine {summary.machine_type}, {summary.size} bytes, "
        f"{len(summary.sections)} sections, RAM records: {records}, ended with EOF"
    )


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Command line: ``migtest-stream FILE...``; exit status 1 if one is malformed."""
    parser = argparse.ArgumentParser(
        prog="migtest-stream",
        description="Check QEMU migration streams saved by exec: or file: (gzip'ed or "
        "not) and print their machine type, RAM blocks, pages and sections.",
    )
    parser.add_argument("files", nargs="+", type=Path, help="a saved migration stream")
    args = parser.parse_args(argv)
    status = 0
    for path in args.files:
        try:
            print(f"{path}:\n{read_stream(path).describe()}")
        except (StreamError, OSError) as exc:
            print(f"{path}: {exc}", file=sys.stderr)
            status = 1
    return status
