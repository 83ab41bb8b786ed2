"""Postcopy migration, its preempt channel, and its recovery from broken channels."""

from migtest.pair import MigrationPair
from migtest.proxy import FaultyChannel
from migtest.qapi import Capability
from migtest.scenarios import (
    UNRECOVERABLE,
    postcopy,
    postcopy_into_paused,
    postcopy_paused,
    postcopy_recovered,
    postcopy_recovery_completes,
    recovery_stalled_in_handshake,
    wait_until_paused,
)
from migtest.test import MigrationTest
from migtest.transport import TcpChannel, refused_target


def start_paused_postcopy_pair(test: MigrationTest, *more: Capability) -> MigrationPair:
    """A pair whose destination starts paused (``-S``), with postcopy (and ``more``) enabled."""
    pair = test.start_pair()
    test.enable_postcopy(*more)
    return pair


class Postcopy(MigrationTest):
    """Postcopy: the destination runs before all of RAM has arrived.

    It starts as a precopy that cannot converge; after one full pass it
    switches to postcopy, and the destination guest runs while the rest of
    RAM is pulled on demand.  Because the destination runs during the
    migration, its RAM is compared with the stopped source's once it is
    stopped again: byte for byte but for the counter bytes its guest
    moved on.  A destination started paused stays paused in postcopy
    while the source pushes every page; it is then compared byte for
    byte, vCPUs included, before it runs.

    Cancelled when the host does not allow userfaultfd.

    :avocado: enable
    :avocado: tags=migration,seed,postcopy,unix
    :avocado: tags=arch:x86_64,arch:aarch64,arch:s390x,arch:ppc64,arch:riscv64
    """

    def test_postcopy(self) -> None:
        """Switch to postcopy after one pass; the destination reports its blocktime.

        :avocado: tags=qtest-7.2
        """
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

        :avocado: tags=qtest-7.2
        """
        self.start_postcopy_pair()
        postcopy_recovered(self.pair, "unix", "unix")
        self.verify_migration()

    def test_paused_destination(self) -> None:
        """Postcopy into a destination started paused: every page pushed, then compared.

        QEMU runs the destination's guest at the switch to postcopy only if
        it was started to run; this one stays paused in postcopy-active
        while the source pushes nearly all of RAM, never resumes, and is
        compared with the stopped source byte for byte, vCPUs included.
        """
        pair = start_paused_postcopy_pair(self)
        postcopy_into_paused(pair, "unix")
        self.verify_migration()

    def test_recovery_paused_destination(self) -> None:
        """Postcopy into a paused destination, paused and recovered: then compared byte for byte.

        A page lost or sent twice across the recovery shows in the RAM
        itself, not only in the guest's pattern.
        """
        pair = start_paused_postcopy_pair(self)
        postcopy_recovered(pair, "unix", "unix", resumed=False)
        self.verify_migration()


class PostcopyPreempt(MigrationTest):
    """Postcopy-preempt: the pages the destination faults on take a channel of their own.

    So a page the guest waits for does not queue behind the background
    stream.  A recovery must make both channels anew.

    :avocado: enable
    :avocado: tags=migration,postcopy,preempt,unix
    :avocado: tags=arch:x86_64,arch:aarch64,arch:s390x,arch:ppc64,arch:riscv64
    """

    def test_preempt(self) -> None:
        """Switch to postcopy-preempt after one pass, to completion.

        :avocado: tags=qtest-7.2
        """
        self.start_postcopy_pair("postcopy-preempt")
        postcopy(self.pair, "unix")
        self.verify_migration()

    def test_preempt_recovery(self) -> None:
        """Postcopy-preempt paused and recovered over new channels.

        :avocado: tags=qtest-7.2
        """
        self.start_postcopy_pair("postcopy-preempt")
        postcopy_recovered(self.pair, "unix", "unix")
        self.verify_migration()

    def test_preempt_paused_destination(self) -> None:
        """Postcopy-preempt into a destination started paused: then compared byte for byte.

        With no page faults, the preempt channel carries nothing urgent:
        every page comes by the background stream, and all must arrive.
        """
        pair = start_paused_postcopy_pair(self, "postcopy-preempt")
        postcopy_into_paused(pair, "unix")
        self.verify_migration()


class RecoveryFailures(MigrationTest):
    """A postcopy recovery that fails first: the next one must still complete.

    Once postcopy runs, neither side holds the whole guest, so QEMU
    promises that a failed recovery, however it fails, leaves both sides
    paused (never failed, never exited) and recoverable again.

    :avocado: enable
    :avocado: tags=migration,postcopy,recovery,unix,tcp
    :avocado: tags=arch:x86_64,arch:aarch64,arch:s390x,arch:ppc64,arch:riscv64
    """

    def test_refused_then_recovered(self) -> None:
        """A recovery whose connection is refused leaves both sides paused; the next completes.

        The destination listens; the source first dials an address that
        refuses.  QEMU promises the source stays recoverable: from the
        version that has the ``postcopy-recover-setup`` status on (9.1),
        it announces that status and then ``postcopy-paused`` again (what
        libvirt watches for), saying why; older ones stay paused and say
        nothing (no sign tells when their attempt ended, so the second one
        follows it at once).  The same listening destination then takes
        the source's second attempt.
        """
        pair = self.start_postcopy_pair()
        postcopy_paused(pair, "unix")
        channel = pair.listen_for_recovery("unix")
        mark = len(pair.src.status_history())
        with refused_target() as nobody:
            pair.src.resume(nobody)
            if "postcopy-recover-setup" in pair.src.known_statuses():
                pair.src.wait_for_announcements(
                    ["postcopy-recover-setup", "postcopy-paused"], since=mark
                )
                self.assertIn("refused", pair.src.info().get("error-desc", ""))
            else:  # nothing tells when the attempt ended: only that nothing changed
                self.assertEqual(pair.src.status_history()[mark:], [], "statuses announced")
        pair.src.wait_for_status("postcopy-paused", fail_on=UNRECOVERABLE)
        pair.resume_over(channel)
        postcopy_recovery_completes(pair)
        self.verify_migration()

    def test_broken_in_handshake(self) -> None:
        """A recovery whose link breaks mid-handshake: both sides pause again, the next completes.

        The new link carries the recovery's first bytes, so both sides are
        in ``postcopy-recover``, and then nothing: the handshake cannot end.
        When the link breaks, both must go back to ``postcopy-paused``.
        """
        pair = self.start_postcopy_pair()
        postcopy_paused(pair, "unix")
        link = recovery_stalled_in_handshake(pair)
        link.cut()
        wait_until_paused(pair)
        pair.recover("unix")
        postcopy_recovery_completes(pair)
        self.verify_migration()

    def test_silent_then_broken(self) -> None:
        """A recovery link that carries nothing, then breaks: both pause again, the next completes.

        The source connects (its status says ``postcopy-recover``) but not
        a byte reaches the destination before the link breaks: a network
        failing right after the connection was made.  Only the source is
        asked meanwhile.  Then the same promise as mid-handshake: both
        sides paused, the destination alive, and a recovery completes.
        """
        pair = self.start_postcopy_pair()
        postcopy_paused(pair, "unix")
        link = FaultyChannel(TcpChannel(), stalled_after=0)
        pair.recover(link)
        pair.src.wait_for_status("postcopy-recover", fail_on=UNRECOVERABLE)
        link.wait_until_linked()
        link.cut()
        wait_until_paused(pair)
        pair.recover("unix")
        postcopy_recovery_completes(pair)
        self.verify_migration()
