"""A synchronous facade over the asynchronous ``qemu.qmp`` client.

This is the only module that touches ``qemu.qmp`` or asyncio: the rest of the
suite, and every test, is plain synchronous code.  Every call takes a
timeout, because ``QMPClient`` itself has none and a hung QEMU must not hang
the suite.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from qemu.qmp import ConnectError, ExecInterruptedError, ExecuteError, QMPClient
from qemu.qmp import QMPError as _ClientError

from .errors import QMPConnectionLost, QMPError, WaitTimeout
from .wait import bounded

Message = Dict[str, Any]

#: The QMP trace: every command and answer of a QEMU called NAME is logged
#: at DEBUG to ``migtest.qmp.NAME`` (a migration test keeps it in
#: :data:`migtest.artifacts.TRACE_FILE`).
TRACE_LOGGER = "migtest.qmp"
#: How the trace starts a command's record: ``-> query-status {}``, the
#: command's name up to the first space, then its arguments.
#: ``scripts/bench`` reads these records to time each round trip...
COMMAND_PREFIX = "-> "
#: ...up to the record of its answer: ``<- {'status': 'running', ...}``.  A
#: command QEMU answered with an error gets none.
ANSWER_PREFIX = "<- "

# Every command and answer is logged once, by QMPConnection, in one record
# each.  qemu.qmp's own debug log says it all again, pretty-printed over many
# lines: that tripled the trace every test keeps, and the time Avocado takes
# to relay it.  Its warnings and errors still show.
logging.getLogger("qemu.qmp").setLevel(logging.INFO)

_loop: Optional[asyncio.AbstractEventLoop] = None


def _run(coro: Any, timeout: float, what: str) -> Any:
    """Run ``coro`` on the private event loop shared by every connection.

    One thread at a time: Avocado runs a test and its tearDown in different
    threads, one after the other.  (After a test timed out, its thread may
    still be here; then tearDown gets a RuntimeError and kills QEMU instead.)
    """
    global _loop
    if _loop is None or _loop.is_closed():
        _loop = asyncio.new_event_loop()
    timeout, cut_short = bounded(timeout)
    try:
        return _loop.run_until_complete(asyncio.wait_for(coro, timeout))
    except asyncio.TimeoutError:
        raise WaitTimeout(what, timeout, "no answer from QEMU", cut_short) from None


async def _new_client(name: str) -> QMPClient:
    # Made on our loop: on Python 3.9 the client's event queue binds to the
    # loop that is current when it is created.
    return QMPClient(name)


class QMPConnection:
    """One QMP session over an already connected socket.

    :param sock: our end of a socket pair whose other end QEMU was given.
    :param name: a short name for logs and errors (``src``, ``dst``).
    """

    def __init__(self, sock: socket.socket, name: str) -> None:
        self._sock = sock
        self.name = name
        self._client: QMPClient = _run(_new_client(name), 10.0, "a QMP client")
        self._log = logging.getLogger(f"{TRACE_LOGGER}.{name}")

    def connect(self, timeout: float) -> None:
        """Read QEMU's greeting and negotiate capabilities.

        :raise QMPConnectionLost: QEMU closed the socket (usually: it exited).
        :raise WaitTimeout: no greeting within ``timeout`` seconds.
        """
        try:
            _run(self._client.connect(self._sock), timeout, f"the QMP greeting of {self.name}")
        except ConnectError as exc:
            raise QMPConnectionLost(f"{self.name}: QMP connection failed: {exc}") from exc

    def execute(
        self, command: str, arguments: Optional[Mapping[str, object]], timeout: float
    ) -> Any:
        """Run ``command`` and return its result.

        :raise QMPError: QEMU answered with an error.
        :raise QMPConnectionLost: the connection broke before the answer.
        :raise WaitTimeout: no answer within ``timeout`` seconds.
        """
        what = f"the answer of {self.name} to '{command}'"
        return _run(self.execute_async(command, arguments), timeout, what)

    async def execute_async(self, command: str, arguments: Optional[Mapping[str, object]]) -> Any:
        """:meth:`execute` as a coroutine, for :func:`execute_together`."""
        self._log.debug(COMMAND_PREFIX + "%s %s", command, dict(arguments or {}))
        try:
            result = await self._client.execute(command, arguments)
        except ExecuteError as exc:
            raise QMPError(self.name, command, exc.error_class, str(exc)) from exc
        except (ExecInterruptedError, EOFError, OSError, _ClientError) as exc:
            raise QMPConnectionLost(
                f"{self.name}: connection lost during '{command}': {exc!r}"
            ) from exc
        self._log.debug(ANSWER_PREFIX + "%s", result)
        return result

    def send_fd(self, fd: int) -> None:
        """Pass ``fd`` to QEMU with SCM_RIGHTS, for a following ``getfd``."""
        try:
            self._client.send_fd_scm(fd)
        except (_ClientError, OSError) as exc:
            raise QMPConnectionLost(f"{self.name}: cannot send a file descriptor: {exc}") from exc

    def next_event(self, timeout: float) -> Optional[Message]:
        """Return the next event, or ``None`` if none comes within ``timeout``.

        With ``timeout`` 0, returns an event QEMU has already sent, if any.
        """
        listener = self._client.events
        if listener.empty():
            # One turn of the loop lets the reader take in what QEMU sent.
            _run(asyncio.sleep(0), 1.0, "the event loop")
        if listener.empty() and timeout <= 0:
            return None
        try:
            # asyncio.wait_for gives up at once with a timeout of 0, even
            # for a ready queue: allow a moment when an event is waiting.
            wait = timeout if listener.empty() else max(timeout, 1.0)
            return dict(_run(listener.get(), wait, "an event"))
        except WaitTimeout:
            return None

    def close(self) -> None:
        """Disconnect.  Safe to call twice, and after QEMU has gone."""
        try:
            _run(self._client.disconnect(), 5.0, f"{self.name} to disconnect")
        except (EOFError, OSError, _ClientError, WaitTimeout, RuntimeError) as exc:
            # A QEMU that exited (after 'quit', or killed) leaves the reader
            # with EOF: expected, and nothing is left to clean up.  A loop
            # still busy in a timed-out test's thread: the socket closes below.
            self._log.debug("disconnect: %r", exc)
        finally:
            self._sock.close()


def execute_together(
    calls: Sequence[Tuple[QMPConnection, str, Optional[Mapping[str, object]]]], timeout: float
) -> List[Any]:
    """Run one command on each of several QEMUs at the same time.

    For slow commands on both sides of a migration (dumping RAM), which
    then take as long as one, each QEMU working on its own core.

    :return: the results, in the order of ``calls``.
    :raise QMPError: the first error, once every command has finished.
    """

    async def together() -> List[Any]:
        coros = [connection.execute_async(command, args) for connection, command, args in calls]
        results = await asyncio.gather(*coros, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return list(results)

    names = ", ".join(f"{connection.name} '{command}'" for connection, command, _ in calls)
    results: List[Any] = _run(together(), timeout, f"the answers to {names}")
    return results
