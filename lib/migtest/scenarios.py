"""The migrations tests run again and again, each in the order QEMU needs.

A precopy held back until RAM was synced twice, a postcopy switched to
after a full pass, a postcopy paused and recovered: the same steps for
every transport, capability and credential a test adds around them, so
they live here once and the tests say only what differs.
"""

from __future__ import annotations

from typing import Callable, Optional, Tuple, Union

from .checks import check_pushed_to_paused
from .pair import MigrationPair
from .proxy import FaultyChannel
from .qapi import MigrationInfo
from .status import Status
from .transport import Channel, TcpChannel
from .verify import assert_never_resumed, assert_statuses_after

#: The statuses a postcopy may not reach while paused or recovering: a
#: failed side loses the guest, and neither can have it all yet.
UNRECOVERABLE: Tuple[Status, ...] = ("failed", "completed", "active")

#: Bytes of a recovery's stream let through before its link stalls (see
#: :func:`recovery_stalled_in_handshake`).
HANDSHAKE_START = 16

#: postcopy's bandwidth while it is to be paused: slow enough that it cannot
#: finish first (a page a second).
CRAWL = 4096


def live_precopy(pair: MigrationPair, channel: Union[str, Channel]) -> MigrationInfo:
    """Migrate live, held back until RAM was synced twice, then converging.

    Two syncs prove that pages the guest dirtied during the copy were
    found and sent again.

    :return: the source's final statistics.
    """
    pair.prevent_convergence()
    pair.migrate(channel)
    pair.src.wait_for_dirty_sync(2)
    pair.allow_convergence()
    return pair.wait_for_completion()


def postcopy(pair: MigrationPair, channel: Union[str, Channel]) -> MigrationInfo:
    """Precopy that cannot converge, then postcopy after a full pass, to completion.

    The pair must have postcopy enabled and a running destination.
    """
    pair.prevent_convergence()
    pair.migrate(channel)
    pair.src.wait_for_full_pass()
    pair.start_postcopy()
    pair.wait_for_switchover()
    return pair.wait_for_completion()


def postcopy_recovered(
    pair: MigrationPair,
    channel: Union[str, Channel],
    again: Union[str, Channel],
    pause: Optional[Callable[[], None]] = None,
    *,
    resumed: bool = True,
) -> MigrationInfo:
    """Postcopy paused, recovered over ``again``, to completion.

    :param pause: what breaks the postcopy (a link cut by a proxy);
        ``migrate-pause`` on both sides if not given.
    :param resumed: ``False`` for a destination started paused: it must
        never resume (see :func:`postcopy_into_paused`).
    """
    postcopy_paused(pair, channel, pause, resumed=resumed)
    pair.recover(again)
    final = postcopy_recovery_completes(pair)
    if not resumed:
        assert_never_resumed(pair.dst)
        check_pushed_to_paused(final["ram"])
    return final


def postcopy_crawling(
    pair: MigrationPair, channel: Union[str, Channel], *, resumed: bool = True
) -> None:
    """Postcopy under way, held in ``postcopy-active`` by a crawling bandwidth.

    Postcopy pulls a page a second meanwhile, so it cannot finish before
    the test is done with it; :func:`postcopy_completes` lets it run.

    :param resumed: ``False`` for a destination started paused, which
        must stay paused (see :func:`postcopy_into_paused`).
    """
    pair.src.set_parameters({"max-postcopy-bandwidth": CRAWL})
    pair.prevent_convergence()
    pair.migrate(channel)
    pair.src.wait_for_full_pass()
    pair.start_postcopy()
    pair.wait_for_postcopy(resumed=resumed)


def postcopy_into_paused(pair: MigrationPair, channel: Union[str, Channel]) -> MigrationInfo:
    """Postcopy into a destination started paused: every page pushed, none asked for.

    QEMU starts the destination's guest at the switch to postcopy only if
    it was started to run (autostart, in ``loadvm_postcopy_handle_run_bh()``,
    migration/savevm.c); started with ``-S`` it stays paused in
    ``postcopy-active`` while the source pushes the rest of RAM (nearly
    all of it: the guest dirties every page of its range each pass), and
    after.  It must never have resumed, so that its RAM and vCPUs can then
    be compared with the stopped source's; it asked for no page, and pages
    were pushed.
    """
    postcopy_crawling(pair, channel, resumed=False)
    final = postcopy_completes(pair)
    assert_never_resumed(pair.dst)
    check_pushed_to_paused(final["ram"])
    return final


def postcopy_completes(pair: MigrationPair) -> MigrationInfo:
    """A crawling postcopy at full speed again, to completion."""
    pair.src.set_parameters({"max-postcopy-bandwidth": 0})
    return pair.wait_for_completion()


def postcopy_paused(
    pair: MigrationPair,
    channel: Union[str, Channel],
    pause: Optional[Callable[[], None]] = None,
    *,
    resumed: bool = True,
) -> None:
    """Postcopy under way, then broken by ``pause``: both sides wait, paused.

    Paused, both sides must wait in ``postcopy-paused``: never failed (the
    guest would be lost), active or completed.

    :param resumed: see :func:`postcopy_crawling`.
    """
    pair.require_commands("migrate-recover", *([] if pause else ["migrate-pause"]))
    postcopy_crawling(pair, channel, resumed=resumed)
    (pause or pair.pause)()
    wait_until_paused(pair)


def recovery_stalled_in_handshake(pair: MigrationPair) -> FaultyChannel:
    """A paused postcopy's recovery whose link stalls once it started: both sides recovering.

    The link carries the recovery's first bytes, so that the destination
    has taken the connection for what it is (from 10.1 it reads ahead a
    channel's first bytes to tell), and then nothing: the handshake
    cannot end.

    :return: the link, to be cut.
    """
    link = FaultyChannel(TcpChannel(), stalled_after=HANDSHAKE_START)
    pair.recover(link)
    pair.wait_for_both("postcopy-recover", fail_on=UNRECOVERABLE)
    return link


def wait_until_paused(pair: MigrationPair) -> None:
    """Both sides wait in ``postcopy-paused``, neither failed, active nor completed."""
    pair.wait_for_both("postcopy-paused", fail_on=UNRECOVERABLE)


def postcopy_recovery_completes(pair: MigrationPair) -> MigrationInfo:
    """Once a recovery is under way: postcopy at full speed, to completion.

    After the first pause, neither side may have gone back to ``active``
    or failed.
    """
    final = postcopy_completes(pair)
    for side in (pair.src, pair.dst):
        assert_statuses_after(side, "postcopy-paused", forbidden={"failed", "active"})
    return final


def migrate_again(pair: MigrationPair) -> MigrationInfo:
    """After a migration that did not complete: a live one to a fresh destination.

    What QEMU promises after a cancel or a failure: the source can try
    again, and the new migration is as good as a first one.
    """
    pair.replace_destination()
    return live_precopy(pair, "unix")
