"""The one way this suite waits: poll a condition until a deadline.

Unbounded waits were the main source of hung migration CI upstream, so every
wait here has a deadline, and when it passes the error says what was awaited
and the last thing seen, instead of returning ``None`` or falling through to
an unrelated assertion.
"""

from __future__ import annotations

import time
from typing import Callable, Tuple, TypeVar

from .errors import WaitTimeout

T = TypeVar("T")

#: Default pause between two polls.  Migration states change in milliseconds;
#: polling more often only costs QMP round trips.
POLL_INTERVAL = 0.01


def wait_for(
    check: Callable[[], Tuple[bool, T]],
    *,
    what: str,
    timeout: float,
    interval: float = POLL_INTERVAL,
) -> T:
    """Call ``check`` until it reports success or ``timeout`` seconds pass.

    :param check: returns ``(done, seen)``; ``seen`` is what was observed,
        returned on success and reported on timeout.  A check may block for a
        short while itself (e.g. waiting for an event) and pass ``interval=0``.
    :param what: what is awaited, in words, for the timeout message.
    :param timeout: the deadline, in seconds from now.
    :param interval: pause between polls, in seconds.
    :return: the last ``seen`` value.
    :raise WaitTimeout: when the deadline passes first.
    """
    deadline = time.monotonic() + timeout
    while True:
        done, seen = check()
        if done:
            return seen
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise WaitTimeout(what, timeout, seen)
        if interval > 0:
            time.sleep(min(interval, remaining))
