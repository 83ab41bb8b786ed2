"""How the migration stream travels from source to destination.

A transport first makes the destination listen, then tells the source
where to connect.  The two steps are separate because some transports
only know the source's URI once the destination listens (tcp port 0).
"""

from __future__ import annotations

import abc
from pathlib import Path
from typing import Dict, Type

from .endpoint import Endpoint
from .errors import ConfigError, MigtestError


class Transport(abc.ABC):
    """A way to carry the migration stream."""

    #: The name tests and parameters use.
    name = ""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir

    @abc.abstractmethod
    def listen(self, dst: Endpoint) -> None:
        """Make ``dst`` wait for an incoming migration."""

    @abc.abstractmethod
    def source_uri(self, dst: Endpoint) -> str:
        """The URI the source migrates to, once ``dst`` listens."""


class UnixTransport(Transport):
    """A unix socket in the test's private work directory.

    The path is relative: QEMU runs in the work directory, whose absolute
    path can exceed the 108 bytes a socket address holds.
    """

    name = "unix"
    socket_name = "migration.sock"

    def listen(self, dst: Endpoint) -> None:
        dst.machine.cmd("migrate-incoming", uri=f"unix:{self.socket_name}")

    def source_uri(self, dst: Endpoint) -> str:
        return f"unix:{self.socket_name}"


class TcpTransport(Transport):
    """TCP on the loopback address, on a port the kernel picks."""

    name = "tcp"

    def listen(self, dst: Endpoint) -> None:
        dst.machine.cmd("migrate-incoming", uri="tcp:127.0.0.1:0")

    def source_uri(self, dst: Endpoint) -> str:
        # Port 0 lets the kernel pick a free port, so parallel tests never
        # collide; the destination reports the real one.
        for address in dst.info().get("socket-address", []):
            if address.get("type") == "inet" and address.get("port") not in (None, "0"):
                return f"tcp:{address['host']}:{address['port']}"
        raise MigtestError(f"{dst.name} did not report its listening tcp port: {dst.info()}")


TRANSPORTS: Dict[str, Type[Transport]] = {t.name: t for t in (UnixTransport, TcpTransport)}


def make_transport(name: str, workdir: Path) -> Transport:
    """The transport called ``name``.

    :raise ConfigError: no such transport.
    """
    try:
        return TRANSPORTS[name](workdir)
    except KeyError:
        raise ConfigError("transport", name, f"one of {', '.join(TRANSPORTS)}") from None
