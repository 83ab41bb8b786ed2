"""``migtest-report``: one HTML page of the migration tests of Avocado jobs.

Avocado's own reports list tests one by one; across the architecture matrix
the question is rather "which test fails where".  The page answers it with
a grid, one row per test and one column per architecture, each cell giving
the status of every run of the test there, QEMU's total time and downtime
(and the downtime the guest felt, where the test measured it), and links to
the run's timeline plot, ``debug.log`` and QMP trace.  Given several jobs
(from several hosts, CI jobs, QEMU versions or reruns), it merges them into
one grid whose runs say which job, host, QEMU and accelerator they came
from (:mod:`migtest.report.matrix`)::

    migtest-report ~/avocado/job-results/latest
    migtest-report host-a/job-* host-b/job-* -o merged/report.html

It reads only what the jobs left on disk (:mod:`migtest.report.jobdata`),
so it works on any finished job, copied or not.  The page is self-contained
(inline CSS, no script) and links to the jobs' files by paths relative to
itself, only to files inside the jobs (:mod:`migtest.report.links`): the
page and the jobs copied together elsewhere keep every link working.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from ..artifacts import METRICS_FILE, REPORT_FILE
from .jobdata import Job, NotAJobDirectory, TestRun, load_job, variant_params
from .links import Linker
from .matrix import render_page
from .timeline import render_timeline_svg

# What other modules read jobs with: versions_grid, scripts/versions-matrix.
__all__ = [
    "Job",
    "NotAJobDirectory",
    "SameJobTwice",
    "TestRun",
    "load_job",
    "load_jobs",
    "main",
    "variant_params",
    "write_plots",
    "write_report",
]

LOG = logging.getLogger(__name__)


class SameJobTwice(NotAJobDirectory):
    """Two of the directories given hold the same job: its runs would count twice."""


def load_jobs(directories: Sequence[Path]) -> List[Job]:
    """Read every job directory given, each once.

    :raise NotAJobDirectory: one of them is not a job (the message names it).
    :raise SameJobTwice: two name the same directory, or hold the same job
        (a copy of it).
    """
    jobs: List[Job] = []
    seen: Dict[str, Path] = {}
    for directory in directories:
        job = load_job(directory)
        for key in (f"directory {directory.resolve()}", f"job {job.job_id}"):
            if key in seen:
                raise SameJobTwice(
                    f"{seen[key]} and {directory} are the same {key.split()[0]} "
                    f"({job.job_id[:12]}): give each job once"
                )
            seen[key] = directory
        jobs.append(job)
    return jobs


def write_plots(job: Job) -> List[Path]:
    """Draw the timeline of every test that has metrics and no plot yet.

    A job whose directory cannot be written to (a read-only copy) is shown
    without the plots it lacks.

    :return: the plots written.
    """
    written = []
    for run in job.runs:
        if run.metrics and not run.plot.exists():
            try:
                svg = render_timeline_svg(run.metrics)
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                LOG.warning("%s: no plot, its %s is malformed: %r", run.name, METRICS_FILE, exc)
                continue
            try:
                run.plot.write_text(svg, encoding="utf-8")
            except OSError as exc:
                LOG.warning("%s: no plot, cannot write %s: %s", run.name, run.plot, exc)
                continue
            written.append(run.plot)
    return written


def write_report(directories: Sequence[Path], output: Optional[Path] = None) -> Path:
    """Write the page of the jobs in ``directories``, and their missing plots.

    :param output: the HTML file; for one job, by default,
        :data:`~migtest.artifacts.REPORT_FILE` in its directory.  Required
        for several: where a merged page belongs is the caller's choice,
        and its links are relative to it.
    :raise NotAJobDirectory: see :func:`load_jobs`.
    :raise ValueError: several directories and no ``output``.
    :return: the path of the page.
    """
    if output is None:
        if len(directories) != 1:
            raise ValueError("several job directories need -o FILE: where the merged page goes")
        output = directories[0] / REPORT_FILE
    jobs = load_jobs(directories)
    for job in jobs:
        write_plots(job)
    output.parent.mkdir(parents=True, exist_ok=True)
    links = Linker(output.parent, [job.directory for job in jobs])
    output.write_text(render_page(jobs, links), encoding="utf-8")
    return output


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Command line: ``migtest-report JOBDIR [JOBDIR...] [-o FILE]``."""
    parser = argparse.ArgumentParser(
        prog="migtest-report",
        description="Write one HTML page of Avocado jobs' migration tests: a test x "
        "architecture grid with each run's status, total time and downtime, where it "
        "ran (job, host, QEMU, accelerator), and each test's timeline plot.  Several "
        "jobs are merged into one grid.",
    )
    parser.add_argument(
        "jobdirs", type=Path, nargs="+", metavar="JOBDIR", help="an Avocado job results directory"
    )
    parser.add_argument(
        "-o",
        "--output",
        type=Path,
        help=f"the page (default, for one JOBDIR: JOBDIR/{REPORT_FILE}; required for "
        "several); its links are relative to it, so copy it along with the jobs",
    )
    args = parser.parse_args(argv)
    if args.output is None and len(args.jobdirs) > 1:
        parser.error(
            f"{len(args.jobdirs)} job directories need -o FILE: where the merged page goes"
        )
    try:
        output = write_report(args.jobdirs, args.output)
    except NotAJobDirectory as exc:
        parser.error(str(exc))
    print(os.fspath(output))
    return 0


if __name__ == "__main__":
    sys.exit(main())
