"""Well-formed streams with wrong page data: QEMU takes them, our checks must not.

A proxy follows the live stream record by record and changes the data of
one or two pages, leaving every header one QEMU could have written
(:mod:`migtest.stream.tamper`).  QEMU has no way to notice: the
migration completes.  The suite must: its byte-for-byte comparison with
the stopped source fails, naming the changed bytes -- in precopy
(:class:`StreamTampering`) and after the switch to postcopy
(:class:`PostcopyTampering`).
"""

import copy
import logging
from typing import Callable, List, Tuple

from migtest.arch import ArchProfile
from migtest.checks import check_pushed_to_paused
from migtest.errors import CheckFailure, Unavailable
from migtest.pair import MigrationPair
from migtest.proxy import FaultyChannel
from migtest.qapi import MigrationInfo
from migtest.scenarios import CRAWL, live_precopy, postcopy_completes
from migtest.stream.regions import counter_pages, page_range, untouched_pages
from migtest.stream.tamper import (
    Change,
    NothingToStrike,
    OneByteChanged,
    PageFault,
    PageRange,
    StalePageInstead,
    StalePageResent,
    TwoPagesSwapped,
    ZeroPageAsData,
    check_failure_names,
    check_failure_points_at,
    require_survived,
)
from migtest.test import MigrationTest
from migtest.transport import Channel, make_channel
from migtest.verify import assert_never_resumed

#: The guest's page, where its counters are (the guest contract's unit).
GUEST_PAGE = 4096


def pages_of(pair: MigrationPair, which: Callable[[ArchProfile], Tuple[int, int]]) -> PageRange:
    """The RAM block and offsets of guest memory ``which`` picks, as the source maps them."""
    start, end = which(pair.profile)
    return page_range(pair.src.hmp("info mtree -f"), start, end)


def tampered(link: FaultyChannel, log: logging.Logger) -> List[Change]:
    """What the proxy changed, logged; each change must have stayed on the destination."""
    changes = link.tampered()
    for change in changes:
        log.info("the proxy changed %s", change.describe())
    require_survived(changes)
    return changes


def postcopy_switched(
    pair: MigrationPair, channel: Channel, *, at_once: bool, resumed: bool
) -> MigrationInfo:
    """Postcopy switched to after a full pass and a sync, or at once: to completion.

    Postcopy crawls (a page a second) until both sides are in it, so the
    switch can be seen before the migration ends, then runs at full speed.

    :param at_once: switch as soon as the migration runs, with precopy
        crawling too: the pages the guest never writes, above its test
        range, are then pushed after the switch (switched to later, they
        went in precopy).  Else after a full precopy pass and a dirty sync
        after it: the counter pages are sent again after the switch, with
        other counters than that pass sent.
    :param resumed: ``False`` for a destination started paused: it must
        never resume, and get pages pushed; switched to after a full pass,
        it must ask for none.  Switched to at once it may ask for some:
        loading the device state reads guest RAM precopy had not sent
        (x86_64: 1 to 3 pages in 8 of 10 migrations measured; the other architectures none).
    """
    pair.src.set_parameters({"max-postcopy-bandwidth": CRAWL})
    pair.prevent_convergence()
    if at_once:
        pair.src.set_parameters({"max-bandwidth": CRAWL})
    pair.migrate(channel)
    if not at_once:
        pair.src.wait_for_full_pass()
        pair.src.wait_for_dirty_sync(pair.src.wait_for_dirty_sync(1) + 1)
    pair.start_postcopy()
    pair.wait_for_postcopy(resumed=resumed)
    final = postcopy_completes(pair)
    if not resumed:
        assert_never_resumed(pair.dst)
        if at_once:
            ram = final["ram"]
            logging.getLogger(__name__).info(
                "postcopy-requests %s, postcopy-bytes %s",
                ram["postcopy-requests"],
                ram["postcopy-bytes"],
            )
        else:
            check_pushed_to_paused(final["ram"])
    return final


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
        return pages_of(self.pair, which)

    def transport(self, name: str) -> str:
        """The transport a test runs over: ``name``, unless a subclass says otherwise."""
        return name

    def assert_caught(self, fault: PageFault, transport: str) -> None:
        """Migrate through a proxy making ``fault``; the checks must fail, naming its change.

        A guest that stopped between two passes can leave a fault nothing
        to change (two pages to swap that differ): then that migration,
        which the proxy left as it was, must verify like any other, and
        the source runs on and migrates again, to a new destination, once.
        """
        unspent = copy.deepcopy(fault)
        try:
            changes = self.migrate_tampered(fault, transport)
        except NothingToStrike as exc:
            self.log.info("%s: verified as it came, the source runs on and migrates again", exc)
            self.verify_migration()
            self.pair.replace_destination()  # first: the old one holds the disk's write lock
            self.pair.src.cont()
            changes = self.migrate_tampered(unspent, transport)
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

    def migrate_tampered(self, fault: PageFault, transport: str) -> List[Change]:
        """Live precopy through a proxy making ``fault``: what it changed."""
        link = FaultyChannel(make_channel(self.transport(transport)), tamper=fault)
        live_precopy(self.pair, link)
        return tampered(link, self.log)


