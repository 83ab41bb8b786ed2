"""A TCP proxy for the migration stream, that can damage or cut it.

Fault-injection tests put it between source and destination.  It runs its
own asyncio loop in a thread, so tests stay synchronous, and it listens on
127.0.0.1 only, on a port the kernel picks.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any, Coroutine, List, Optional, Set, Tuple

from .errors import MigtestError

#: Bytes read at once; also the granularity of corruption.
CHUNK = 64 * 1024

_log = logging.getLogger("migtest.proxy")


class Corruption:
    """Flip one bit every ``every`` bytes of the source's stream, after ``after`` bytes.

    The flipped bit moves within each byte, so both counters and page data
    (and, by chance, stream headers) are hit.
    """

    def __init__(self, after: int, every: int) -> None:
        self.after = after
        self.every = every
        #: How many bits were flipped so far.
        self.flipped = 0
        self._next = after

    def apply(self, data: bytes, offset: int) -> bytes:
        """Damage ``data``, which starts ``offset`` bytes into the stream."""
        end = offset + len(data)
        if self._next >= end:
            return data
        damaged = bytearray(data)
        while self._next < end:
            damaged[self._next - offset] ^= 1 << (self.flipped % 8)
            self.flipped += 1
            self._next += self.every
        return bytes(damaged)


class MigrationProxy:
    """Forward connections from 127.0.0.1:<port> to ``target``.

    :param target: ``(host, port)`` the destination listens on.
    :param corruption: damage to do to the source-to-destination direction.
    """

    def __init__(self, target: Tuple[str, int], corruption: Optional[Corruption] = None) -> None:
        self.target = target
        self.corruption = corruption
        #: Bytes passed from source to destination so far.
        self.forwarded = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: Optional[asyncio.AbstractServer] = None
        self._writers: Set[asyncio.StreamWriter] = set()
        self._tasks: List[asyncio.Task[None]] = []

    def start(self) -> Tuple[str, int]:
        """Start listening; return the address the source should connect to."""
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._accept, "127.0.0.1", 0), self._loop
        )
        self._server = future.result(timeout=10)
        host, port = self._server.sockets[0].getsockname()[:2]
        _log.debug("proxy 127.0.0.1:%d -> %s:%d", port, *self.target)
        return host, port

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError as exc:
            _log.debug("proxy cannot reach %s: %s", self.target, exc)
            writer.close()
            return
        self._writers.update((writer, up_writer))
        forward = asyncio.ensure_future(self._pump(reader, up_writer, damage=True))
        backward = asyncio.ensure_future(self._pump(up_reader, writer, damage=False))
        self._tasks += [forward, backward]

    async def _pump(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, damage: bool
    ) -> None:
        try:
            while data := await reader.read(CHUNK):
                if damage:
                    if self.corruption is not None:
                        data = self.corruption.apply(data, self.forwarded)
                    self.forwarded += len(data)
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    def cut(self) -> None:
        """Drop every connection at once, as a broken link would."""

        self._call(self._drop())

    async def _drop(self) -> None:
        for writer in self._writers:
            if not writer.transport.is_closing():
                writer.transport.abort()
        for task in self._tasks:
            task.cancel()

    def _call(self, coro: Coroutine[Any, Any, None]) -> None:
        if not self._thread.is_alive():
            coro.close()
            return
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            future.result(timeout=10)
        except Exception as exc:
            raise MigtestError(f"proxy: {exc!r}") from exc

    def close(self) -> None:
        """Stop listening and drop every connection; idempotent."""
        if not self._thread.is_alive():
            return

        async def stop() -> None:
            if self._server is not None:
                self._server.close()
            await self._drop()

        try:
            self._call(stop())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
            if not self._thread.is_alive():
                self._loop.close()
