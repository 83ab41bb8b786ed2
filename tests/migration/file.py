"""Migration into a file, then out of it (``file:``, QEMU 8.2 on), and mapped-ram (9.0 on).

The source writes the whole migration into the file, then the destination
loads it.  The destination starts paused, so its RAM is compared byte for
byte with the source's, as after a live migration, before it runs.
"""

from typing import Dict

from migtest.arch import MiB
from migtest.checks import check_multifd_used, check_shared_ram_not_sent
from migtest.errors import QMPError
from migtest.pair import MigrationPair
from migtest.qapi import Capability, MigrationInfo
from migtest.status import UNSUCCESSFUL
from migtest.test import MigrationTest
from migtest.transport import (
    FdsetChannel,
    FileChannel,
    check_descriptors_closed,
    require_direct_io,
)

#: Where the stream starts in a file with an offset: QEMU's tests use 4 KiB.
OFFSET = 0x1000
#: Migrations into /dev/full in a row: one leaked descriptor each would show.
FULL_ATTEMPTS = 5


def save_and_load(
    pair: MigrationPair, channel: FileChannel, mapped_ram: bool = False
) -> MigrationInfo:
    """Save into ``channel``'s file, then load it; the file must be as QEMU promises.

    Where the file holds a stream (not mapped-ram), our reader must read it
    from its offset to its end.

    :return: the source's final statistics.
    """
    pair.migrate(channel)
    final = pair.wait_for_completion()
    channel.check_written()
    if not mapped_ram:
        channel.read_stream()
    return final


def save_live_and_load(
    pair: MigrationPair, channel: FileChannel, mapped_ram: bool = False
) -> MigrationInfo:
    """Save a running guest, held back until RAM was synced twice; then load it.

    Two syncs prove that pages the guest dirtied while being saved were
    found and written again (with mapped-ram: over their first copy).

    :return: the source's final statistics.
    """
    pair.prevent_convergence()
    channel.prepare(pair.src, pair.dst)
    pair.src.migrate(channel.send_target(pair.src, pair.dst))
    pair.src.wait_for_dirty_sync(2)
    pair.allow_convergence()
    pair.src.wait_for_status("completed", fail_on=UNSUCCESSFUL)
    pair.dst.listen(channel.listen_target(pair.dst))
    final = pair.wait_for_completion()
    channel.check_written()
    if not mapped_ram:
        channel.read_stream()
    return final


class File(MigrationTest):
    """``file:``: the stream in a file, at an offset, or through fd sets (QEMU 8.2 on).

    :avocado: enable
    :avocado: tags=migration,file
    :avocado: tags=arch:x86_64,arch:aarch64,arch:s390x,arch:ppc64,arch:riscv64
    """

    def test_file(self) -> None:
        """A running guest saved into a file and loaded from it.

        QEMU promises the destination the guest exactly as the source left
        it, dirtied pages included.
        """
        save_live_and_load(self.start_pair(), FileChannel())
        self.verify_migration()

    def test_channels(self) -> None:
        """The file named by a ``channels`` list (``transport: file``), with an offset."""
        pair = self.start_pair()
        pair.allow_convergence()
        save_and_load(pair, FileChannel(offset=OFFSET, as_channels=True))
        self.verify_migration()

    def test_offset(self) -> None:
        """The stream at an offset: the bytes before it untouched, the stream there.

        ``offset`` is where QEMU may start writing (and reading): it keeps
        what comes before (since 9.0.1/9.1, "migration: Fix file migration
        with fdset"; 8.2 truncated the whole file).
        """
        pair = self.start_pair()
        pair.allow_convergence()
        save_and_load(pair, FileChannel(offset=OFFSET))
        self.verify_migration()

    def test_offset_fdset(self) -> None:
        """The file through an fd set on each side (``add-fd``, ``/dev/fdset/N``), at an offset."""
        pair = self.start_pair()
        pair.allow_convergence()
        save_and_load(pair, FdsetChannel(offset=OFFSET))
        self.verify_migration()

    def test_bad_offset(self) -> None:
        """An offset QEMU cannot parse (``0x20M``) is refused by ``migrate`` itself.

        The refusal is an error answer: no migration starts, and the source
        guest runs on.
        """
        pair = self.start_pair()
        pair.src.require_transport("file")
        with self.assertRaisesRegex(QMPError, "offset") as refused:
            pair.src.migrate("file:bad-offset.mig,offset=0x20M")
        self.log.info("refused: %s", refused.exception.desc)
        self.assertNotIn("MIGRATION", [e["event"] for e in pair.src.machine.events()])
        self.assert_guest_runs(pair.src.machine)

    def test_dev_full_leaks_no_descriptor(self) -> None:
        """Migrations into ``/dev/full``, one after another, leave no descriptor open.

        Each is refused (QEMU cannot truncate a device) or fails (no space
        left); either way QEMU must close the file it opened, and the guest
        runs on.
        """
        pair = self.start_pair()
        src = pair.src
        src.require_transport("file")
        before = src.open_descriptors()
        for attempt in range(FULL_ATTEMPTS):
            try:
                src.migrate("file:/dev/full")
            except QMPError as refused:
                self.log.info("attempt %d refused: %s", attempt, refused.desc)
            else:
                src.wait_for_status("failed", fail_on=("completed",))
        check_descriptors_closed(before, src.open_descriptors(), f"{FULL_ATTEMPTS} to /dev/full")
        self.assert_guest_runs(src.machine)


