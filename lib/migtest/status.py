"""The statuses of a migration, spelled as QMP spells them.

Tests name statuses the way ``query-migrate`` and the MIGRATION event report
them (QEMU's ``MigrationStatus``, qapi/migration.json).  Where the suite
asks for one, it is typed :data:`Status`, so a misspelt status is a type
error rather than a wait that runs into its timeout.  Statuses read from QEMU stay
plain strings: a newer QEMU may report one this list does not know.
"""

from __future__ import annotations

from typing import Literal, Tuple

Status = Literal[
    "none", "setup", "cancelling", "cancelled", "active",
    "postcopy-active", "postcopy-paused", "postcopy-recover",
    "completed", "failed", "colo", "pre-switchover", "device", "wait-unplug",
    "postcopy-recover-setup",  # 9.1
    "postcopy-device",  # 10.2
    "failing",  # 11.0
]  # fmt: skip

#: Where a migration that did not succeed has ended.
UNSUCCESSFUL: Tuple[Status, ...] = ("failed", "cancelled")
#: Where the source has begun the switchover (with pause-before-switchover).
SWITCHING_OVER: Tuple[Status, ...] = ("pre-switchover", "device", "completed")
