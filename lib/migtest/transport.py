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
from pathlib import Path
from typing import Callable, ClassVar, Dict, Iterator, List, Optional, Type

from .endpoint import Endpoint
from .errors import CheckFailure, ConfigError, MigtestError, StateError, Unavailable
from .qapi import MigrationChannel, Target
from .stream import StreamSummary, read_stream
from .wait import wait_for


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


#: How a migration stream starts (``QEMU_VM_FILE_MAGIC``), file or socket.
STREAM_MAGIC = b"QEVM"


class FileChannel(Channel):
    """Into a file, then out of it (``file:``, QEMU 8.2 on).

    Not live: the source writes the whole migration, then the destination
    loads it.  With mapped-ram each page has its place in the file, and
    multifd channels write and read it at once.

    :param offset: where in the file the stream starts.  QEMU leaves the
        bytes before it alone; so that a change shows, they are filled
        with a pattern first (:meth:`check_written`).
    :param as_channels: name the file with a ``channels`` list, not a URI.
    """

    name = "file"
    live = False

    def __init__(
        self, label: str = "migration", offset: int = 0, as_channels: bool = False
    ) -> None:
        super().__init__(label)
        self.offset = offset
        self.as_channels = as_channels
        self._directory: Optional[Path] = None

    @property
    def path(self) -> str:
        """The file, relative to the work directory."""
        return f"{self.label}.mig"

    @property
    def prefix(self) -> bytes:
        """What the file holds before :attr:`offset`, before and after the migration."""
        pattern = bytes(range(1, 256))  # no zero: a file truncated and regrown reads zeros
        return (pattern * (self.offset // len(pattern) + 1))[: self.offset]

    def create(self, directory: Path) -> None:
        """Create the file in ``directory``, holding only :attr:`prefix`."""
        self._directory = Path(directory)
        (self._directory / self.path).write_bytes(self.prefix)

    def prepare(self, src: Endpoint, dst: Endpoint) -> None:
        """Check that both sides take ``file:``; create the file.

        :raise Unavailable: a side's QEMU lacks the file transport.
        """
        for side in (src, dst):
            side.require_transport("file")
        self.create(src.machine.workdir)

    def _location(self) -> str:
        """The file as QEMU opens it: a path, or a fd set (:class:`FdsetChannel`)."""
        return self.path

    def _target(self, side: Endpoint, command: str) -> Target:
        if not self.as_channels:
            return f"file:{self._location()}" + (f",offset={self.offset}" if self.offset else "")
        side.require_arguments(command, ["channels"])
        address = {"transport": "file", "filename": self._location(), "offset": self.offset}
        return [{"channel-type": "main", "addr": address}]

    def listen_target(self, dst: Endpoint) -> Target:
        return self._target(dst, "migrate-incoming")

    def send_target(self, src: Endpoint, dst: Endpoint) -> Target:
        return self._target(src, "migrate")

    def read_stream(self) -> StreamSummary:
        """The stream saved in the file, read from its offset to its end.

        Not for a mapped-ram file: its pages sit at fixed places, not in a
        stream.

        :raise StreamError: it is not a well-formed stream.
        :raise StateError: the file was never created.
        """
        if self._directory is None:
            raise StateError("read_stream() before the file was created")
        with open(self._directory / self.path, "rb") as file:
            return read_stream(file, offset=self.offset)

    def check_written(self) -> None:
        """The file as a migration into it must leave it.

        The bytes before :attr:`offset` are what they were, and the stream
        starts at the offset (``QEVM``).

        :raise CheckFailure: either is not so.
        :raise StateError: the file was never created.
        """
        if self._directory is None:
            raise StateError("check_written() before the file was created")
        with open(self._directory / self.path, "rb") as file:
            before = file.read(self.offset)
            magic = file.read(len(STREAM_MAGIC))
        if before != self.prefix:
            changed = next(
                (i for i, (a, b) in enumerate(zip(before, self.prefix)) if a != b), len(before)
            )
            raise CheckFailure(
                f"{self.path}: the {self.offset} bytes before the stream's offset changed "
                f"(first at byte {changed}, {len(before)} bytes left): QEMU wrote before its offset"
            )
        if magic != STREAM_MAGIC:
            raise CheckFailure(
                f"{self.path}: {magic!r} at offset {self.offset}, not the stream's "
                f"{STREAM_MAGIC!r}: the stream does not start where it was told to"
            )


class FdsetChannel(FileChannel):
    """A file QEMU opens through fd sets of descriptors we hand it (``add-fd``).

    Each side gets ``descriptors`` descriptors of the file in one fd set,
    and the URI names the set (``file:/dev/fdset/ID``): the source's are
    open for writing, the destination's for reading.  Multifd opens the
    file once per channel, each time duplicating one from the set.

    :param direct_io: open every descriptor but the first with
        ``O_DIRECT``, for the ``direct-io`` parameter: the main channel
        writes unaligned, the multifd ones page by page (QEMU 9.1 on).
    """

    name = "fdset"

    def __init__(
        self,
        label: str = "migration",
        offset: int = 0,
        descriptors: int = 1,
        direct_io: bool = False,
    ) -> None:
        super().__init__(label, offset)
        self.descriptors = descriptors
        self.direct_io = direct_io
        #: Each side's fd set, by side name.
        self.fdset_ids: Dict[str, int] = {}

    def prepare(self, src: Endpoint, dst: Endpoint) -> None:
        """Create the file, and hand each side its descriptors of it.

        :raise Unavailable: a side lacks the file transport or ``add-fd``,
            or the file system refuses ``O_DIRECT``.
        """
        super().prepare(src, dst)
        if self.direct_io and self._directory is not None:
            require_direct_io(self._directory)
        for side, access in ((src, os.O_WRONLY), (dst, os.O_RDONLY)):
            for i in range(self.descriptors):
                direct = os.O_DIRECT if self.direct_io and i > 0 else 0
                fd = os.open(self._file(), access | direct | os.O_CLOEXEC)
                try:
                    self.fdset_ids[side.name] = side.add_fd(fd, self.fdset_ids.get(side.name))
                finally:
                    os.close(fd)  # QEMU holds its own copy now

    def _file(self) -> Path:
        if self._directory is None:
            raise StateError("the file has not been created")
        return self._directory / self.path

    def _set(self, side: Endpoint) -> str:
        if side.name not in self.fdset_ids:
            raise StateError(f"{side.name} has no fd set: prepare() first")
        return f"/dev/fdset/{self.fdset_ids[side.name]}"

    def _target(self, side: Endpoint, command: str) -> Target:
        location = self._set(side)
        return f"file:{location}" + (f",offset={self.offset}" if self.offset else "")

    def release(self, side: Endpoint) -> None:
        """Remove ``side``'s fd set; QEMU must be done with it: none is left.

        :raise CheckFailure: a set is still listed (``query-fdsets``):
            QEMU still holds a duplicate of one of its descriptors.
        """
        side.remove_fdset(self.fdset_ids[side.name])
        left = side.fdsets()
        if left:
            raise CheckFailure(
                f"{side.name}: fd sets left after the migration and remove-fd: {left}; "
                "QEMU still holds a descriptor of the migration file"
            )


def require_direct_io(directory: Path) -> None:
    """:raise Unavailable: the file system of ``directory`` refuses ``O_DIRECT``.

    tmpfs does (Linux before 6.6); QEMU's ``direct-io`` needs it.
    """
    probe = Path(directory) / ".o_direct_probe"
    try:
        fd = os.open(probe, os.O_CREAT | os.O_WRONLY | os.O_DIRECT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise Unavailable(
            f"the {filesystem_type(directory)} file system of {directory} refuses "
            f"O_DIRECT ({exc.strerror}): direct-io needs it"
        ) from exc
    else:
        os.close(fd)
    finally:
        probe.unlink(missing_ok=True)


def filesystem_type(directory: Path) -> str:
    """The type of the file system ``directory`` is on (``ext4``, ``tmpfs``), from /proc/mounts."""
    resolved = str(Path(directory).resolve())
    best, kind = "", "unknown"
    with open("/proc/self/mounts") as mounts:
        for line in mounts:
            fields = line.split()
            point = fields[1].replace("\\040", " ")
            inside = resolved == point or resolved.startswith(point.rstrip("/") + "/")
            if inside and len(point) >= len(best):
                best, kind = point, fields[2]
    return kind


def check_descriptors_closed(before: List[str], after: List[str], what: str) -> None:
    """A QEMU's open descriptors after ``what`` are those it had before.

    :param before: what it had open (:meth:`~Endpoint.open_descriptors`).
    :raise CheckFailure: it holds more: ``what`` leaked a descriptor.
    """
    left = list(after)
    for target in before:
        if target in left:
            left.remove(target)
    if len(after) > len(before) or left:
        raise CheckFailure(
            f"{len(before)} descriptors open before {what}, {len(after)} after; "
            f"new: {left}: a descriptor leaked"
        )


class CprChannel:
    """The ``cpr`` channel of cpr-transfer (QEMU 10.0 on): a unix socket in the work directory.

    Over it the source hands the destination its descriptors (guest RAM's
    among them) with SCM_RIGHTS.  The destination listens on it from its
    command line, and reads it before it opens its monitor: the socket
    must be there before the source's ``migrate`` names it.
    """

    path = "cpr.sock"

    def incoming_args(self) -> List[str]:
        """The destination's extra ``-incoming`` option (besides the main channel's)."""
        return ["-incoming", f"cpr,addr.transport=socket,addr.type=unix,addr.path={self.path}"]

    def channel(self) -> MigrationChannel:
        """The channel as the source's ``migrate`` names it, next to the main one."""
        address = {"transport": "socket", "type": "unix", "path": self.path}
        return {"channel-type": "cpr", "addr": address}

    def next_to(self, main: Target) -> List[MigrationChannel]:
        """``migrate``'s channels: the ``main`` one (a list of one), then this one.

        :raise ConfigError: ``main`` is a URI: it must be given as channels.
        """
        if isinstance(main, str):
            raise ConfigError("channel", main, "a main channel given as channels (as_channels)")
        return [*main, self.channel()]

    def wait_listening(self, directory: Path, timeout: float) -> None:
        """Wait until the destination QEMU has created the socket in ``directory``."""
        socket_path = Path(directory) / self.path
        wait_for(
            lambda: (socket_path.is_socket(), socket_path.exists()),
            what=f"the destination to listen on {self.path} (exists?)",
            timeout=timeout,
        )


CHANNELS: Dict[str, Type[Channel]] = {
    c.name: c for c in (UnixChannel, TcpChannel, FdChannel, ExecChannel, FileChannel, FdsetChannel)
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
