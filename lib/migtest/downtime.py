"""The pause the guest felt across a switchover, by its own console.

QEMU reports a ``downtime`` (``query-migrate``), counted on the source
from just before it stops the guest to when it has sent the last of the
migration (precopy, without a return path) or the device state (postcopy).
What the guest feels ends later, when it runs again on the destination:
after the destination has read the rest of the stream, loaded it and
started.  The guest prints ``B`` after every pass over its range
(guests/README), each stamped as it arrives (:mod:`migtest.console`):
the longest gap between them across the switchover, less the pass the
guest did in it, is the pause it felt.  QEMU's events give the same pause
from QEMU's side (the source's STOP to the destination's RESUME), to
explain the difference.
"""

from __future__ import annotations

from dataclasses import dataclass
from statistics import median
from typing import TYPE_CHECKING, Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from .metrics import event_time

if TYPE_CHECKING:  # only its type: the report reads this without the QMP client
    from .machine import QEMUMachine

#: What the guest prints after each full pass over its range (guests/README).
PASS_MARK = b"B"
#: Intervals between B's, on each side of the switchover, that tell
#: how long a pass took there.
REFERENCE_PASSES = 16
#: Intervals before the migration started that show the steady state.
STEADY_PASSES = 64
#: Seconds of B's before the migration and after the resume that
#: ``migration.json`` keeps for the plot (before the stop, all of them).
KEPT_AROUND = 0.5
#: Most B's kept on each side for the plot.
KEPT_MAX = 4000
#: Seconds either side of the switchover searched for the longest gap.
GAP_WINDOW = 2.0


@dataclass(frozen=True)
class Switchover:
    """What a felt pause is measured from: wall-clock seconds of this host.

    The ``B`` arrivals are the kernel's stamps of the console socket
    (:mod:`migtest.console`), the other moments QEMU's event timestamps:
    both ``CLOCK_REALTIME``, so they compare directly.
    """

    #: When each ``B`` of the source and of the destination arrived.
    src_b: Sequence[float]
    dst_b: Sequence[float]
    #: The source's first MIGRATION event: its B's before it are the
    #: guest's steady state.
    src_migrating: Optional[float] = None
    #: The source's STOP of the switchover, and its MIGRATION ``completed``.
    src_stop: Optional[float] = None
    src_completed: Optional[float] = None
    #: The destination's first RESUME after that stop, and its ``completed``:
    #: where a destination started without ``-S`` resumes.
    dst_resume: Optional[float] = None
    dst_completed: Optional[float] = None
    #: When the destination's console stopped being read.
    dst_console_end: Optional[float] = None
    #: Whether the destination went through ``postcopy-active``.
    dst_postcopy: bool = False
    #: Why the events show no switchover to measure; empty when they do.
    not_measurable: str = ""


def switchover_from_events(
    src_events: Sequence[Mapping[str, Any]],
    dst_events: Sequence[Mapping[str, Any]],
    src_b: Sequence[float],
    dst_b: Sequence[float],
    dst_console_end: Optional[float] = None,
) -> Switchover:
    """The switchover of the source's migration, from both sides' QMP events.

    The switchover's stop is the source's first STOP once it migrates; a
    source stopped already when it started migrating (a migration that is
    not live) leaves nothing to measure: that pause is the test's.

    :param src_events: every event of the source, oldest first, as
        :meth:`~migtest.machine.QEMUMachine.events` keeps them.
    :param dst_events: the same of the destination the guest went to.
    """
    migrating = _first(src_events, "MIGRATION")
    if migrating is None:
        return Switchover(src_b, dst_b, not_measurable="the source never migrated")
    runs = [event_time(e) for e in src_events if e.get("event") in ("STOP", "RESUME")]
    states = [e["event"] for e in src_events if e.get("event") in ("STOP", "RESUME")]
    before = [s for t, s in zip(runs, states) if t < migrating]
    if before and before[-1] == "STOP":
        return Switchover(
            src_b, dst_b, src_migrating=migrating,
            not_measurable="the source was stopped before it migrated (not live): "
            "the pause the guest felt is the test's",
        )  # fmt: skip
    stop = _first(src_events, "STOP", after=migrating)
    resume = _first(dst_events, "RESUME", after=stop) if stop is not None else None
    reason = ""
    if stop is None:
        reason = "the source never stopped for a switchover"
    elif resume is None:
        reason = "the guest never resumed on the destination"
    return Switchover(
        src_b,
        dst_b,
        src_migrating=migrating,
        src_stop=stop,
        src_completed=_first(src_events, "MIGRATION", after=migrating, status="completed"),
        dst_resume=resume,
        dst_completed=_first(dst_events, "MIGRATION", status="completed"),
        dst_console_end=dst_console_end,
        dst_postcopy=_first(dst_events, "MIGRATION", status="postcopy-active") is not None,
        not_measurable=reason,
    )


