"""The pause the guest felt against QEMU's downtime, over Avocado jobs.

For every test of the jobs given that wrote a ``migration.json``, one row:
QEMU's ``downtime`` (the source's ``query-migrate``), the pause the guest
felt (``guest_felt_downtime``, from its console's B's, with its
uncertainty: :mod:`migtest.downtime`), the same pause by QEMU's own events
(the source's STOP to the destination's RESUME), and the part of it after
the source completed (the destination's tail); or why the felt pause was
not measured.  Then, per kind of migration, how the figures compare:
medians of the differences, and how many runs felt more than QEMU's
figure beyond their uncertainty.

The kind comes from the data: ``postcopy`` when the source went through
``postcopy-active``; ``precopy, stream loaded after`` when the destination
began loading only once the source had completed (a file, ``exec:``);
``precopy`` otherwise.  A run whose QEMU downtime cannot be right is
flagged, and left out of the comparison: longer than the whole migration,
or, in postcopy, the time from the stop to the end of the migration
(QEMU took a 0 ms switchover for a downtime not measured yet).

Usage::

    python -m migtest.report.downtime JOB_DIR... [--rows]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence

from .jobpage import NotAJobDirectory, load_job

#: Milliseconds within which QEMU's downtime counts as the stop-to-completion
#: span: QEMU counts whole milliseconds, the events microseconds.
SAME_MS = 1.5


@dataclass(frozen=True)
class Row:
    """One test run's figures, in milliseconds (None: not there)."""

    test: str
    variant: str
    kind: str
    qemu: Optional[float]
    felt: Optional[float]
    uncertainty: Optional[float]
    stop_to_resume: Optional[float]
    tail: Optional[float]
    blocktime: Optional[float]
    not_measured: str = ""
    flag: str = ""


def kind_of(metrics: Mapping[str, Any]) -> str:
    """What kind of migration the data shows (see the module's docstring)."""
    sides = metrics.get("sides") or {}
    src, dst = sides.get("src") or {}, sides.get("dst") or {}
    if any(p.get("status") == "postcopy-active" for p in src.get("phases") or ()):
        return "postcopy"
    src_done = _phase_time(src, "completed")
    dst_loading = _phase_time(dst, "active")
    if src_done is not None and dst_loading is not None and dst_loading >= src_done:
        return "precopy, stream loaded after"
    return "precopy"


def _phase_time(side: Mapping[str, Any], status: str) -> Optional[float]:
    """When ``side`` first reached ``status``, wall clock, if recorded."""
    start = side.get("start")
    for phase in side.get("phases") or ():
        if phase.get("status") == status and start is not None:
            return float(start) + float(phase["t"])
    return None


def impossible(kind: str, final: Mapping[str, Any], felt: Mapping[str, Any]) -> str:
    """Why QEMU's downtime cannot be right, or ``""``.

    :param final: the source's final ``query-migrate`` answer.
    :param felt: the run's ``guest_felt_downtime``.
    """
    qemu, total = final.get("downtime"), final.get("total-time")
    if qemu is None:
        return ""
    if total is not None and qemu > total:
        return "QEMU's downtime is longer than the whole migration"
    # In postcopy the source completes once it has sent the rest of RAM,
    # long after the switchover its downtime is about.
    completed = felt.get("src_completed_ms")
    if kind == "postcopy" and completed is not None and abs(qemu - completed) <= SAME_MS:
        return "QEMU's downtime is the stop to the end of postcopy"
    return ""


def row_of(name: str, variant: str, metrics: Mapping[str, Any]) -> Row:
    """The row of one run's ``migration.json``."""
    sides = metrics.get("sides") or {}
    final = (sides.get("src") or {}).get("final") or {}
    felt = metrics.get("guest_felt_downtime") or {}
    kind = kind_of(metrics)
    return Row(
        test=name,
        variant=variant,
        kind=kind,
        qemu=final.get("downtime"),
        felt=felt.get("felt_ms"),
        uncertainty=felt.get("uncertainty_ms"),
        stop_to_resume=felt.get("stop_to_resume_ms"),
        tail=felt.get("dst_tail_ms"),
        blocktime=((sides.get("dst") or {}).get("final") or {}).get("postcopy-blocktime"),
        not_measured=str(felt.get("not_measured") or ("no record" if not felt else "")),
        flag=impossible(kind, final, felt),
    )