class MappedRam(MigrationTest):
    """Mapped-ram: every page at a fixed place in the file (QEMU 9.0 on).

    Pages dirtied during a live save are written again over their first
    copy, so the file's size is bounded; multifd channels each write their
    pages at their places, and read them back so.

    :avocado: enable
    :avocado: tags=migration,file,mapped-ram
    :avocado: tags=arch:x86_64,arch:aarch64,arch:s390x,arch:ppc64,arch:riscv64
    """

    def mapped_ram_pair(self, multifd: bool = False, ignore_shared: bool = False) -> MigrationPair:
        """A pair with mapped-ram on both sides.

        :param multifd: with multifd, over four channels.
        :param ignore_shared: guest RAM in one file both sides map, with
            x-ignore-shared.
        """
        pair = self.start_pair(shared_memory=ignore_shared)
        capabilities: Dict[Capability, bool] = {"mapped-ram": True, "multifd": multifd}
        if ignore_shared:
            capabilities["x-ignore-shared"] = True
        pair.set_capabilities(capabilities)
        if multifd:
            pair.set_parameters({"multifd-channels": 4})
        return pair

    def test_stopped(self) -> None:
        """A stopped guest saved and loaded with mapped-ram."""
        pair = self.mapped_ram_pair()
        pair.src.stop()
        save_and_load(pair, FileChannel(), mapped_ram=True)
        self.verify_migration()

    def test_live(self) -> None:
        """A running guest saved with mapped-ram: dirtied pages rewritten in place."""
        save_live_and_load(self.mapped_ram_pair(), FileChannel(), mapped_ram=True)
        self.verify_migration()

    def test_multifd_stopped(self) -> None:
        """A stopped guest saved by four multifd channels at once, each writing its pages."""
        pair = self.mapped_ram_pair(multifd=True)
        pair.src.stop()
        check_multifd_used(save_and_load(pair, FileChannel(), mapped_ram=True)["ram"])
        self.verify_migration()

    def test_multifd_live(self) -> None:
        """A running guest saved by four multifd channels, held back for two syncs."""
        final = save_live_and_load(
            self.mapped_ram_pair(multifd=True), FileChannel(), mapped_ram=True
        )
        check_multifd_used(final["ram"])
        self.verify_migration()

    def test_multifd_fdset(self) -> None:
        """Multifd through fd sets of two descriptors per side, at an offset.

        Once done, QEMU holds none of them: after ``remove-fd`` no fd set
        is left (``query-fdsets``) on either side.
        """
        pair = self.mapped_ram_pair(multifd=True)
        pair.src.stop()
        channel = FdsetChannel(offset=OFFSET, descriptors=2)
        check_multifd_used(save_and_load(pair, channel, mapped_ram=True)["ram"])
        self.verify_migration()
        for side in (pair.src, pair.dst):
            channel.release(side)

    def test_direct_io(self) -> None:
        """Multifd with ``direct-io``: pages written and read with O_DIRECT (QEMU 9.1 on).

        CANCEL where the file system of the work directory refuses O_DIRECT.
        """
        pair = self.mapped_ram_pair(multifd=True)
        pair.set_parameters({"direct-io": True})
        pair.src.stop()
        channel = FdsetChannel(descriptors=2, direct_io=True)
        check_multifd_used(save_and_load(pair, channel, mapped_ram=True)["ram"])
        self.verify_migration()
        for side in (pair.src, pair.dst):
            channel.release(side)

    def test_direct_io_by_path(self) -> None:
        """``direct-io`` with the file named by its path: QEMU opens it with O_DIRECT itself."""
        pair = self.mapped_ram_pair(multifd=True)
        pair.set_parameters({"direct-io": True})
        pair.src.stop()
        channel = FileChannel()
        require_direct_io(pair.workdir)
        check_multifd_used(save_and_load(pair, channel, mapped_ram=True)["ram"])
        self.verify_migration()

    def test_ignore_shared(self) -> None:
        """Mapped-ram with x-ignore-shared: RAM both sides map is left out of the file."""
        pair = self.mapped_ram_pair(ignore_shared=True)
        pair.src.stop()
        final = save_and_load(pair, FileChannel(), mapped_ram=True)
        check_shared_ram_not_sent(final["ram"], pair.profile.memory_mib * MiB)
        self.verify_migration()

    def test_postcopy(self) -> None:
        """Postcopy loading from a mapped-ram file: the guest runs while its pages load.

        No QEMU release up to 11.1 takes mapped-ram with postcopy-ram
        ("Mapped-ram migration is incompatible with postcopy"): CANCEL
        naming it.  A QEMU that takes them must load the guest so.
        """
        pair = self.start_pair(dst_paused=False)
        pair.require_capabilities("mapped-ram", "postcopy-ram")
        for side in (pair.dst, pair.src):
            side.require_together({"mapped-ram": True, "postcopy-ram": True})
        pair.src.stop()
        save_and_load(pair, FileChannel(), mapped_ram=True)
        self.verify_migration()
