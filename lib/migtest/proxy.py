"""Faults in the migration stream: a proxy that damages, cuts, stalls or delays it.

:class:`FaultyChannel` puts a :class:`MigrationProxy` in front of any live
channel (unix, tcp, fd): the source sends to the proxy, and the proxy
reaches the destination the way that channel does.  The proxy runs its own
asyncio loop in a thread, so tests stay synchronous, and listens on
127.0.0.1 only, on a port the kernel picks.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from typing import Any, Callable, Coroutine, List, Optional, Set, Tuple

from .endpoint import Endpoint
from .errors import ConfigError, MigtestError, StateError
from .qapi import Target
from .stream.outcome import tamper_outcome
from .stream.rewriter import StreamRewriter
from .stream.tamper import Change, PageFault
from .transport import Channel
from .wait import wait_for

#: Bytes read at once; also the granularity of corruption.
CHUNK = 64 * 1024

#: Seconds the proxy's own loop may take for a request of ours.
PROXY_TIMEOUT = 10.0

_log = logging.getLogger("migtest.proxy")


class Corruption:
    """Flip one bit every ``every`` bytes of the source's stream, after ``after`` bytes.

    The flipped bit moves within each byte, so both counters and page data
    (and, by chance, stream headers) are hit.

    :raise ConfigError: ``every`` is below 1, or ``after`` below 0.
    """

    def __init__(self, after: int, every: int) -> None:
        # every=0 would flip the same byte forever, in the proxy's loop; a
        # negative offset would index the data from its end.
        if every < 1:
            raise ConfigError("every", every, "a number of bytes of at least 1")
        if after < 0:
            raise ConfigError("after", after, "a number of bytes of at least 0")
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
    """Forward each connection made to 127.0.0.1:<port> to a socket ``dial`` returns.

    :param dial: connects to the destination, once per incoming connection.
    :param corruption: damage to do to the source-to-destination direction.
    :param delay: seconds each chunk from the source is held back.
    :param tamper: a fault on the page data of the source's stream, made by
        a :class:`~migtest.stream.rewriter.StreamRewriter` on each connection.
    """

    def __init__(
        self,
        dial: Callable[[], socket.socket],
        corruption: Optional[Corruption] = None,
        delay: float = 0.0,
        tamper: Optional[PageFault] = None,
    ) -> None:
        self.dial = dial
        self.corruption = corruption
        self.delay = delay
        self.tamper = tamper
        #: One per connection the source made, in order: what each made of its stream.
        self.rewriters: List[StreamRewriter] = []
        #: Bytes passed from source to destination so far.
        self.forwarded = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: Optional[asyncio.AbstractServer] = None
        self._writers: Set[asyncio.StreamWriter] = set()
        self._tasks: List[asyncio.Task[None]] = []
        self._dialing: Optional[asyncio.Lock] = None
        self._flowing = asyncio.Event()
        self._flowing.set()
        #: The count of bytes forwarded at which the source's bytes stop.
        self._stall_at: Optional[int] = None
        #: Set by :meth:`cut`: a cut link stays cut.
        self._cut = False
        #: Connections the proxy has made to the destination so far.
        self.linked = 0

    def start(self) -> Tuple[str, int]:
        """Start listening; return the address the source should connect to."""
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._accept, "127.0.0.1", 0), self._loop
        )
        self._server = future.result(timeout=PROXY_TIMEOUT)
        host, port = self._server.sockets[0].getsockname()[:2]
        _log.debug("proxy listens on 127.0.0.1:%d", port)
        return host, port

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._cut:
            # The source may have connected before the cut, its connection
            # still waiting in the kernel's queue or in asyncio's hands (the
            # source already says postcopy-recover): it goes with the link.
            _log.debug("proxy: a connection taken after the link was cut is dropped")
            writer.transport.abort()
            return
        # Known from the start, so that a cut while the destination is being
        # dialled drops this connection too: the source is connected already.
        self._writers.add(writer)
        upstream: Optional[socket.socket] = None
        if self._dialing is None:  # made in the proxy's loop (Python 3.9 binds it to one)
            self._dialing = asyncio.Lock()
        try:
            # One at a time, in the order the source connected: QEMU before
            # 8.0 takes the first connection for the main channel and the
            # others for multifd's (later versions peek at their magic).
            async with self._dialing:
                upstream = await self._loop.run_in_executor(None, self.dial)
            upstream.setblocking(False)
            up_reader, up_writer = await asyncio.open_connection(sock=upstream)
        except (OSError, MigtestError) as exc:
            _log.debug("proxy cannot reach the destination: %s", exc)
            if upstream is not None:
                upstream.close()
            writer.close()
            return
        if writer.transport.is_closing():  # cut meanwhile: the link is gone
            _log.debug("proxy: the link was cut while the destination was dialled")
            up_writer.transport.abort()
            return
        self._writers.add(up_writer)
        self.linked += 1
        rewriter = None
        if self.tamper is not None:
            rewriter = StreamRewriter(self.tamper)
            self.rewriters.append(rewriter)
        forward = asyncio.ensure_future(
            self._pump(reader, up_writer, from_source=True, rewriter=rewriter)
        )
        backward = asyncio.ensure_future(self._pump(up_reader, writer, from_source=False))
        self._tasks += [forward, backward]

    async def _pump(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        from_source: bool,
        rewriter: Optional[StreamRewriter] = None,
    ) -> None:
        try:
            while data := await reader.read(CHUNK):
                if not from_source:
                    writer.write(data)
                    await writer.drain()
                    continue
                await self._forward(rewriter.feed(data) if rewriter else data, writer)
            if rewriter is not None:  # the source is done: what the rewriter still holds
                await self._forward(rewriter.finish(), writer)
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    async def _forward(self, data: bytes, writer: asyncio.StreamWriter) -> None:
        """Pass the source's ``data`` on, with the proxy's stalls, delays and damage."""
        while data:
            piece, data = await self._next_piece(data)
            if self.delay:
                await asyncio.sleep(self.delay)
            if self.corruption is not None:
                piece = self.corruption.apply(piece, self.forwarded)
            self.forwarded += len(piece)
            writer.write(piece)
            await writer.drain()

    async def _next_piece(self, data: bytes) -> Tuple[bytes, bytes]:
        """Once the source's bytes may flow: what of ``data`` passes now, and the rest."""
        if self._stall_at is not None and self.forwarded >= self._stall_at:
            self._stall_at = None
            self._flowing.clear()
        await self._flowing.wait()
        if self._stall_at is None:
            return data, b""
        cut = max(self._stall_at - self.forwarded, 0)
        return data[:cut], data[cut:]

    def cut(self) -> None:
        """Drop every connection at once, as a broken link would.

        The link stays broken: a connection the proxy takes afterwards is
        dropped too.  The source's status can say it connected before the
        proxy's loop took its connection, and a connection that slipped
        through would hold a destination's handshake open for ever.
        """
        self._call(self._drop())

    def wait_until_linked(self, count: int = 1, timeout: float = PROXY_TIMEOUT) -> None:
        """Wait until ``count`` connections of the source reach the destination.

        The source's status changes once it has connected to the proxy,
        before the proxy has dialled the destination: a fault meant for a
        connection both sides hold must wait for this.
        """
        wait_for(
            lambda: (self.linked >= count, f"{self.linked} linked"),
            what=f"{count} connection(s) through the proxy to the destination",
            timeout=timeout,
        )

    def stall(self, after: int = 0) -> None:
        """Stop passing the source's bytes on, keeping the connections open.

        :param after: bytes still passed first: a handshake that got under
            way (the destination knows what the connection is for) before
            the link stopped carrying anything.
        """
        if after < 0:
            raise ConfigError("after", after, "a number of bytes of at least 0")
        self._call(self._stall(after))

    def resume(self) -> None:
        """Pass the source's bytes on again after :meth:`stall`."""
        self._call(self._resume())

    async def _stall(self, after: int) -> None:
        if after:
            self._stall_at = self.forwarded + after
        else:
            self._flowing.clear()

    async def _resume(self) -> None:
        self._stall_at = None
        self._flowing.set()

    async def _drop(self) -> None:
        self._cut = True
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
            future.result(timeout=PROXY_TIMEOUT)
        except Exception as exc:
            raise MigtestError(f"proxy: {exc!r}") from exc

    def close(self) -> None:
        """Stop listening and drop every connection; idempotent."""
        if not self._thread.is_alive():
            # Never started, or closed already: the loop's own descriptors
            # are released all the same (a no-op the second time).
            self._loop.close()
            return

        async def stop() -> None:
            if self._server is not None:
                self._server.close()
            await self._drop()
            # The thread that ran dial() would outlive the proxy otherwise:
            # loop.close() does not wait for it.
            await self._loop.shutdown_default_executor()

        try:
            self._call(stop())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=PROXY_TIMEOUT)
            if not self._thread.is_alive():
                self._loop.close()