def compare(rows: Sequence[Row]) -> Dict[str, Dict[str, Any]]:
    """Per kind: how many runs, and how felt pause, events and QEMU's figure compare.

    Flagged runs (QEMU's figure cannot be right) are counted apart and
    left out of the differences.
    """
    kinds: Dict[str, Dict[str, Any]] = {}
    for kind in dict.fromkeys(r.kind for r in rows):
        mine = [r for r in rows if r.kind == kind]
        # (felt, uncertainty, QEMU, events) of the runs that have the first three
        good = [
            (r.felt, r.uncertainty or 0.0, r.qemu, r.stop_to_resume)
            for r in mine
            if r.felt is not None and r.qemu is not None and not r.flag
        ]
        kinds[kind] = {
            "runs": len(mine),
            "measured": len(good),
            "not_measured": sum(1 for r in mine if r.felt is None),
            "flagged": sum(1 for r in mine if r.flag),
            "qemu_median": _median([q for _, _, q, _ in good]),
            "felt_median": _median([f for f, _, _, _ in good]),
            "uncertainty_median": _median([u for _, u, _, _ in good]),
            "felt_minus_qemu_median": _median([f - q for f, _, q, _ in good]),
            "events_minus_qemu_median": _median([e - q for _, _, q, e in good if e is not None]),
            "felt_minus_events_median": _median([f - e for f, _, _, e in good if e is not None]),
            "felt_more_beyond_uncertainty": sum(1 for f, u, q, _ in good if f - q > u),
            "felt_less_beyond_uncertainty": sum(1 for f, u, q, _ in good if q - f > u),
        }
    return kinds


def _median(values: Sequence[float]) -> Optional[float]:
    return round(statistics.median(values), 1) if values else None


def rows_of_jobs(directories: Sequence[Path]) -> List[Row]:
    """Every run of the jobs that wrote a ``migration.json``.

    :raise NotAJobDirectory: a directory is not an Avocado job's results.
    """
    rows = []
    for directory in directories:
        job = load_job(directory)
        for run in job.runs:
            if run.metrics:
                rows.append(row_of(run.name.rsplit(":", 1)[-1], variant(run.metrics), run.metrics))
    return rows


def variant(metrics: Mapping[str, Any]) -> str:
    """What the run ran on, from its own record: ``x86_64 / tcg / QEMU 7.2.22``."""
    versions = metrics.get("qemu") or {}
    src, dst = versions.get("src", "?"), versions.get("dst", "?")
    qemu = src if src == dst else f"{src} → {dst}"
    return f"{metrics.get('arch', '?')} / {metrics.get('accel', '?')} / QEMU {qemu}"


def _fmt(value: Optional[float], unit: str = "") -> str:
    return "-" if value is None else f"{value:.1f}{unit}"


def rows_text(rows: Sequence[Row]) -> List[str]:
    """A table of every run."""
    lines = [f"{'test':40} {'variant':30} {'kind':8} {'QEMU':>7} {'felt':>8} {'±':>6} "
             f"{'events':>7} {'tail':>6} {'block':>6}"]  # fmt: skip
    for r in rows:
        figures = " ".join(
            f"{_fmt(v):>{w}}"
            for v, w in ((r.qemu, 7), (r.felt, 8), (r.uncertainty, 6), (r.stop_to_resume, 7),
                         (r.tail, 6), (r.blocktime, 6))
        )  # fmt: skip
        note = f"  not measured: {r.not_measured}" if r.not_measured else ""
        note += f"  FLAG: {r.flag}" if r.flag else ""
        lines.append(f"{r.test[:40]:40} {r.variant[:30]:30} {r.kind[:8]:8} {figures}{note}")
    return lines


def comparison_text(kinds: Mapping[str, Mapping[str, Any]]) -> List[str]:
    """The comparison, a paragraph per kind."""
    lines = []
    for kind, c in kinds.items():
        lines.append(f"{kind}: {c['runs']} runs, {c['measured']} compared, "
                     f"{c['not_measured']} not measured, "
                     f"{c['flagged']} with an impossible QEMU downtime")  # fmt: skip
        if c["measured"]:
            lines += [
                f"  medians: QEMU downtime {_fmt(c['qemu_median'], ' ms')}, guest felt "
                f"{_fmt(c['felt_median'], ' ms')} (uncertainty {_fmt(c['uncertainty_median'])})",
                f"  felt - QEMU: median {_fmt(c['felt_minus_qemu_median'], ' ms')}; felt more "
                f"beyond its uncertainty in {c['felt_more_beyond_uncertainty']}, less in "
                f"{c['felt_less_beyond_uncertainty']}, of {c['measured']}",
                f"  events (STOP to RESUME) - QEMU: median "
                f"{_fmt(c['events_minus_qemu_median'], ' ms')}; felt - events: median "
                f"{_fmt(c['felt_minus_events_median'], ' ms')}",
            ]
    return lines


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Print the comparison of the jobs on the command line; 2 if one is not a job."""
    parser = argparse.ArgumentParser(
        prog="python -m migtest.report.downtime",
        description="The pause the guest felt against QEMU's downtime, over Avocado jobs.",
    )
    parser.add_argument("jobs", nargs="+", type=Path, help="Avocado job results directories")
    parser.add_argument("--rows", action="store_true", help="print every run, not only totals")
    args = parser.parse_args(argv)
    try:
        rows = rows_of_jobs(args.jobs)
    except NotAJobDirectory as exc:
        print(f"migtest.report.downtime: {exc}", file=sys.stderr)
        return 2
    print("\n".join([*(rows_text(rows) if args.rows else []), *comparison_text(compare(rows))]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
