"""Postcopy migration, and its recovery from a broken channel."""

from migtest.scenarios import postcopy, postcopy_recovered
from migtest.test import MigrationTest


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
        """A running destination, postcopy enabled."""
        self.start_pair(dst_paused=False)
        self.enable_postcopy()

    def test_postcopy(self) -> None:
        """Switch to postcopy after one pass; the destination reports its blocktime."""
        self.start_postcopy_pair()
        self.pair.dst.set_capabilities({"postcopy-blocktime": True})
        postcopy(self.pair, "unix")
        self.assertIn(
            "postcopy-blocktime", self.pair.dst.info(), "destination reports no blocktime"
        )
        self.verify_migration()

    def test_recovery(self) -> None:
        """Pause postcopy, recover it over a new channel, and complete.

        Postcopy is throttled to 4 KiB/s so it cannot finish before the
        pause.  Paused, both sides must wait in postcopy-paused: never
        failed (the guest would be lost), active or completed.
        """
        self.start_postcopy_pair()
        postcopy_recovered(self.pair, "unix", "unix")
        self.verify_migration()
