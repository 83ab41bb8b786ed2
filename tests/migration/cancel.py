"""``migrate_cancel`` in each status a source can be in, and what QEMU promises after it."""

from typing import Dict

from migtest.errors import QMPError
from migtest.scenarios import (
    live_precopy,
    migrate_again,
    postcopy_completes,
    postcopy_crawling,
    postcopy_paused,
    postcopy_recovery_completes,
    recovery_stalled_in_handshake,
    wait_until_paused,
)
from migtest.status import Status
from migtest.test import MigrationTest
from migtest.transport import refused_target

#: The statuses a test below cancels the source in.
CANCELLED_IN: Dict[str, str] = {
    "none": "test_before_migrating",
    "active": "test_while_active",
    "pre-switchover": "test_at_pre_switchover",
    "completed": "test_after_completion",
    "failed": "test_after_failure",
    "cancelled": "test_twice",
    "postcopy-active": "test_in_postcopy",
    "postcopy-paused": "test_in_postcopy_paused",
    "postcopy-recover": "test_in_postcopy_recovery",
}
#: The statuses no test holds a source in, and why.
NOT_HELD: Dict[str, str] = {
    "setup": "lasts only until the channel connects",
    "cancelling": "passes by while QEMU handles the cancel",
    "failing": "passes by on the way to failed (QEMU 11.0 on)",
    "device": "lasts only while the device state is sent, after pre-switchover",
    "wait-unplug": "needs a failover network device to unplug",
    "colo": "needs a QEMU built with replication and a COLO secondary",
    "postcopy-recover-setup": "lasts only until a recovery's channel connects",
    "postcopy-device": "passes by while the device state is sent at the switch to postcopy",
}


class Cancel(MigrationTest):
    """Cancel a migration in each status the source can be held in.

    QEMU promises that a cancel leaves the source's guest running and able
    to migrate again; that it is a no-op where there is nothing to cancel
    (before any migration, after one completed, failed or was cancelled);
    that it is refused once postcopy started (the destination has run the
    guest: the source cannot take it back), the migration going on to
    complete; and every status it can report is either cancelled in here or listed
    with the reason it is not (:data:`NOT_HELD`), asked of the QEMU under
    test, so a status a new version adds cannot go unnoticed.

    :avocado: enable
    :avocado: tags=migration,cancel,unix
    :avocado: tags=arch:x86_64,arch:aarch64,arch:s390x,arch:ppc64,arch:riscv64
    """

    def test_every_status_is_accounted_for(self) -> None:
        """Each status of the QEMU under test is cancelled in, or said why not."""
        known = self.start_pair().src.known_statuses()
        missing = sorted(known - set(CANCELLED_IN) - set(NOT_HELD))
        self.assertFalse(missing, f"statuses no cancel test accounts for: {missing}")

    def cancel_running_migration(self) -> None:
        """Cancel the migration under way: it ends cancelled, the guest runs on."""
        pair = self.pair
        pair.src.cancel()
        pair.src.wait_for_cancelled()
        self.assert_guest_runs(pair.src.machine)

    def test_before_migrating(self) -> None:
        """Nothing to cancel: a no-op, and a migration then completes."""
        pair = self.start_pair()
        pair.src.cancel()
        self.assertEqual(pair.src.info().get("status", "none"), "none")
        live_precopy(pair, "unix")
        self.verify_migration()

    def test_while_active(self) -> None:
        """Cancelled while RAM is being copied."""
        pair = self.start_pair()
        pair.prevent_convergence()
        pair.migrate("unix")
        pair.src.wait_for_dirty_sync(1)
        self.cancel_running_migration()
        migrate_again(self.pair)
        self.verify_migration()

    def test_at_pre_switchover(self) -> None:
        """Cancelled while held before the switchover: the guest was never stopped."""
        pair = self.start_pair()
        pair.src.set_capabilities({"pause-before-switchover": True})
        pair.allow_convergence()
        pair.migrate("unix")
        pair.src.wait_for_status("pre-switchover", fail_on=("completed", "failed"))
        self.cancel_running_migration()
        pair.src.set_capabilities({"pause-before-switchover": False})
        migrate_again(self.pair)
        self.verify_migration()

    def test_twice(self) -> None:
        """A second cancel, once cancelled, changes nothing."""
        pair = self.start_pair()
        pair.prevent_convergence()
        pair.migrate("unix")
        pair.src.wait_for_dirty_sync(1)
        self.cancel_running_migration()
        pair.src.cancel()
        self.assertEqual(pair.src.info()["status"], "cancelled")
        migrate_again(self.pair)
        self.verify_migration()

    def test_after_completion(self) -> None:
        """Once completed there is nothing to cancel: the destination keeps the guest."""
        pair = self.start_pair()
        live_precopy(pair, "unix")
        pair.src.cancel()
        self.assertEqual(pair.src.info()["status"], "completed")
        self.verify_migration()

    def test_after_failure(self) -> None:
        """Once failed there is nothing to cancel; a new migration completes."""
        pair = self.start_pair()
        with refused_target() as nobody:
            pair.src.migrate(nobody)
            pair.src.wait_for_status("failed", fail_on=("completed", "cancelled"))
        pair.src.cancel()
        self.assertEqual(pair.src.info()["status"], "failed")
        self.assert_guest_runs(pair.src.machine)
        live_precopy(pair, "unix")
        self.verify_migration()

    def assert_cancel_refused(self, status: Status) -> None:
        """``migrate_cancel`` in ``status``, a postcopy one, is refused and changes nothing.

        Accepted, it would leave the guest nowhere whole: the destination
        has run it, and the source holds RAM the destination lacks.
        """
        pair = self.pair
        try:
            pair.src.cancel()
        except QMPError as refused:
            self.log.info("migrate_cancel refused in %s: %s", status, refused.desc)
        else:  # each side's account: the destination may not have survived it
            raise pair.failure(f"migrate_cancel was accepted in {status}", "QEMU took it")
        for side in (pair.src, pair.dst):
            self.assertEqual(side.info().get("status"), status, f"{side.name} after the cancel")

    def test_in_postcopy(self) -> None:
        """Refused in postcopy-active; the postcopy then completes."""
        self.start_postcopy_pair()
        postcopy_crawling(self.pair, "unix")
        self.assert_cancel_refused("postcopy-active")
        postcopy_completes(self.pair)
        self.verify_migration()

    def test_in_postcopy_paused(self) -> None:
        """Refused in postcopy-paused; a recovery then completes the migration."""
        self.start_postcopy_pair()
        postcopy_paused(self.pair, "unix")
        self.assert_cancel_refused("postcopy-paused")
        self.pair.recover("unix")
        postcopy_recovery_completes(self.pair)
        self.verify_migration()

    def test_in_postcopy_recovery(self) -> None:
        """Refused while a recovery is under way; once its link breaks, another completes."""
        self.start_postcopy_pair()
        postcopy_paused(self.pair, "unix")
        link = recovery_stalled_in_handshake(self.pair)
        self.assert_cancel_refused("postcopy-recover")
        link.cut()
        wait_until_paused(self.pair)
        self.pair.recover("unix")
        postcopy_recovery_completes(self.pair)
        self.verify_migration()
