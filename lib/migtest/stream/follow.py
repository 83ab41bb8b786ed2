"""Parsing a stream as its bytes arrive, with the power to rewrite what passes.

A proxy gets a migration stream in pieces of any size, and must pass each
byte on as soon as it knows what it is: holding bytes back could stall a
migration.  :class:`Follower` lets a parser be written as if the whole
stream were there -- a generator that asks for the bytes it needs
(:class:`Take`, :class:`Peek`) -- while :meth:`Follower.feed` is called
with whatever the socket gave.

Every byte of the source passes unchanged unless the parser says
otherwise: bytes it took are emitted by :meth:`Follower.commit`, or
replaced by :meth:`Follower.replace`; whatever is left when the parser
stops, fails or the stream ends passes as it came.  So a parser that
misreads loses nothing, and the identity is the default.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Generator, List, NamedTuple, Optional, Union


class Take(NamedTuple):
    """Read ``n`` bytes (the parser gets them; they are not yet passed on)."""

    n: int


class Peek(NamedTuple):
    """See the next ``n`` bytes without reading them; fewer only where the stream ended."""

    n: int


class Skip(NamedTuple):
    """Pass ``n`` bytes on unchanged, as they arrive, unseen by the parser."""

    n: int


class SkipTo(NamedTuple):
    """Pass bytes on unchanged up to the next ``pattern`` (which stays unread)."""

    pattern: bytes


Request = Union[Take, Peek, Skip, SkipTo]
#: A parser: a generator of requests, sent the bytes of each (``b""`` for skips).
Parse = Generator[Request, bytes, None]


class Misread(Exception):
    """The parser met bytes it cannot follow; the rest of the stream passes unchanged."""


class StreamEnded(Exception):
    """Thrown into the parser where the stream ended before what it asked for."""


class Follower(ABC):
    """Runs :meth:`parse` over bytes fed in pieces; see the module's docstring.

    :ivar done: why the parser stopped (``None`` while it follows): from
        then on every byte passes unchanged.
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self._base = 0  # the stream offset of _buf[0]
        self._pos = 0  # the parser's position in _buf
        self._mark = 0  # the first byte of _buf not yet passed on or replaced
        self._sent = 0  # the first byte of _buf not yet in _out (_sent <= _mark)
        self._out: List[bytes] = []
        self._parser: Optional[Parse] = None
        self._request: Optional[Request] = None
        self.done: Optional[str] = None

    @abstractmethod
    def parse(self) -> Parse:
        """The parser; its return ends the following (the rest passes unchanged)."""

    @property
    def offset(self) -> int:
        """The stream offset of the next byte the parser reads."""
        return self._base + self._pos

    def commit(self) -> None:
        """Pass on, unchanged, the bytes read since the last commit or replace."""
        self._mark = self._pos

    def replace(self, data: bytes) -> None:
        """Pass on ``data`` instead of the bytes read since the last commit or replace."""
        self.insert(data)
        self._mark = self._sent = self._pos

    def insert(self, data: bytes) -> None:
        """Pass on ``data`` now, before the bytes read but not yet committed."""
        self._flush()
        if data:
            self._out.append(data)

    def _flush(self) -> None:
        """Put the committed bytes into the output: one slice for many commits."""
        if self._mark > self._sent:
            self._out.append(bytes(self._buf[self._sent : self._mark]))
        self._sent = self._mark

    def feed(self, data: bytes) -> bytes:
        """Take the next piece of the stream; return what may be passed on now."""
        self._buf += data
        self._run(at_end=False)
        return self._drain()

    def finish(self) -> bytes:
        """The stream ended: return everything still held, the parser's last word first."""
        self._run(at_end=True)
        if self._parser is not None and self.done is None:
            self._stop(self._ended())
        self._pos = len(self._buf)
        self.commit()
        return self._drain()

    def _ended(self) -> str:
        """What ``done`` says when the stream ended while the parser still followed."""
        try:
            assert self._parser is not None
            self._parser.throw(StreamEnded())
        except (StopIteration, Misread, StreamEnded) as exc:
            return str(exc) or "the stream ended"
        return "the stream ended"

    def _stop(self, why: str) -> None:
        if self._parser is not None:
            self._parser.close()
        self._parser, self._request, self.done = None, None, why

    def _drain(self) -> bytes:
        self._flush()
        if self._mark:
            del self._buf[: self._mark]
            self._base += self._mark
            self._pos -= self._mark
            self._mark = self._sent = 0
        out, self._out = b"".join(self._out), []
        return out

    def _answer(self, at_end: bool) -> Optional[bytes]:
        """The answer to the pending request, or None until more bytes come."""
        request, buf, pos = self._request, self._buf, self._pos
        available = len(buf) - pos
        if isinstance(request, Take):
            if available < request.n:
                return None
            self._pos += request.n
            return bytes(buf[pos : self._pos])
        if isinstance(request, Peek):
            if available < request.n and not at_end:
                return None
            return bytes(buf[pos : pos + request.n])
        if isinstance(request, Skip):
            step = min(request.n, available)
            self._pos += step
            self.commit()
            if step < request.n:
                self._request = Skip(request.n - step)
                return None
            return b""
        assert isinstance(request, SkipTo)
        found = buf.find(request.pattern, pos)
        if found < 0:
            # Keep what could be the pattern's start, unless nothing more comes.
            self._pos = len(buf) if at_end else max(pos, len(buf) - len(request.pattern) + 1)
            self.commit()
            return None
        self._pos = found
        self.commit()
        return b""

    def _run(self, at_end: bool) -> None:
        if self.done is not None:
            self._pos = len(self._buf)
            self.commit()
            return
        if self._parser is None:
            self._parser = self.parse()
            answer: Optional[bytes] = None
        else:
            answer = self._answer(at_end)
            if answer is None:
                return
        while True:
            try:
                self._request = next(self._parser) if answer is None else self._parser.send(answer)
            except StopIteration:
                self._stop("followed to its end")
                return self._run(at_end)
            except (Misread, StreamEnded) as exc:
                self._stop(str(exc))
                return self._run(at_end)
            answer = self._answer(at_end)
            if answer is None:
                return