def _first(
    events: Sequence[Mapping[str, Any]],
    name: str,
    *,
    after: Optional[float] = None,
    status: Optional[str] = None,
) -> Optional[float]:
    """The time of the first event ``name`` (at or after ``after``, of ``status``)."""
    for event in events:
        if event.get("event") != name:
            continue
        if status is not None and (event.get("data") or {}).get("status") != status:
            continue
        t = event_time(event)
        if after is None or t >= after:
            return t
    return None


def felt_downtime_of(
    src: QEMUMachine, dst: QEMUMachine, final: Mapping[str, Any]
) -> Dict[str, Any]:
    """The pause the guest felt, for ``migration.json``, next to QEMU's downtime.

    :param src: the source, and ``dst`` the destination the guest went to,
        both done with (their consoles read to the end).
    :param final: the source's final ``query-migrate`` answer.
    :return: ``guest_felt_downtime_ms`` (only when measured: a number, not
        below 0, the figure a report shows) and ``guest_felt_downtime``,
        what :func:`felt_downtime` found, with QEMU's ``downtime``.
    """
    if src.console is None or dst.console is None:
        unstamped = src.name if src.console is None else dst.name
        detail: Dict[str, Any] = {
            "not_measured": f"the console of {unstamped} was not timestamped "
            "(a QEMU another one exec'd into)"
        }
    else:
        switchover = switchover_from_events(
            src.events(),
            dst.events(),
            src.console.arrivals(PASS_MARK),
            dst.console.arrivals(PASS_MARK),
            dst.console.closed_at,
        )
        detail = felt_downtime(switchover)
    if "downtime" in final:
        detail["qemu_downtime_ms"] = final["downtime"]
    report: Dict[str, Any] = {"guest_felt_downtime": detail}
    if "felt_ms" in detail:
        # No pause is negative: an estimate below zero (a pause shorter
        # than its uncertainty) shows as 0; felt_ms keeps it, for averages.
        report = {"guest_felt_downtime_ms": max(0.0, detail["felt_ms"]), **report}
    return report


def felt_downtime(s: Switchover) -> Dict[str, Any]:
    """How long the guest did not run across the switchover, by its own B's.

    Between the source's last ``B`` before its stop and the destination's
    first ``B`` after its resume, the guest did one pass's work (the rest
    of the pass it was in, on the source, then its end on the destination)
    and was paused for the rest: the felt pause is that gap less one pass,
    and less the time the test held a ``-S`` destination paused after it
    had loaded (from its ``completed`` to the RESUME of the test's
    ``cont``), which a destination started running would not have had.
    A pass is the median of the intervals next to the gap on each side,
    their mean; the uncertainty is half their difference (how much of the
    gap's pass ran on which side is unknown) plus the spread of the
    intervals (a robust standard deviation).  A destination that printed
    one ``B`` only (the test stops it soon) is taken to keep the pace the
    source had before it migrated: neither tracks dirty pages.

    :return: ``felt_ms`` and how it was reached, in milliseconds; or
        ``not_measured``, saying why, and no number.
    """
    if s.not_measurable:
        return {"not_measured": s.not_measurable}
    assert s.src_stop is not None and s.dst_resume is not None  # what not_measurable says
    held = 0.0
    if s.dst_completed is not None and s.dst_completed <= s.dst_resume:
        held = s.dst_resume - s.dst_completed
    moments = _qemu_moments(s, held)
    if s.dst_postcopy and held:
        return {
            "not_measured": "the test held the destination paused through postcopy "
            "(started with -S): the pause the guest felt is the test's",
            **moments,
        }
    last_src = max((t for t in s.src_b if t <= s.src_stop), default=None)
    first_dst = min((t for t in s.dst_b if t >= s.dst_resume), default=None)
    if last_src is None:
        return {"not_measured": "no 'B' from the source before it stopped", **moments}
    if first_dst is None:
        end = s.dst_console_end
        within = f"{end - s.dst_resume:.1f} s of its resume" if end else "its recording"
        return {"not_measured": f"no 'B' from the destination within {within}", **moments}
    paces = _paces(s, last_src, first_dst)
    if isinstance(paces, str):
        return {"not_measured": paces, **moments}
    pass_src, pass_dst, spread, dst_pace = paces
    gap = first_dst - last_src
    one_pass = (pass_src + pass_dst) / 2
    return {
        "felt_ms": _ms(gap - held - one_pass),
        "uncertainty_ms": _ms(abs(pass_src - pass_dst) / 2 + spread),
        "gap_ms": _ms(gap),
        "held_by_test_ms": _ms(held),
        "pass_ms": _ms(one_pass),
        "pass_src_ms": _ms(pass_src),
        "pass_dst_ms": _ms(pass_dst),
        "pass_dst_from": dst_pace,
        "spread_ms": _ms(spread),
        # The gap's parts the events tell apart: each should be under a pass.
        "before_stop_ms": _ms(s.src_stop - last_src),
        "after_resume_ms": _ms(first_dst - s.dst_resume),
        "longest_gap_ms": _ms(_longest_gap(s, held)),
        **moments,
        "steady_pass_ms": _steady(s),
        **_kept_marks(s, last_src, first_dst),
    }


