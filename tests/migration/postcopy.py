"""Postcopy migration, and its recovery from a broken channel."""

from migtest.test import MigrationTest
from migtest.verify import assert_statuses_after


class Postcopy(MigrationTest):
    """Postcopy: the destination runs before all of RAM has arrived.

    It starts as a precopy that cannot converge; after one full pass it
    switches to postcopy, and the destination guest runs while the rest of
    RAM is pulled on demand.  Because the destination runs during the
    migration, RAM cannot be compared byte for byte: the guest's own
    pattern is checked instead.

    Cancelled when the host does not allow userfaultfd.

    :avocado: enable
    :avocado: tags=migration,seed,postcopy,unix
    :avocado: tags=arch:x86_64,arch:aarch64,arch:s390x,arch:ppc64
    """

    def start_postcopy_pair(self) -> None:
        """A running destination, postcopy enabled, precopy held back."""
        self.start_pair(dst_paused=False)
        self.enable_postcopy()
        self.pair.prevent_convergence()

    def test_postcopy(self) -> None:
        """Switch to postcopy after one pass; the destination reports its blocktime."""
        self.start_postcopy_pair()
        pair = self.pair
        pair.dst.set_capabilities({"postcopy-blocktime": True})
        pair.migrate("unix")
        pair.src.wait_for_dirty_sync(2)
        pair.start_postcopy()
        pair.wait_for_switchover()
        pair.wait_for_completion()
        self.assertIn("postcopy-blocktime", pair.dst.info(), "destination reports no blocktime")
        self.verify_migration()

    def test_recovery(self) -> None:
        """Pause postcopy, recover it over a new channel, and complete.

        Postcopy is throttled to 4 KiB/s so it cannot finish before the
        pause.  Paused, both sides must wait in postcopy-paused: never
        failed (the guest would be lost), active or completed.
        """
        self.start_postcopy_pair()
        pair = self.pair
        pair.require_commands("migrate-pause", "migrate-recover")
        pair.src.set_parameters({"max-postcopy-bandwidth": 4096})
        pair.migrate("unix")
        pair.src.wait_for_dirty_sync(2)
        pair.start_postcopy()
        pair.wait_for_postcopy()
        pair.pause()
        for side in (pair.src, pair.dst):
            side.wait_for_status("postcopy-paused", fail_on=("failed", "completed", "active"))
        pair.recover("unix")
        pair.src.set_parameters({"max-postcopy-bandwidth": 0})
        pair.wait_for_completion()
        for side in (pair.src, pair.dst):
            assert_statuses_after(side, "postcopy-paused", forbidden={"failed", "active"})
        self.verify_migration()
