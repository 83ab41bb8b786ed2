"""The migrations tests run again and again, each in the order QEMU needs.

A precopy held back until RAM was synced twice, a postcopy switched to
after a full pass, a postcopy paused and recovered: the same steps for
every transport, capability and credential a test adds around them, so
they live here once and the tests say only what differs.
"""

from __future__ import annotations

from typing import Callable, Optional, Union

from .pair import MigrationPair
from .qapi import MigrationInfo
from .transport import Channel
from .verify import assert_statuses_after

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
    pair.src.wait_for_dirty_sync(2)
    pair.start_postcopy()
    pair.wait_for_switchover()
    return pair.wait_for_completion()


def postcopy_recovered(
    pair: MigrationPair,
    channel: Union[str, Channel],
    again: Union[str, Channel],
    pause: Optional[Callable[[], None]] = None,
) -> MigrationInfo:
    """Postcopy paused, recovered over ``again``, to completion.

    Paused, both sides must wait in ``postcopy-paused``: never failed (the
    guest would be lost), active or completed; and after it, neither may
    have gone back to ``active`` or failed.

    :param pause: what breaks the postcopy (a link cut by a proxy);
        ``migrate-pause`` on both sides if not given.
    """
    pair.require_commands("migrate-recover", *([] if pause else ["migrate-pause"]))
    pair.src.set_parameters({"max-postcopy-bandwidth": CRAWL})
    pair.prevent_convergence()
    pair.migrate(channel)
    pair.src.wait_for_dirty_sync(2)
    pair.start_postcopy()
    pair.wait_for_postcopy()
    (pause or pair.pause)()
    for side in (pair.src, pair.dst):
        side.wait_for_status("postcopy-paused", fail_on=("failed", "completed", "active"))
    pair.recover(again)
    pair.src.set_parameters({"max-postcopy-bandwidth": 0})
    final = pair.wait_for_completion()
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
