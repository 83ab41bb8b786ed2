"""README's grid of QEMU versions: each pair of versions, each architecture.

A cross-version job runs every test on every pair of QEMU versions; what a
reader wants from it is one table: for each source -> destination and
architecture, how many tests passed, how many ended on a known QEMU
finding (and which), how many FAILed for another reason, how many passed
where a finding said they could not (WARN), and how many did not apply
(any other CANCEL: a feature that version lacks, no userfaultfd...).  The table is reStructuredText,
written from the jobs' results, so README's grid is never typed by hand.

Several jobs may be given: a test and variant that ran in more than one
counts as the last job ran it (a rerun of some tests replaces their
results).
"""

from __future__ import annotations

import argparse
import re
import string
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from ..findings import FINDINGS
from ..versions import LABELS
from .jobpage import NotAJobDirectory, load_job, variant_params

#: How a CANCEL names the finding it hit (see MigrationTest.known_finding).
_FINDING = re.compile(r"^known QEMU finding (\S+) ")


@dataclass(frozen=True)
class Outcome:
    """One test on one pair of versions and one architecture."""

    test: str
    src: str
    dst: str
    arch: str
    #: ``pass``, ``WARN``, ``FAIL``, ``n/a`` (a CANCEL for something else: a
    #: feature that version lacks, no userfaultfd...), or the id of the
    #: finding it hit.
    verdict: str


def verdict(status: str, fail_reason: str) -> str:
    """What a test's status and reason say, as the grid counts it.

    A WARN is counted apart: it is how a finding that did not reproduce
    is flagged, and the grid is where that must show.
    """
    if status == "PASS":
        return "pass"
    if status == "WARN":
        return "WARN"
    if status == "CANCEL":
        found = _FINDING.match(fail_reason)
        return found.group(1) if found else "n/a"
    return "FAIL"


def outcomes(jobs: Sequence[Path]) -> List[Outcome]:
    """Every cross-version test of ``jobs``; a later job's run replaces an earlier one's."""
    latest: Dict[Tuple[str, str, str, str], Outcome] = {}
    for directory in jobs:
        job = load_job(directory)
        params = variant_params(directory)
        for run in job.runs:
            given = params.get(run.variant_id, params[None])
            src, dst = given.get("qemu_version_src"), given.get("qemu_version_dst")
            if not src or not dst or src == dst:
                continue
            outcome = Outcome(
                run.name, src, dst, given["arch"], verdict(run.status, run.fail_reason)
            )
            latest[(outcome.test, src, dst, outcome.arch)] = outcome
    return list(latest.values())


def _order(label: str) -> Tuple[int, str]:
    return (LABELS.index(label), label) if label in LABELS else (len(LABELS), label)


def render(results: Sequence[Outcome]) -> str:
    """The grid and its footnotes, as reStructuredText."""
    arches = sorted({o.arch for o in results})
    pairs = sorted({(o.src, o.dst) for o in results}, key=lambda p: (_order(p[0]), _order(p[1])))
    seen = sorted({o.verdict for o in results} - {"pass", "WARN", "FAIL", "n/a"})
    known = [f.id for f in FINDINGS]
    ids = sorted(seen, key=lambda i: (known.index(i) if i in known else len(known), i))
    letters = dict(zip(ids, string.ascii_lowercase))
    cells: Dict[Tuple[str, str, str], Counter[str]] = {}
    for o in results:
        cells.setdefault((o.src, o.dst, o.arch), Counter())[o.verdict] += 1
    rows = [["source -> destination", *arches]]
    for src, dst in pairs:
        rows.append(
            [f"{src} -> {dst}"] + [_cell(cells.get((src, dst, a)), letters) for a in arches]
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    rule = "  ".join("=" * w for w in widths)
    lines = [rule, _line(rows[0], widths), rule, *(_line(r, widths) for r in rows[1:]), rule]
    notes = [f"({letters[i]}) {_describe(i)}" for i in ids]
    return "\n".join(lines + (["", *notes] if notes else [])) + "\n"


def _cell(counts: Optional[Counter[str]], letters: Dict[str, str]) -> str:
    """``18 pass, 2 (a)``; ``FAIL`` counts first, so none goes unseen."""
    if not counts:
        return "-"
    parts = [f"{counts[v]} {v}" for v in ("FAIL", "WARN") if counts[v]]
    parts += [f"{counts['pass']} pass"] if counts["pass"] else []
    parts += [f"{n} ({letters[v]})" for v, n in sorted(counts.items()) if v in letters]
    parts += [f"{counts['n/a']} n/a"] if counts["n/a"] else []
    return ", ".join(parts)


def _line(row: Sequence[str], widths: Sequence[int]) -> str:
    return "  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip()


def _describe(finding_id: str) -> str:
    for finding in FINDINGS:
        if finding.id == finding_id:
            return f"``{finding.id}``: {finding.title} ({finding.kind})"
    return f"``{finding_id}``: not in lib/migtest/findings.py any more"


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Command line: ``migtest-versions-grid JOBDIR...``."""
    parser = argparse.ArgumentParser(
        prog="migtest-versions-grid",
        description="Print the grid of QEMU version pairs x architectures of cross-version "
        "jobs (reStructuredText): passes, known QEMU findings, FAILs and n/a per cell.",
    )
    parser.add_argument("jobdirs", type=Path, nargs="+", help="Avocado job results directories")
    args = parser.parse_args(argv)
    try:
        results = outcomes(args.jobdirs)
    except NotAJobDirectory as exc:
        parser.error(str(exc))
    if not results:
        parser.error("no test of these jobs ran across two QEMU versions")
    sys.stdout.write(render(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
