"""How the migration stream gets from source to destination: channels.

A :class:`Channel` answers four questions for :class:`~migtest.pair.MigrationPair`:
what the sides need first (:meth:`~Channel.prepare`: descriptors handed
over, later certificates and files, side effects in the open), where the
destination listens (:meth:`~Channel.listen_target`), where the source
sends (:meth:`~Channel.send_target`), and in which order: a *live* channel
is a stream the destination reads while the source writes (so it listens
first), a channel that is not live holds the whole migration (a file: the
source writes all of it, then the destination loads it).
:meth:`~Channel.dialer` connects to a listening destination the way the
source would, which lets a fault-injecting proxy
(:class:`~migtest.proxy.FaultyChannel`) sit in front of any live channel.

Every path is relative: QEMU runs in the test's work directory, whose own
path can be longer than the 108 bytes a socket address holds.
"""

from __future__ import annotations

import abc
import contextlib
import os
import shlex
import socket
from typing import Callable, ClassVar, Dict, Iterator, List, Optional, Type

from .endpoint import Endpoint
from .errors import ConfigError, MigtestError, StateError
from .qapi import Target


class Channel(abc.ABC):
    """A way to carry the migration stream.

    :param label: tells this channel from others of the same pair (postcopy
        recovery needs a new one); names its socket, file or descriptor.
    """

    #: The name tests and parameters use.
    name: ClassVar[str] = ""
    #: Whether the destination reads while the source writes.
    live: ClassVar[bool] = True

    def __init__(self, label: str = "migration") -> None:
        self.label = label

    def prepare(self, src: Endpoint, dst: Endpoint) -> None:  # noqa: B027 - most need nothing
        """Give the sides what the channel needs before either is told of it."""

    @abc.abstractmethod
    def listen_target(self, dst: Endpoint) -> Target:
        """Where ``dst`` listens (``migrate-incoming``, ``migrate-recover``)."""

    @abc.abstractmethod
    def send_target(self, src: Endpoint, dst: Endpoint) -> Target:
        """Where ``src`` sends (``migrate``): once ``dst`` listens if :attr:`live`."""

    def dialer(self, dst: Endpoint) -> Callable[[], socket.socket]:
        """How to connect to the listening ``dst`` as the source would.

        Whatever needs QMP is asked now, in the caller's thread; the
        returned function only connects, from any thread (a proxy's).

        :raise ConfigError: this channel is no stream a proxy can join.
        """
        raise ConfigError("channel", self.name, "a live stream (unix, tcp, fd) for a proxy")

    def close(self) -> None:  # noqa: B027 - most channels hold nothing
        """Release what the channel holds; idempotent."""


class SocketChannel(Channel):
    """A stream socket: named by a URI, or by a ``channels`` list (QEMU 8.2 on).

    :param as_channels: name it with a ``channels`` list, not a URI; both
        sides must take that argument.
    """

    def __init__(self, label: str = "migration", as_channels: bool = False) -> None:
        super().__init__(label)
        self.as_channels = as_channels

    def _target(self, side: Endpoint, command: str, address: Dict[str, str]) -> Target:
        """``address`` (a QAPI SocketAddress) as ``command`` of ``side`` takes it."""
        if not self.as_channels:
            if address["type"] == "unix":
                return f"unix:{address['path']}"
            return f"tcp:{address['host']}:{address['port']}"
        side.require_arguments(command, ["channels"])
        return [{"channel-type": "main", "addr": {"transport": "socket", **address}}]


class UnixChannel(SocketChannel):
    """A unix socket in the work directory."""

    name = "unix"

    @property
    def path(self) -> str:
        """The socket's path, relative to the work directory."""
        return f"{self.label}.sock"

    def _unix(self, side: Endpoint, command: str) -> Target:
        return self._target(side, command, {"type": "unix", "path": self.path})

    def listen_target(self, dst: Endpoint) -> Target:
        return self._unix(dst, "migrate-incoming")

    def send_target(self, src: Endpoint, dst: Endpoint) -> Target:
        return self._unix(src, "migrate")

    def dialer(self, dst: Endpoint) -> Callable[[], socket.socket]:
        workdir = dst.machine.workdir

        def dial() -> socket.socket:
            # Through the directory's descriptor: the absolute path may not
            # fit in a socket address.
            directory = os.open(workdir, os.O_RDONLY | os.O_DIRECTORY)
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.connect(f"/proc/self/fd/{directory}/{self.path}")
            except OSError:
                sock.close()
                raise
            finally:
                os.close(directory)
            return sock

        return dial