class FaultyChannel(Channel):
    """A live channel with a :class:`MigrationProxy` between the sides.

    The destination listens as ``inner`` has it listen; the source sends to
    the proxy over TCP, and the proxy reaches the destination through
    ``inner`` (:meth:`Channel.dialer`).  Faults: ``corruption``, ``delay``
    and ``tamper`` from the start, a stall after the first ``stalled_after``
    bytes, and :meth:`cut`, :meth:`stall` and :meth:`resume` on demand.

    :raise ConfigError: ``inner`` is not live (a file has no stream to damage).
    """

    name = "faulty"

    def __init__(
        self,
        inner: Channel,
        corruption: Optional[Corruption] = None,
        delay: float = 0.0,
        stalled_after: Optional[int] = None,
        tamper: Optional[PageFault] = None,
    ) -> None:
        if not inner.live:
            raise ConfigError("channel", inner.name, "a live stream (unix, tcp, fd) for a proxy")
        super().__init__(inner.label)
        self.inner = inner
        self.corruption = corruption
        self.delay = delay
        self.stalled_after = stalled_after
        self.tamper = tamper
        self.proxy: Optional[MigrationProxy] = None

    def prepare(self, src: Endpoint, dst: Endpoint) -> None:
        self.inner.prepare(src, dst)

    def listen_target(self, dst: Endpoint) -> Target:
        return self.inner.listen_target(dst)

    def send_target(self, src: Endpoint, dst: Endpoint) -> Target:
        self.proxy = MigrationProxy(
            self.inner.dialer(dst), self.corruption, self.delay, self.tamper
        )
        host, port = self.proxy.start()
        if self.stalled_after is not None:  # before the source knows where to connect
            self.proxy.stall(self.stalled_after)
        return f"tcp:{host}:{port}"

    def _started(self) -> MigrationProxy:
        if self.proxy is None:
            raise StateError("the stream has no fault to take before the migration starts")
        return self.proxy

    def cut(self) -> None:
        """Break the link, as a failing network would."""
        self._started().cut()

    def wait_until_linked(self, count: int = 1) -> None:
        """Wait until ``count`` connections reach the destination through the proxy."""
        self._started().wait_until_linked(count)

    def stall(self, after: int = 0) -> None:
        """Hold the source's bytes back (after ``after`` more), the connection open."""
        self._started().stall(after)

    def resume(self) -> None:
        """Let the stream flow again after :meth:`stall`."""
        self._started().resume()

    def tampered(self) -> List[Change]:
        """What ``tamper`` changed in the stream, once the migration is over.

        :raise Unavailable: the stream could not be rewritten (TLS,
            postcopy...): not applicable, a CANCEL.
        :raise TamperError: the rewriter could not follow a stream it
            should, or the fault found nothing to strike: the test cannot tell.
        """
        if self.tamper is None:
            raise StateError("the channel has no tamper fault")
        return tamper_outcome(self.tamper, [r.report for r in self._started().rewriters])

    def close(self) -> None:
        if self.proxy is not None:
            self.proxy.close()
        self.inner.close()
