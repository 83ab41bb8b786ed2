"""The one wait: it returns what it saw, and says what it waited for when it gives up."""

from __future__ import annotations

import time
from typing import Iterator

import pytest

from migtest.errors import WaitTimeout
from migtest.wait import limit_all_waits, wait_for


@pytest.fixture(autouse=True)
def no_limit() -> Iterator[None]:
    yield
    limit_all_waits(None)


def test_returns_what_the_check_saw() -> None:
    calls = iter([(False, 1), (False, 2), (True, 3)])
    assert wait_for(lambda: next(calls), what="three calls", timeout=5, interval=0) == 3


def test_timeout_names_the_wait_and_the_last_thing_seen() -> None:
    with pytest.raises(WaitTimeout, match=r"after 0.05 s waiting for godot; last seen: 'nobody'"):
        wait_for(lambda: (False, "nobody"), what="godot", timeout=0.05)


def test_limit_cuts_a_longer_wait_short_and_says_why() -> None:
    limit_all_waits(0.1, "the test's time is up")
    started = time.monotonic()
    with pytest.raises(
        WaitTimeout, match=r"\(cut short: the test's time is up\) waiting for godot"
    ):
        wait_for(lambda: (False, None), what="godot", timeout=60)
    assert time.monotonic() - started < 5


def test_inner_wait_cut_short_is_reported_as_the_outer_one() -> None:
    # A check whose own bounded wait (a QMP round trip) meets the limit.
    def check() -> tuple[bool, str]:
        wait_for(lambda: (False, None), what="a QMP answer", timeout=30)
        return False, "never"

    limit_all_waits(0.1, "out of time")
    with pytest.raises(WaitTimeout, match="waiting for the migration to end") as timeout:
        wait_for(check, what="the migration to end", timeout=60)
    assert timeout.value.cut_short == "out of time"


def test_shorter_waits_keep_their_own_timeout_under_a_limit() -> None:
    limit_all_waits(60, "far away")
    with pytest.raises(WaitTimeout) as timeout:
        wait_for(lambda: (False, None), what="godot", timeout=0.05)
    assert timeout.value.cut_short == ""


def test_lifted_limit_cuts_nothing() -> None:
    limit_all_waits(0.0, "gone")
    limit_all_waits(None)
    assert wait_for(lambda: (True, "here"), what="anything", timeout=1) == "here"
