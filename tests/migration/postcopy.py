"""Postcopy migration, its preempt channel, and its recovery from broken channels."""

from typing import List, Tuple

from migtest.proxy import FaultyChannel
from migtest.qapi import Capability
from migtest.scenarios import (
    UNRECOVERABLE,
    postcopy,
    postcopy_paused,
    postcopy_recovered,
    postcopy_recovery_completes,
    recovery_stalled_in_handshake,
    wait_until_paused,
)
from migtest.test import MigrationTest
from migtest.transport import TcpChannel, refused_target
from migtest.wait import wait_for

#: Seconds a refused recovery may take to be given up.
REFUSAL_TIMEOUT = 30.0


class Postcopy(MigrationTest):
    """Postcopy: the destination runs before all of RAM has arrived.

    It starts as a precopy that cannot converge; after one full pass it
    switches to postcopy, and the destination guest runs while the rest of
    RAM is pulled on demand.  Because the destination runs during the
    migration, RAM cannot be compared byte for byte: the guest's own
    pattern is checked instead.

    Once postcopy runs, neither side holds the whole guest: QEMU promises
    that a broken channel pauses both sides (never fails them) and that a
    recovery, however many attempts it takes, completes the migration.

    Cancelled when the host does not allow userfaultfd.

    :avocado: enable
    :avocado: tags=migration,seed,postcopy,unix
    :avocado: tags=arch:x86_64,arch:aarch64,arch:s390x,arch:ppc64
    """

    def start_postcopy_pair(self, *more: Capability) -> None:
        """A running destination, postcopy (and ``more``) enabled."""
        self.start_pair(dst_paused=False)
        self.enable_postcopy(*more)

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

    def test_preempt(self) -> None:
        """Postcopy-preempt: the pages the destination faults on take a channel of their own."""
        self.start_postcopy_pair("postcopy-preempt")
        postcopy(self.pair, "unix")
        self.verify_migration()

    def test_preempt_recovery(self) -> None:
        """Postcopy-preempt paused and recovered: both its channels are made anew."""
        self.start_postcopy_pair("postcopy-preempt")
        postcopy_recovered(self.pair, "unix", "unix")
        self.verify_migration()

    def test_recovery_refused_then_recovered(self) -> None:
        """A recovery whose connection is refused leaves both sides paused; the next completes.

        The destination listens; the source first dials an address that
        refuses.  QEMU promises the source stays recoverable: from the
        version that has the ``postcopy-recover-setup`` status on, it
        announces that status and then ``postcopy-paused`` again (what
        libvirt watches for), saying why; older ones stay paused and say
        nothing.  The same listening destination then takes the source's
        second attempt.
        """
        self.start_postcopy_pair()
        pair = self.pair
        postcopy_paused(pair, "unix")
        channel = pair.listen_for_recovery("unix")
        mark = len(pair.src.status_history())
        with refused_target() as nobody:
            pair.src.resume(nobody)
            if "postcopy-recover-setup" in pair.src.known_statuses():
                self.wait_for_statuses_since(mark, ["postcopy-recover-setup", "postcopy-paused"])
                self.assertIn("refused", pair.src.info().get("error-desc", ""))
        pair.src.wait_for_status("postcopy-paused", fail_on=UNRECOVERABLE)
        pair.resume_over(channel)
        postcopy_recovery_completes(pair)
        self.verify_migration()

    def test_recovery_broken_in_handshake(self) -> None:
        """A recovery whose link breaks mid-handshake: both sides pause again, the next completes.

        The new link carries the recovery's first bytes, so both sides are
        in ``postcopy-recover``, and then nothing: the handshake cannot end.
        When the link breaks, both must go back to ``postcopy-paused``
        (never fail or exit: neither holds the whole guest).
        """
        self.start_postcopy_pair()
        pair = self.pair
        postcopy_paused(pair, "unix")
        link = recovery_stalled_in_handshake(pair)
        link.cut()
        wait_until_paused(pair)
        pair.recover("unix")
        postcopy_recovery_completes(pair)
        self.verify_migration()

    def test_recovery_silent_then_broken(self) -> None:
        """A recovery link that carries nothing, then breaks: both pause again, the next completes.

        The source connects (its status says ``postcopy-recover``) but not
        a byte reaches the destination before the link breaks: a network
        failing right after the connection was made.  Only the source is
        asked meanwhile.  Then the same promise as mid-handshake: both
        sides paused, the destination alive, and a recovery completes.
        """
        self.start_postcopy_pair()
        pair = self.pair
        postcopy_paused(pair, "unix")
        link = FaultyChannel(TcpChannel(), stalled_after=0)
        pair.recover(link)
        pair.src.wait_for_status("postcopy-recover", fail_on=UNRECOVERABLE)
        link.cut()
        wait_until_paused(pair)
        pair.recover("unix")
        postcopy_recovery_completes(pair)
        self.verify_migration()

    def wait_for_statuses_since(self, mark: int, expected: List[str]) -> None:
        """The source's MIGRATION events after the first ``mark`` are ``expected``."""
        src = self.pair.src

        def check() -> Tuple[bool, List[str]]:
            since = src.status_history()[mark:]
            return since == expected, since

        wait_for(check, what=f"{src.name} to announce {expected}", timeout=REFUSAL_TIMEOUT)