class TcpChannel(SocketChannel):
    """TCP on the loopback address, on a port the kernel picks.

    Port 0 lets the kernel pick a free port, so parallel tests never
    collide; the destination says which port it got.
    """

    name = "tcp"

    def listen_target(self, dst: Endpoint) -> Target:
        return self._target(
            dst, "migrate-incoming", {"type": "inet", "host": "127.0.0.1", "port": "0"}
        )

    def send_target(self, src: Endpoint, dst: Endpoint) -> Target:
        host, port = self.listening_address(dst)
        return self._target(src, "migrate", {"type": "inet", "host": host, "port": str(port)})

    def listening_address(self, dst: Endpoint) -> tuple[str, int]:
        """The address ``dst`` reports it listens on.

        :raise MigtestError: it reports none.
        """
        info = dst.info()
        for address in info.get("socket-address", []):
            if address.get("type") == "inet" and address.get("port") not in (None, "0"):
                return str(address["host"]), int(address["port"])
        raise MigtestError(f"{dst.name} did not report its listening tcp port: {info}")

    def dialer(self, dst: Endpoint) -> Callable[[], socket.socket]:
        address = self.listening_address(dst)
        return lambda: socket.create_connection(address, timeout=10)


class FdChannel(Channel):
    """A socket pair, one end handed to each QEMU over QMP (``getfd``)."""

    name = "fd"

    def __init__(self, label: str = "migration") -> None:
        super().__init__(label)
        self._source_end: Optional[socket.socket] = None

    def _hand_over(self, side: Endpoint, end: socket.socket) -> str:
        side.machine.cmd_with_fd(end.fileno(), self.label)
        end.close()  # QEMU holds its own copy now
        return f"fd:{self.label}"

    def prepare(self, src: Endpoint, dst: Endpoint) -> None:
        """Hand the destination its end; the source's waits for :meth:`send_target`.

        A proxy (:meth:`dialer`) may take the source's end instead.
        """
        self._source_end, destination_end = socket.socketpair()
        self._hand_over(dst, destination_end)

    def listen_target(self, dst: Endpoint) -> Target:
        return f"fd:{self.label}"

    def send_target(self, src: Endpoint, dst: Endpoint) -> Target:
        return self._hand_over(src, self._take_source_end())

    def dialer(self, dst: Endpoint) -> Callable[[], socket.socket]:
        end = self._take_source_end()  # the only connection there is
        return lambda: end

    def _take_source_end(self) -> socket.socket:
        if self._source_end is None:
            raise StateError("the destination must listen before the source end is taken")
        end, self._source_end = self._source_end, None
        return end

    def close(self) -> None:
        if self._source_end is not None:
            self._source_end.close()
            self._source_end = None


class ExecChannel(Channel):
    """Through a command's pipe into a file, then out of it (``exec:``).

    The source's QEMU runs ``cat > FILE`` and writes the stream into its
    pipe; once it is complete, the destination's runs ``cat FILE`` and
    reads it back.  Not live: the file holds the whole migration.
    """

    name = "exec"
    live = False

    @property
    def path(self) -> str:
        """The file, relative to the work directory."""
        return f"{self.label}.mig"

    def listen_target(self, dst: Endpoint) -> Target:
        return f"exec:cat {shlex.quote(self.path)}"

    def send_target(self, src: Endpoint, dst: Endpoint) -> Target:
        return f"exec:cat > {shlex.quote(self.path)}"


CHANNELS: Dict[str, Type[Channel]] = {
    c.name: c for c in (UnixChannel, TcpChannel, FdChannel, ExecChannel)
}


def make_channel(name: str, label: str = "migration") -> Channel:
    """The channel called ``name``.

    :raise ConfigError: no such channel.
    """
    try:
        return CHANNELS[name](label)
    except KeyError:
        raise ConfigError("transport", name, f"one of {', '.join(CHANNELS)}") from None


#: Files channels leave in the work directory, removed with the pair.
LEFTOVER_PATTERNS: List[str] = ["*.sock", "*.mig"]


@contextlib.contextmanager
def refused_target() -> Iterator[str]:
    """A TCP address that refuses every connection, while the context lasts.

    The port is bound but never listened on, so no other process can take
    it meanwhile and answer instead.
    """
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        yield f"tcp:127.0.0.1:{unused.getsockname()[1]}"
