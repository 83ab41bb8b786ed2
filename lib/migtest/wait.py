"""The one way this suite waits: poll a condition until a deadline.

Unbounded waits were the main source of hung migration CI upstream, so every
wait here has a deadline, and when it passes the error says what was awaited
and the last thing seen, instead of returning ``None`` or falling through to
an unrelated assertion.
"""

from __future__ import annotations

import time
from typing import Callable, Optional, Tuple, TypeVar

from .errors import WaitTimeout

T = TypeVar("T")

#: Default pause between two polls.  Migration states change in milliseconds;
#: polling more often only costs QMP round trips.
POLL_INTERVAL = 0.01

#: The moment (``time.monotonic()``) past which no wait may last, and why.
_limit: Optional[Tuple[float, str]] = None


def limit_all_waits(seconds: Optional[float], reason: str = "") -> None:
    """Cut every later wait short ``seconds`` from now; ``None`` lifts the limit.

    A test has a timeout of its own, and waits that are each bounded can
    still add up past it; the test is then interrupted mid-wait, and nobody
    says what it was waiting for.  Capped at what is left of the test's
    time, the wait ends first, in a :class:`WaitTimeout` that says so.

    :param reason: why waits end there, for the timeout message.
    """
    global _limit
    _limit = None if seconds is None else (time.monotonic() + seconds, reason)


def bounded(timeout: float) -> Tuple[float, str]:
    """``timeout``, shortened to the limit of :func:`limit_all_waits`.

    :return: the seconds a wait starting now may take, and the reason it
        was shortened (empty when it was not).
    """
    if _limit is not None:
        left = _limit[0] - time.monotonic()
        if left < timeout:
            return max(left, 0.0), _limit[1]
    return timeout, ""


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
    :raise WaitTimeout: when the deadline, or the limit of
        :func:`limit_all_waits`, passes first.
    """
    timeout, cut_short = bounded(timeout)
    deadline = time.monotonic() + timeout
    seen: object = None
    while True:
        try:
            done, seen = check()
        except WaitTimeout as inner:
            if not inner.cut_short:
                raise
            # The check's own QMP round trip met the limit first: the wait
            # that ran out of time is this one.
            raise WaitTimeout(what, timeout, seen, inner.cut_short) from inner
        if done:
            return seen
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise WaitTimeout(what, timeout, seen, cut_short)
        if interval > 0:
            time.sleep(min(interval, remaining))