def _paces(
    s: Switchover, last_src: float, first_dst: float
) -> Union[Tuple[float, float, float, str], str]:
    """How long a pass took next to the gap on each side, their spread, and
    where the destination's came from; or why that cannot be told."""
    src_passes = _intervals([t for t in s.src_b if t <= last_src])[-REFERENCE_PASSES:]
    settled = max(first_dst, s.dst_completed or first_dst)  # postcopy: once all RAM is there
    dst_passes = _intervals([t for t in s.dst_b if t >= settled])[:REFERENCE_PASSES]
    dst_pace = "the destination"
    if not dst_passes:
        dst_passes = _steady_passes(s)
        dst_pace = "the source before it migrated"
    if not src_passes or not dst_passes:
        start = s.src_migrating if s.src_migrating is not None else float("inf")
        counts = (
            sum(1 for t in s.src_b if t <= last_src),
            sum(1 for t in s.src_b if t < start),
            sum(1 for t in s.dst_b if t >= settled),
        )
        return (
            "too few 'B's to tell how long a pass takes: {} from the source before it stopped "
            "({} before it migrated), {} from the destination once it had all its RAM"
        ).format(*counts)
    spread = max(_robust_sd(src_passes), _robust_sd(dst_passes))
    return median(src_passes), median(dst_passes), spread, dst_pace


def _qemu_moments(s: Switchover, held: float) -> Dict[str, Any]:
    """What QEMU's own events say of the same pause, in ms from the source's stop.

    ``stop_to_resume_ms`` is the pause by the events alone; ``dst_tail_ms``
    the part after the source completed (the destination reading the
    rest of the stream, loading and starting), which QEMU's downtime on
    the source does not include, when the source completed first (in
    postcopy it completes last).
    """
    assert s.src_stop is not None and s.dst_resume is not None
    origin = s.src_stop
    resumed = s.dst_resume - held
    moments: Dict[str, Any] = {
        "origin": origin,
        "stop_to_resume_ms": _ms(resumed - origin),
        "dst_resume_ms": _ms(s.dst_resume - origin),
    }
    if s.src_completed is not None:
        moments["src_completed_ms"] = _ms(s.src_completed - origin)
        if s.src_completed <= resumed:  # not postcopy, where the source completes last
            moments["dst_tail_ms"] = _ms(resumed - s.src_completed)
    if s.dst_completed is not None:
        moments["dst_completed_ms"] = _ms(s.dst_completed - origin)
    return moments


def _kept_marks(s: Switchover, last_src: float, first_dst: float) -> Dict[str, Any]:
    """The B's the plot marks, in ms from the source's stop."""
    assert s.src_stop is not None and s.dst_resume is not None
    origin = s.src_stop
    since = (s.src_migrating or origin) - KEPT_AROUND
    until = s.dst_resume + KEPT_AROUND
    return {
        "last_src_b_ms": _ms(last_src - origin),
        "first_dst_b_ms": _ms(first_dst - origin),
        "b_src_ms": [_ms(t - origin) for t in s.src_b if since <= t <= origin][-KEPT_MAX:],
        "b_dst_ms": [_ms(t - origin) for t in s.dst_b if s.dst_resume <= t <= until][:KEPT_MAX],
    }


def _longest_gap(s: Switchover, held: float) -> float:
    """The longest interval between B's around the switchover, the hold taken out."""
    assert s.src_stop is not None and s.dst_resume is not None
    before = [t for t in s.src_b if s.src_stop - GAP_WINDOW <= t <= s.src_stop]
    after = [t - held for t in s.dst_b if s.dst_resume <= t <= s.dst_resume + GAP_WINDOW]
    return max(_intervals(before + after), default=0.0)


def _steady_passes(s: Switchover) -> List[float]:
    """The source's last intervals between B's before it started migrating."""
    start = s.src_migrating if s.src_migrating is not None else float("inf")
    return _intervals([t for t in s.src_b if t < start])[-STEADY_PASSES:]


def _steady(s: Switchover) -> Dict[str, Any]:
    """How regular the passes were before the migration: the measurement's precision."""
    passes = _steady_passes(s)
    if not passes:
        return {"n": 0}
    ordered = sorted(passes)
    return {
        "n": len(passes),
        "median": _ms(median(passes)),
        "p10": _ms(ordered[int(0.1 * (len(ordered) - 1))]),
        "p90": _ms(ordered[int(0.9 * (len(ordered) - 1))]),
        "sd": _ms(_robust_sd(passes)),
    }


def _intervals(times: Sequence[float]) -> List[float]:
    return [b - a for a, b in zip(times, times[1:])]


def _robust_sd(values: Sequence[float]) -> float:
    """A standard deviation that one stalled pass does not inflate (1.4826 MAD)."""
    middle = median(values)
    return 1.4826 * median([abs(v - middle) for v in values])


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 2)
