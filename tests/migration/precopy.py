"""Precopy live migration over each transport, as QEMU's migration-test runs it."""

from typing import Union

from migtest.scenarios import live_precopy
from migtest.stream import check_stream
from migtest.test import MigrationTest
from migtest.transport import Channel, ExecChannel, UnixChannel, make_channel
from migtest.verify import assert_command_fails


class Precopy(MigrationTest):
    """Live precopy: the guest keeps dirtying memory while it is copied.

    The migration is first kept from converging (1 ms downtime limit) until
    RAM has been synced twice, proving pages dirtied during the copy are
    found again; then it may converge.  The destination starts paused, so
    its RAM is compared byte for byte with the stopped source's.

    :avocado: enable
    :avocado: tags=migration,precopy
    :avocado: tags=arch:x86_64,arch:aarch64,arch:s390x,arch:ppc64,arch:riscv64
    """

    def live_precopy(self, channel: Union[str, Channel]) -> Channel:
        """Migrate live over ``channel``, verify, and return the channel."""
        link = channel if isinstance(channel, Channel) else make_channel(channel)
        live_precopy(self.start_pair(), link)
        self.verify_migration()
        return link

    def test_unix(self) -> None:
        """Precopy over a unix socket.

        :avocado: tags=seed,unix,qtest-7.2
        """
        self.live_precopy("unix")

    def test_channels(self) -> None:
        """Precopy over a unix socket named by a ``channels`` list (QEMU 8.2 on).

        :avocado: tags=unix,channels
        """
        self.live_precopy(UnixChannel(as_channels=True))

    def test_tcp(self) -> None:
        """Precopy over TCP on the loopback address.

        :avocado: tags=seed,tcp,qtest-7.2
        """
        self.live_precopy("tcp")

    def test_fd(self) -> None:
        """Precopy over a socket pair handed to both QEMUs with getfd.

        Once the migration is done, neither QEMU may keep the descriptor
        under its name: closefd must fail on both sides.

        :avocado: tags=seed,fd,qtest-7.2
        """
        name = self.live_precopy("fd").label
        for side in (self.pair.src, self.pair.dst):
            assert_command_fails(
                side.machine, f"File descriptor named '{name}' not found", "closefd", fdname=name
            )

    def test_exec(self) -> None:
        """Into a file through a command's pipe, then out of it (``exec:``).

        The guest runs on while the source saves it; the destination loads
        the file afterwards, and its RAM must equal the stopped source's.
        The file must be a well-formed stream, read by our own reader from
        its magic to its end.

        :avocado: tags=exec
        """
        pair = self.start_pair()
        pair.allow_convergence()
        channel = ExecChannel("stream")
        pair.migrate(channel)
        check_stream(pair.workdir / channel.path)
        pair.wait_for_completion()
        self.verify_migration()
