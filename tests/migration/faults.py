"""Faults injected into migrations: each must end in the right verdict.

A suite is worth the broken migrations it catches; these tests break
migrations on purpose and check that the suite, and QEMU, notice.
"""

from migtest.arch import MiB
from migtest.errors import CheckFailure, QMPConnectionLost
from migtest.proxy import Corruption, FaultyChannel
from migtest.scenarios import migrate_again, postcopy_recovered
from migtest.test import MigrationTest
from migtest.transport import TcpChannel, UnixChannel


class Faults(MigrationTest):
    """Damaged streams, dead destinations and cut links: the source always survives.

    :avocado: enable
    :avocado: tags=migration,faults
    :avocado: tags=arch:x86_64,arch:aarch64,arch:s390x,arch:ppc64,arch:riscv64
    """

    def test_corrupted_stream(self) -> None:
        """Bits flipped in the stream: the migration fails or the checks say where.

        The source is stopped first, so every page crosses exactly once and
        no later pass can repair the damage.  A corrupted migration reported
        healthy fails this test; so does a source that did not survive it.
        """
        pair = self.start_pair()
        pair.src.stop()
        pair.allow_convergence()
        corruption = Corruption(after=8 * MiB, every=16 * MiB)
        pair.migrate(FaultyChannel(UnixChannel(), corruption=corruption))
        try:
            pair.wait_for_completion()
        except (CheckFailure, QMPConnectionLost) as failed:
            self.log.info("the damaged migration failed: %s", failed)
            self.assert_source_survived()
        else:
            with self.assertRaises(CheckFailure, msg="a corrupted migration passed every check"):
                self.verify_migration()
        self.assertGreater(corruption.flipped, 0, "nothing flipped")

    def test_destination_killed(self) -> None:
        """The destination dies mid-precopy: the source fails safe and can try again."""
        pair = self.start_pair()
        pair.prevent_convergence()
        pair.migrate("unix")
        pair.src.wait_for_dirty_sync(2)
        pair.dst.machine.kill()
        pair.src.wait_for_status("failed", fail_on=("completed",))
        self.assert_guest_runs(pair.src.machine)
        migrate_again(self.pair)
        self.verify_migration()

    def test_link_cut_during_postcopy(self) -> None:
        """The link drops in postcopy: both sides pause, and recover over a new one."""
        pair = self.start_postcopy_pair()
        link = FaultyChannel(TcpChannel())
        postcopy_recovered(pair, link, "unix", pause=link.cut)
        self.verify_migration()

    def assert_source_survived(self) -> None:
        """A damaged stream may cost the destination, never the source: it runs on."""
        src = self.pair.src.machine
        if not src.is_running():
            self.fail(f"the source QEMU exited ({src.exitcode}) after a damaged migration")
        self.pair.src.cont()
        self.assert_guest_runs(src)
