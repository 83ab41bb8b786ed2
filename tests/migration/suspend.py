"""Migrating a guest that suspended itself to ACPI S3, then waking it."""

from migtest.pair import MigrationPair
from migtest.qapi import MigrationParameters
from migtest.test import MigrationTest
from migtest.verify import verify_suspended_migration

#: Precopy held back by bandwidth, not by the guest: a suspended guest
#: dirties nothing, but its 99 MiB of counter pages take ~100 s at 1 MB/s,
#: so the switch to postcopy comes first even on a slow, busy host.
#: Postcopy itself runs unlimited (max-postcopy-bandwidth 0).
SLOW_PRECOPY: MigrationParameters = {"downtime-limit": 1, "max-bandwidth": 1_000_000}


class Suspend(MigrationTest):
    """A suspended guest: migrated, it stays suspended; woken, it counts on.

    The guest (``guests/README``) suspends to S3 right after its first
    pass, so its counters are all equal while it sleeps.  After each
    migration the destination must be suspended, its RAM must equal the
    source's byte for byte, and ``system_wakeup`` must resume the guest
    where it stopped: it counts on, without booting again.

    Only x86_64 has a guest that suspends; elsewhere the tests CANCEL.
    Cancelled as well when the machine cannot wake a guest
    (``query-current-machine``).

    :avocado: enable
    :avocado: tags=migration,suspend,unix
    :avocado: tags=arch:x86_64
    """

    def start_suspended(self, *, dst_paused: bool) -> MigrationPair:
        """Both sides started with the suspending guest, which has suspended."""
        guest = self.suite.profile.require_suspending_guest()
        pair = self.start_pair(dst_paused=dst_paused, guest=guest)
        for side in (pair.src, pair.dst):
            side.require_wakeup_support()
        pair.src.wait_for_suspend()
        return pair

    def test_precopy_live(self) -> None:
        """Precopy of a guest left suspended: the destination ends suspended.

        The source is not stopped: it stays in run state 'suspended' while
        it migrates.  QEMU sends the run state along, and a destination
        started running must not run the guest but keep it suspended
        (QEMU 9.0, "migration: preserve suspended runstate").

        :avocado: tags=precopy
        """
        pair = self.start_suspended(dst_paused=False)
        pair.allow_convergence()
        pair.migrate("unix")
        pair.wait_for_completion()
        verify_suspended_migration(pair)

    def test_precopy_not_live(self) -> None:
        """Precopy of a suspended guest stopped first: ``cont`` makes it suspended again.

        ``stop`` pauses a suspended guest; QEMU remembers it was suspended
        and migrates that too, so the destination's ``cont`` returns it to
        'suspended', never to 'running' (QEMU 9.0).

        :avocado: tags=precopy
        """
        pair = self.start_suspended(dst_paused=True)
        pair.src.stop()
        pair.allow_convergence()
        pair.migrate("unix")
        pair.wait_for_completion()
        pair.dst.cont()
        verify_suspended_migration(pair)

    def test_postcopy(self) -> None:
        """Postcopy of a suspended guest: it completes, and the destination is suspended.

        A destination in postcopy would run the guest at once; a suspended
        one must stay suspended (QEMU 9.0), and its RAM, once complete,
        the source's byte for byte.
        Cancelled when the host does not allow userfaultfd.

        :avocado: tags=postcopy
        """
        pair = self.start_suspended(dst_paused=False)
        self.enable_postcopy()
        pair.src.set_parameters(SLOW_PRECOPY)
        pair.migrate("unix")
        pair.src.wait_for_status("active", fail_on=("completed", "failed"))
        pair.start_postcopy()
        pair.wait_for_completion()
        self.assertIn("postcopy-active", pair.src.status_history(), "never in postcopy")
        verify_suspended_migration(pair)
