"""Well-formed streams with wrong page data: QEMU takes them, our checks must not.

A proxy follows the live precopy stream record by record and changes the
data of one or two pages, leaving every header one QEMU could have
written (:mod:`migtest.stream.tamper`).  QEMU has no way to notice: the
migration completes.  The suite must: its byte-for-byte comparison with
the stopped source fails, naming the changed bytes.
"""

from typing import Callable, Tuple

from migtest.arch import ArchProfile
from migtest.errors import CheckFailure, Unavailable
from migtest.proxy import FaultyChannel
from migtest.scenarios import live_precopy
from migtest.stream.regions import counter_pages, page_range, untouched_pages
from migtest.stream.tamper import (
    OneByteChanged,
    PageFault,
    PageRange,
    StalePageResent,
    TwoPagesSwapped,
    ZeroPageAsData,
    check_failure_names,
    require_survived,
)
from migtest.test import MigrationTest
from migtest.transport import make_channel


class StreamTampering(MigrationTest):
    """Page data changed in a live precopy stream: completed, and caught.

    Each test starts a live precopy through a tampering proxy, held back
    until RAM was synced twice, then converging; the destination starts
    paused.  It asserts that QEMU took the stream (both sides completed),
    that the proxy made its change and that no later copy of the page
    replaced it, and that verifying the migration fails naming the
    changed bytes with the source's value and the destination's.

    Faults strike in the last RAM section, which the source sends once
    it has stopped (the guest's final pages: nothing can overwrite them),
    or on a page the guest never writes, which is sent once.  The tests
    spread over the transports a proxy can stand in front of: unix, tcp
    and fd (the bytes are the same; the destination's end differs).
    Where pages leave the stream the proxy reads (multifd), it changes
    nothing and says so.

    :avocado: enable
    :avocado: tags=migration,faults,tampering
    :avocado: tags=arch:x86_64,arch:aarch64,arch:s390x,arch:ppc64,arch:riscv64
    """

    def test_one_byte_of_one_page(self) -> None:
        """A byte the guest never writes, in the middle of a counter page, flipped.

        :avocado: tags=unix
        """
        self.start_pair()
        self.assert_caught(OneByteChanged(self.pages(counter_pages)), "unix")

    def test_two_pages_swapped(self) -> None:
        """Two counter pages sent one after the other, counters differing, contents exchanged.

        :avocado: tags=tcp
        """
        self.start_pair()
        self.assert_caught(TwoPagesSwapped(self.pages(counter_pages)), "tcp")

    def test_zero_page_sent_as_data(self) -> None:
        """A page the guest never writes, sent as a zero page, arrives as a page of text.

        :avocado: tags=fd
        """
        self.start_pair()
        self.assert_caught(ZeroPageAsData(self.pages(untouched_pages)), "fd")

    def test_page_sent_twice_later_copy_stale(self) -> None:
        """A counter page sent twice in the last section: right, then as an earlier pass had it.

        :avocado: tags=unix
        """
        self.start_pair()
        self.assert_caught(StalePageResent(self.pages(counter_pages)), "unix")

    def test_pages_over_multifd_pass_untouched(self) -> None:
        """Multifd: the pages leave the main stream for channels the proxy cannot rewrite.

        The proxy passes every byte of every connection on unchanged and
        says the fault does not apply: the migration completes and verifies.

        :avocado: tags=tcp,multifd
        """
        pair = self.start_pair()
        pair.set_capabilities({"multifd": True})
        pair.set_parameters({"multifd-channels": 2})
        fault = OneByteChanged(self.pages(counter_pages))
        link = FaultyChannel(make_channel(self.transport("tcp")), tamper=fault)
        live_precopy(pair, link)
        self.verify_migration()
        with self.assertRaisesRegex(Unavailable, "not applicable: pages were sent over multifd"):
            link.tampered()

    def pages(self, which: Callable[[ArchProfile], Tuple[int, int]]) -> PageRange:
        """The RAM block and offsets of guest memory ``which`` picks, as the source maps them."""
        start, end = which(self.pair.profile)
        return page_range(self.pair.src.hmp("info mtree -f"), start, end)

    def transport(self, name: str) -> str:
        """The transport a test runs over: ``name``, unless a subclass says otherwise."""
        return name

    def assert_caught(self, fault: PageFault, transport: str) -> None:
        """Migrate through a proxy making ``fault``; the checks must fail, naming its change."""
        link = FaultyChannel(make_channel(self.transport(transport)), tamper=fault)
        live_precopy(self.pair, link)
        changes = link.tampered()
        for change in changes:
            self.log.info("the proxy changed %s", change.describe())
        require_survived(changes)
        try:
            self.verify_migration()
        except CheckFailure as caught:
            self.log.info("caught: %s", caught)
            check_failure_names(str(caught), changes)
        else:
            self.fail(
                f"{fault.name}: the migration passed every check with {len(changes)} "
                "wrong page(s) on the destination"
            )