class PostcopyTampering(MigrationTest):
    """Page data changed after the switch to postcopy: completed, and caught.

    After the switch the source has stopped and sends each page once --
    pushed in the background, or asked for by a destination that runs --
    so a page changed there stays changed.  The proxy follows the stream
    across the switch (the device state comes packaged, the return path
    passes the other way untouched) and changes one page after it.

    Into a destination started paused, which stays paused through
    postcopy, all of RAM is compared with the stopped source: the failure
    must name the changed bytes.  Into a running destination, whose guest
    ran on meanwhile, RAM outside the test range is compared byte for
    byte, and inside it the guest contract is checked (counters in step,
    every other byte zero): the failure must name the changed bytes, or
    for a stale counter page (which the guest moved on) a byte of that
    page or the next.

    Cancelled when the host does not allow userfaultfd.

    :avocado: enable
    :avocado: tags=migration,faults,tampering,postcopy,unix
    :avocado: tags=arch:x86_64,arch:aarch64,arch:s390x,arch:ppc64,arch:riscv64
    """

    def test_one_byte_into_paused_destination(self) -> None:
        """A counter page pushed after the switch, a byte in its middle flipped: RAM compared."""
        pair = self.start_pair()
        self.enable_postcopy()
        fault = OneByteChanged(pages_of(pair, counter_pages), postcopy=True)
        link = self.link(fault)
        postcopy_switched(pair, link, at_once=False, resumed=False)
        self.assert_caught(fault, tampered(link, self.log), exact=True)

    def test_zero_page_into_paused_destination(self) -> None:
        """A page above the test range, zero, pushed after the switch as a page of text."""
        pair = self.start_pair()
        self.enable_postcopy()
        fault = ZeroPageAsData(pages_of(pair, untouched_pages), postcopy=True)
        link = self.link(fault)
        postcopy_switched(pair, link, at_once=True, resumed=False)
        self.assert_caught(fault, tampered(link, self.log), exact=True)

    def test_stale_page_into_paused_destination(self) -> None:
        """A counter page pushed after the switch as an earlier precopy pass sent it."""
        pair = self.start_pair()
        self.enable_postcopy()
        fault = StalePageInstead(pages_of(pair, counter_pages))
        link = self.link(fault)
        postcopy_switched(pair, link, at_once=False, resumed=False)
        self.assert_caught(fault, tampered(link, self.log), exact=True)

    def test_one_byte_inside_test_range_running(self) -> None:
        """A running destination: a byte flipped in a counter page; the zero-byte check must see it.

        The guest writes only the first byte of each page, so the flipped
        byte stays as the proxy left it.
        """
        pair = self.start_postcopy_pair()
        fault = OneByteChanged(pages_of(pair, counter_pages), postcopy=True)
        link = self.link(fault)
        postcopy_switched(pair, link, at_once=False, resumed=True)
        self.assert_caught(fault, tampered(link, self.log), exact=True)

    def test_zero_page_outside_test_range_running(self) -> None:
        """A running destination: a zero page above the test range arrives as text."""
        pair = self.start_postcopy_pair()
        fault = ZeroPageAsData(pages_of(pair, untouched_pages), postcopy=True)
        link = self.link(fault)
        postcopy_switched(pair, link, at_once=True, resumed=True)
        self.assert_caught(fault, tampered(link, self.log), exact=True)

    def test_stale_page_inside_test_range_running(self) -> None:
        """A running destination: a counter page as an earlier pass sent it; the counter check.

        The guest adds one to each counter where it stands, so the stale
        page stays out of step with its neighbours however far it ran.
        """
        pair = self.start_postcopy_pair()
        fault = StalePageInstead(pages_of(pair, counter_pages))
        link = self.link(fault)
        postcopy_switched(pair, link, at_once=False, resumed=True)
        self.assert_caught(fault, tampered(link, self.log), exact=False)

    def link(self, fault: PageFault) -> FaultyChannel:
        """A unix channel through a proxy making ``fault``."""
        return FaultyChannel(make_channel("unix"), tamper=fault)

    def assert_caught(self, fault: PageFault, changes: List[Change], *, exact: bool) -> None:
        """Verifying the migration must fail, naming the change.

        :param exact: the failure names each changed byte with the
            source's value and the destination's; else (a counter the guest
            moved on since) a byte of the changed page or the next.
        """
        try:
            self.verify_migration()
        except CheckFailure as caught:
            self.log.info("caught: %s", caught)
            if exact:
                check_failure_names(str(caught), changes)
            else:
                check_failure_points_at(str(caught), changes, GUEST_PAGE)
        else:
            self.fail(
                f"{fault.describe()}: the migration passed every check with {len(changes)} "
                "wrong page(s) on the destination"
            )
