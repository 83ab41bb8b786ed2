"""How the migration stream travels from source to destination.

A transport first gives the destination a URI to listen on, then, once it
listens, gives the source a URI to send to.  The two steps are separate
because the second can depend on the first (tcp port 0: the destination
says which port it got).
"""

from __future__ import annotations

import abc
import socket
from typing import Dict, List, Optional, Type

from .endpoint import Endpoint
from .errors import ConfigError, MigtestError, StateError
from .proxy import Corruption, MigrationProxy


class Transport(abc.ABC):
    """A way to carry the migration stream.

    :param channel: a name that tells this channel from others of the same
        pair (postcopy recovery needs a new one).
    """

    #: The name tests and parameters use.
    name = ""

    def __init__(self, channel: str = "migration") -> None:
        self.channel = channel

    @abc.abstractmethod
    def incoming_uri(self, dst: Endpoint) -> str:
        """The URI for ``migrate-incoming`` or ``migrate-recover`` on ``dst``."""

    @abc.abstractmethod
    def outgoing_uri(self, src: Endpoint, dst: Endpoint) -> str:
        """The URI for ``migrate`` on ``src``, once ``dst`` listens."""

    def close(self) -> None:  # noqa: B027 - most transports hold nothing
        """Release what the transport holds; idempotent."""


class UnixTransport(Transport):
    """A unix socket in the test's private work directory.

    The path is relative: QEMU runs in the work directory, whose absolute
    path can exceed the 108 bytes a socket address holds.
    """

    name = "unix"

    def incoming_uri(self, dst: Endpoint) -> str:
        return f"unix:{self.channel}.sock"

    def outgoing_uri(self, src: Endpoint, dst: Endpoint) -> str:
        return f"unix:{self.channel}.sock"


class TcpTransport(Transport):
    """TCP on the loopback address, on a port the kernel picks."""

    name = "tcp"

    def incoming_uri(self, dst: Endpoint) -> str:
        # Port 0 lets the kernel pick a free port, so parallel tests never collide.
        return "tcp:127.0.0.1:0"

    def outgoing_uri(self, src: Endpoint, dst: Endpoint) -> str:
        for address in dst.info().get("socket-address", []):
            if address.get("type") == "inet" and address.get("port") not in (None, "0"):
                return f"tcp:{address['host']}:{address['port']}"
        raise MigtestError(f"{dst.name} did not report its listening tcp port: {dst.info()}")


class ProxiedTransport(TcpTransport):
    """TCP through a :class:`~migtest.proxy.MigrationProxy`, which can damage
    the stream (``corruption``) or cut it (``proxy.cut()``)."""

    name = "proxy"

    def __init__(self, channel: str = "migration", corruption: Optional[Corruption] = None) -> None:
        super().__init__(channel)
        self.corruption = corruption
        self.proxy: Optional[MigrationProxy] = None

    def outgoing_uri(self, src: Endpoint, dst: Endpoint) -> str:
        host, port = super().outgoing_uri(src, dst).split(":")[1:]
        self.proxy = MigrationProxy((host, int(port)), self.corruption)
        host, proxy_port = self.proxy.start()
        return f"tcp:{host}:{proxy_port}"

    def cut(self) -> None:
        """Break the link, as a failing network would.

        :raise StateError: the migration has not started.
        """
        if self.proxy is None:
            raise StateError("the link cannot be cut before the migration starts")
        self.proxy.cut()

    def close(self) -> None:
        if self.proxy is not None:
            self.proxy.close()


class FdTransport(Transport):
    """A socket pair, one end handed to each QEMU over QMP (``getfd``)."""

    name = "fd"

    def __init__(self, channel: str = "migration") -> None:
        super().__init__(channel)
        self._sockets: List[socket.socket] = []

    def _hand_over(self, side: Endpoint, end: socket.socket) -> str:
        side.machine.cmd_with_fd(end.fileno(), self.channel)
        end.close()  # QEMU holds its own copy now
        return f"fd:{self.channel}"

    def incoming_uri(self, dst: Endpoint) -> str:
        self._sockets = list(socket.socketpair())
        return self._hand_over(dst, self._sockets[1])

    def outgoing_uri(self, src: Endpoint, dst: Endpoint) -> str:
        return self._hand_over(src, self._sockets[0])

    def close(self) -> None:
        for end in self._sockets:
            end.close()


TRANSPORTS: Dict[str, Type[Transport]] = {
    t.name: t for t in (UnixTransport, TcpTransport, FdTransport)
}


def make_transport(name: str, channel: str = "migration") -> Transport:
    """The transport called ``name``.

    :raise ConfigError: no such transport.
    """
    try:
        return TRANSPORTS[name](channel)
    except KeyError:
        raise ConfigError("transport", name, f"one of {', '.join(TRANSPORTS)}") from None
