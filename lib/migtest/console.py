"""The guest's serial console as it arrives, each byte with the moment QEMU wrote it.

Why the moments: the guest prints ``B`` after every pass over its range
(guests/README), so the gaps between B's are the guest's own account
of when it ran, and the longest one around a switchover is the pause it
felt (:func:`migtest.metrics.felt_downtime`).

How they are taken: QEMU writes the console into one end of a unix
``SOCK_SEQPACKET`` pair (``-chardev socket,fd=N``), and keeps the console
file as its ``logfile``, as before.  The kernel stamps each record with the
wall clock when QEMU sends it (``SO_TIMESTAMPNS``: unix stream sockets and
TCP give no per-write stamp, packet sockets do), so a reader that is late
loses no precision: this one reads every :data:`READ_INTERVAL`.  QEMU's
serial devices write each byte when the guest stores it into the data
register, from the vCPU's own thread, so a stamp is when the guest printed,
to a few microseconds.  The clock is the one QMP event timestamps use
(``CLOCK_REALTIME``).
"""

from __future__ import annotations

import array
import logging
import socket
import struct
import threading
import time
from typing import List, Optional, Tuple

#: ``SO_TIMESTAMPNS`` (Linux): Python 3.11's socket module lacks the name.
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
#: Seconds between two reads.  Stamps are the kernel's, so reading late
#: costs nothing but buffer space: QEMU's end holds :data:`SEND_BUFFER`
#: (measured: 2,731 one-byte records; the fastest guest prints about 500
#: bytes a second, x86_64 under TCG).
READ_INTERVAL = 0.05
#: Bytes asked for QEMU's end before a write would wait (the kernel doubles
#: it, and caps it at ``net.core.wmem_max``: 212,992 by default, which
#: holds 556 one-byte records, still a second of console).
SEND_BUFFER = 1 << 20
#: Seconds :meth:`ConsoleRecorder.close` waits for the reader to end.
CLOSE_TIMEOUT = 5.0
#: Bytes read at most per record: QEMU's serial devices send one or a few.
RECORD_MAX = 4096

_TIMESPEC = struct.Struct("@qq")
_log = logging.getLogger(__name__)


class ConsoleRecorder:
    """Reads one QEMU's console socket in a thread, keeping each byte and its stamp.

    :param name: the machine's name, for the thread and logs.

    Give :attr:`qemu_fd` to QEMU (``-chardev socket,id=...,fd=N``), then
    call :meth:`start` once it has its copy, and :meth:`close` once it is
    gone: that reads what is left and closes the socket.  Both are safe in
    every state and twice.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._ours, self._theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        # Before QEMU can write: the kernel stamps a record when it is sent
        # only if the receiving socket asked for stamps by then.
        self._ours.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        self._theirs.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)
        self._ours.setblocking(False)
        self._lock = threading.Lock()
        self._times = array.array("d")
        self._bytes = bytearray()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._closed = False
        #: Records that came without a stamp (stamped on reading instead).
        self.unstamped = 0
        #: When the recording ended (wall clock), once :meth:`close` ran.
        self.closed_at: Optional[float] = None

    @property
    def qemu_fd(self) -> int:
        """QEMU's end of the socket, to pass to it (until :meth:`start`)."""
        return self._theirs.fileno()

    def start(self) -> None:
        """Drop our copy of QEMU's end, and read from now on."""
        self._theirs.close()
        if self._thread is None and not self._closed:
            self._thread = threading.Thread(
                target=self._run, name=f"migtest-console-{self.name}", daemon=True
            )
            self._thread.start()

    def _run(self) -> None:
        # No deadline: this lasts as long as QEMU does; close() ends it.
        while self._drain():
            if self._stop.wait(READ_INTERVAL):
                break

    def _drain(self) -> bool:
        """Read every record waiting; return False at the end of the stream."""
        received: List[Tuple[float, bytes]] = []
        alive = True
        while True:
            try:
                data, ancillary, _, _ = self._ours.recvmsg(
                    RECORD_MAX, socket.CMSG_SPACE(_TIMESPEC.size)
                )
            except BlockingIOError:
                break
            except OSError as exc:  # closed under us by close() after its deadline
                _log.debug("%s: console read ended: %s", self.name, exc)
                alive = False
                break
            if not data:
                alive = False
                break
            received.append((self._stamp(ancillary), data))
        if received:
            with self._lock:
                for stamp, data in received:
                    self._times.extend([stamp] * len(data))
                    self._bytes += data
        return alive

    def _stamp(self, ancillary: List[Tuple[int, int, bytes]]) -> float:
        for level, kind, data in ancillary:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                seconds, nanoseconds = _TIMESPEC.unpack(data[: _TIMESPEC.size])
                return float(seconds + nanoseconds / 1e9)
        self.unstamped += 1
        return time.time()

    def close(self) -> None:
        """Read what is left and close the socket, once QEMU is gone."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        if self._thread is not None:
            self._thread.join(CLOSE_TIMEOUT)
            if self._thread.is_alive():
                _log.debug("%s: console reader still running after %g s", self.name, CLOSE_TIMEOUT)
        if self._thread is None or not self._thread.is_alive():
            self._drain()
        self._theirs.close()
        self._ours.close()
        self.closed_at = time.time()

    def arrivals(self, byte: bytes) -> List[float]:
        """When each ``byte`` (one character, ``b"B"``) arrived, oldest first.

        :raise ValueError: ``byte`` is not one byte.
        """
        if len(byte) != 1:
            raise ValueError(f"byte: {byte!r} is not one byte")
        wanted = byte[0]
        with self._lock:
            return [t for t, b in zip(self._times, self._bytes) if b == wanted]

    def text(self) -> str:
        """Every byte read so far, as text."""
        with self._lock:
            return self._bytes.decode(errors="replace")
