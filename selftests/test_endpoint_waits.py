"""An Endpoint's waits on ``query-migrate``, on answers written here."""

from __future__ import annotations

from typing import Any, Dict, Iterator, List

import pytest

from migtest.endpoint import Endpoint
from migtest.errors import MigtestError


class Answers:
    """Answers ``query-migrate`` with the next of ``answers`` (the last one for good)."""

    name = "src"
    binary = "/nowhere/qemu-system-s390x"

    def __init__(self, answers: List[Dict[str, Any]]) -> None:
        self._answers: Iterator[Dict[str, Any]] = iter(answers)
        self._last = answers[-1]

    def cmd(self, command: str, **arguments: Any) -> Any:
        assert command == "query-migrate", command
        self._last = next(self._answers, self._last)
        return self._last

    def events(self, name: str) -> List[Any]:
        return []


def at(status: str, synced: int) -> Dict[str, Any]:
    return {"status": status, "ram": {"dirty-sync-count": synced}}


def test_a_sync_count_reached_at_the_switchover_counts() -> None:
    """A compressed stream may converge at its second sync: that sync still counts."""
    side = Endpoint(Answers([at("active", 1), at("device", 2)]))  # type: ignore[arg-type]
    assert side.wait_for_dirty_sync(2, timeout=5) == 2


def test_a_switchover_before_the_count_ends_the_wait() -> None:
    side = Endpoint(Answers([at("active", 1), at("device", 1)]))  # type: ignore[arg-type]
    with pytest.raises(MigtestError, match=r"reached 'device' before dirty sync 2 \(at 1\)"):
        side.wait_for_dirty_sync(2, timeout=5)


class Announcing(Answers):
    """Announces the MIGRATION events ``statuses``, one more at each look."""

    def __init__(self, statuses: List[str]) -> None:
        super().__init__([at("postcopy-paused", 2)])
        self._statuses = statuses
        self._shown = 0

    def events(self, name: str) -> List[Any]:
        assert name == "MIGRATION", name
        self._shown = min(self._shown + 1, len(self._statuses))
        return [{"data": {"status": s}} for s in self._statuses[: self._shown]]


def test_announcements_after_a_mark_are_awaited_in_order() -> None:
    side = Endpoint(  # type: ignore[arg-type]
        Announcing(["postcopy-paused", "postcopy-recover-setup", "postcopy-paused"])
    )
    side.wait_for_announcements(["postcopy-recover-setup", "postcopy-paused"], since=1, timeout=5)


def test_other_announcements_time_out_saying_what_came() -> None:
    side = Endpoint(Announcing(["postcopy-paused", "postcopy-recover"]))  # type: ignore[arg-type]
    with pytest.raises(MigtestError, match=r"announce .*last seen: \['postcopy-recover'\]"):
        side.wait_for_announcements(
            ["postcopy-recover-setup", "postcopy-paused"], since=1, timeout=0.2
        )
