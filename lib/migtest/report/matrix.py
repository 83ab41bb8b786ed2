"""The report page: one grid of tests x architectures over one or more jobs.

Each row is a test, each column an architecture; a cell holds every run
of that test on that architecture, from every job given: the TCG and KVM
runs of one job, and the runs of other jobs (other hosts, other QEMU
versions, reruns) one under the other.  Each run says where it came from,
as far as that tells it apart: its job (a coloured letter, listed in the
header), accelerator, QEMU version and host, whichever of them differ
across the page; what all runs share is said once in the header, and a
run's tooltip says all of it.  Columns are architectures rather than
variants so that the grid keeps its width however many jobs, versions and
accelerators it merges (see :mod:`migtest.report.style`).
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass
from html import escape
from typing import Dict, List, Sequence, Tuple

from ..arch import PROFILES
from .jobdata import TOTALS, Job, Origin, TestRun, final, guest_felt_downtime, outcome
from .links import Linker
from .style import JOB_COLOURS, css, grid_width

#: What may tell runs apart, besides their job: an :class:`Origin` field, its name.
FIELDS = (("accel", "accelerator"), ("qemu", "QEMU"), ("host", "host"))


@dataclass(frozen=True)
class Placed:
    """A run with the job it came from."""

    job: int
    run: TestRun


def job_letter(index: int) -> str:
    """``A``, ``B``, ... ``Z``, ``AA``...: how a merged page names its jobs."""
    letters = string.ascii_uppercase
    return (job_letter(index // 26 - 1) if index >= 26 else "") + letters[index % 26]


def render_page(jobs: Sequence[Job], links: Linker) -> str:
    """The page of ``jobs``, linking to their files through ``links``."""
    page = _Page(jobs, links)
    title = f"job {escape(jobs[0].job_id[:7])}" if len(jobs) == 1 else f"{len(jobs)} jobs"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Migration report · {title}</title>
<style>{css()}</style></head>
<body><header>
<h1>QEMU migration tests</h1>
{page.header()}
</header>
<main>{page.grid()}{page.timelines()}</main>
<footer>Total and downtime are QEMU's (<code>query-migrate</code>, in ms) for the
last migration of the test; guest-felt is the downtime the guest itself counted,
when the test measured it.  Hover a run for where it came from and its summary.</footer>
</body></html>
"""


class _Page:
    """The parts of one page, with what they share: the runs, placed in the grid."""

    def __init__(self, jobs: Sequence[Job], links: Linker) -> None:
        self.jobs = jobs
        self.links = links
        self.placed = [Placed(i, run) for i, job in enumerate(jobs) for run in job.runs]
        self.tests = list(dict.fromkeys(p.run.name for p in self.placed))
        arches = {p.run.origin.arch for p in self.placed}
        self.arches = [a for a in PROFILES if a in arches] + sorted(arches - set(PROFILES))
        self.accels = list(dict.fromkeys(p.run.origin.accel for p in self.placed))
        #: The Origin fields whose value differs between runs: each run shows them.
        self.varying = [
            name
            for name, _ in FIELDS
            if len({getattr(p.run.origin, name) for p in self.placed}) > 1
        ]

    def header(self) -> str:
        """What the page shows, its totals, and what every run shares."""
        totals = {status: sum(job.totals[status] for job in self.jobs) for status, _ in TOTALS}
        shared = [
            f"{label} <b>{escape(getattr(self.placed[0].run.origin, name) or 'not recorded')}</b>"
            for name, label in FIELDS
            if self.placed and name not in self.varying
        ]
        if len(self.jobs) == 1:
            job = self.jobs[0]
            elapsed = f" · {job.elapsed:.1f} s" if isinstance(job.elapsed, (int, float)) else ""
            meta = (
                f'job <code title="{escape(job.job_id)}">{escape(job.job_id[:12])}</code> · '
                f"{escape(job.start)}{elapsed} · {len(job.runs)} tests · {self._job_links(job)}"
            )
            if job.spawner != "process":
                meta += f" · tests run by Avocado's {escape(job.spawner)} spawner"
            table = ""
        else:
            meta = f"{len(self.jobs)} jobs · {len(self.placed)} tests"
            table = self._jobs_table()
        every = f'<p class="meta">every run: {" · ".join(shared)}</p>' if shared else ""
        return f'<p class="meta">{meta}</p>{every}<p class="totals">{_chips(totals)}</p>{table}'

    def _job_links(self, job: Job) -> str:
        """Avocado's own page of the job and its log, where the copy has them."""
        found = [
            f'<a href="{href}">{label}</a>'
            for label, name in (("Avocado's report", "results.html"), ("job.log", "job.log"))
            for href in [self.links.href(job.directory / name)]
            if href
        ]
        return " · ".join(found) or '<span class="missing">no job.log</span>'

    def _jobs_table(self) -> str:
        """One line per job of a merged page: its letter, and where and what it ran."""
        rows = []
        for index, job in enumerate(self.jobs):
            runs = [p.run for p in self.placed if p.job == index]
            qemus = ", ".join(dict.fromkeys(r.origin.qemu or "?" for r in runs))
            accels = ", ".join(dict.fromkeys(r.origin.accel for r in runs))
            hosts = ", ".join(dict.fromkeys(r.origin.host or "not recorded" for r in runs))
            if job.spawner != "process":
                hosts += f" (Avocado's {job.spawner} spawner, from {job.host or 'a host'})"
            rows.append(
                f"<tr><td>{_job_chip(index, job)}</td>"
                f'<td><code title="{escape(job.job_id)}">{escape(str(job.directory))}</code>'
                f"<br>{self._job_links(job)}</td><td>{escape(hosts)}</td>"
                f"<td>{escape(qemus)}</td><td>{escape(accels)}</td><td>{escape(job.start)}</td>"
                f'<td class="totals">{_chips(job.totals, small=True)}</td></tr>'
            )
        return (
            '<table class="jobs"><thead><tr><th>job</th><th>directory</th><th>host</th>'
            "<th>QEMU</th><th>accelerator</th><th>started</th><th>tests</th></tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table>"
        )

    def grid(self) -> str:
        """The table: a row per test, a column per architecture, runs in the cells."""
        cells: Dict[Tuple[str, str], List[Placed]] = {}
        for placed in sorted(self.placed, key=self._order):
            cells.setdefault((placed.run.name, placed.run.origin.arch), []).append(placed)
        rows = []
        for name in self.tests:
            path, _, test = name.rpartition(":")
            tds = "".join(self._cell(cells.get((name, arch), [])) for arch in self.arches)
            rows.append(
                f'<tr><th scope="row"><span class="test">{_breakable(test or name)}</span>'
                f'<span class="file">{_breakable(path, "/")}</span></th>{tds}</tr>'
            )
        heads = "".join(
            f'<th scope="col"><span class="arch">{escape(arch)}</span>'
            f'<span class="accel">{escape(" · ".join(self._accels(arch)))}</span></th>'
            for arch in self.arches
        )
        cols = '<col class="tests">' + "<col>" * len(self.arches)
        return (
            f'<table class="grid" style="{grid_width(len(self.arches))}">'
            f'<colgroup>{cols}</colgroup><thead><tr><th class="corner">test</th>{heads}</tr>'
            f"</thead><tbody>{''.join(rows)}</tbody></table>"
        )

    def _order(self, placed: Placed) -> Tuple[int, int, Tuple[Tuple[int, int, str], ...], str]:
        """Runs in a cell: by job, then accelerator (as the page first met
        them), then QEMU version, then host; reruns in the order they ran."""
        origin = placed.run.origin
        return (placed.job, self.accels.index(origin.accel), _version_key(origin.qemu), origin.host)

    def _accels(self, arch: str) -> List[str]:
        return list(
            dict.fromkeys(p.run.origin.accel for p in self.placed if p.run.origin.arch == arch)
        )

    def _cell(self, runs: Sequence[Placed]) -> str:
        if not runs:
            return '<td class="cell none" title="not run on this architecture">&ndash;</td>'
        return f'<td class="cell">{"".join(self._run(p) for p in runs)}</td>'

    def _run(self, placed: Placed) -> str:
        """A run's status, origin, numbers and links; its tooltip says all it knows."""
        run = placed.run
        elapsed = f"{run.elapsed:.1f} s" if isinstance(run.elapsed, (int, float)) else ""
        reason = ""
        if run.status != "PASS" and run.fail_reason not in ("", "<unknown>"):
            short = run.fail_reason if len(run.fail_reason) <= 90 else run.fail_reason[:88] + "…"
            reason = f'<div class="reason" title="{escape(run.fail_reason)}">{escape(short)}</div>'
        return (
            f'<div class="run {escape(run.status.lower())}" data-job="{job_letter(placed.job)}" '
            f'title="{escape(self._tooltip(placed))}">'
            f'<div class="head"><span class="status">{escape(run.status)}</span>'
            f'<span class="elapsed">{elapsed}</span></div>{self._origin(placed)}{reason}'
            f'<div class="numbers">{" · ".join(_numbers(run)) or "no migration"}</div>'
            f"{self._links(run)}</div>"
        )

    def _origin(self, placed: Placed) -> str:
        """What tells this run apart from the others of the page."""
        parts = [
            escape(getattr(placed.run.origin, name) or f"{label} ?")
            for name, label in FIELDS
            if name in self.varying
        ]
        chip = _job_chip(placed.job, self.jobs[placed.job]) if len(self.jobs) > 1 else ""
        words = " ".join(filter(None, [chip, " · ".join(parts)]))
        return f'<div class="origin">{words}</div>' if words else ""

    def _tooltip(self, placed: Placed) -> str:
        run, job = placed.run, self.jobs[placed.job]
        origin: Origin = run.origin
        lines = [
            f"job {job_letter(placed.job)}: {job.directory} ({job.job_id[:12]})"
            if len(self.jobs) > 1
            else f"job {job.job_id[:12]}",
            f"{origin.arch} / {origin.accel} · QEMU {origin.qemu or '?'} · "
            f"host {origin.host or 'not recorded'}",
        ]
        if run.variant_id:
            lines.append(f"variant {run.variant_id}")
        lines += [_numbers_text(run)]
        lines += [run.whiteboard] if run.whiteboard else []
        return "\n".join(line for line in lines if line)

    def _links(self, run: TestRun) -> str:
        found = [
            f'<a href="{href}">{label}</a>'
            for label, path in (
                ("plot", run.plot),
                ("debug.log", run.debug_log),
                ("QMP", run.qmp_log),
            )
            for href in [self.links.href(path)]
            if href
        ]
        if not found:
            return '<div class="links missing">no logs in this job directory</div>'
        return f'<div class="links">{"".join(found)}</div>'

    def timelines(self) -> str:
        """Every test's plots, one folded section per test, the first open."""
        sections: List[str] = []
        for index, name in enumerate(self.tests):
            figures = "".join(self._figure(p) for p in self.placed if p.run.name == name)
            if figures:
                path, _, test = name.rpartition(":")
                sections.append(
                    f'<details id="timeline-{index}"{" open" if not sections else ""}><summary>'
                    f'{escape(test or name)}<span class="file">{escape(path)}</span></summary>'
                    f'<div class="plots">{figures}</div></details>'
                )
        return "<h2>Timelines</h2>" + "".join(sections) if sections else ""

    def _figure(self, placed: Placed) -> str:
        run = placed.run
        href = self.links.href(run.plot)
        if href is None:
            return ""
        job = f"job {job_letter(placed.job)} · " if len(self.jobs) > 1 else ""
        return (
            f'<figure><a href="{href}"><img src="{href}" loading="lazy" '
            f'alt="migration timeline of {escape(run.name)}"></a>'
            f"<figcaption>{job}{escape(run.origin.label())} · {escape(run.status)}"
            f"</figcaption></figure>"
        )


def _measures(run: TestRun) -> Tuple[List[Tuple[str, str, str]], List[str]]:
    """QEMU's total time and downtime and the guest's own (label, class, ms),
    and notes on how the migration ended or what its metrics lack."""
    last = final(run.metrics)
    felt, problem = guest_felt_downtime(run.metrics)
    numbers = [
        (label, css_class, str(value))
        for label, css_class, value in (
            ("total", "total", last.get("total-time")),
            ("downtime", "downtime", last.get("downtime")),
            ("guest-felt", "felt", None if felt is None else f"{felt:g}"),
        )
        if value is not None
    ]
    ended = outcome(run.metrics)
    notes = [f"migration {ended}"] if ended and ended != "completed" else []
    return numbers, notes + [n for n in (run.metrics_error, problem) if n]


def _numbers(run: TestRun) -> List[str]:
    """The run's measures as the cell shows them."""
    numbers, notes = _measures(run)
    return [
        f'<span>{label} <b class="{css_class}">{escape(value)}</b> ms</span>'
        for label, css_class, value in numbers
    ] + [f'<span class="outcome">{escape(note)}</span>' for note in notes]


def _numbers_text(run: TestRun) -> str:
    """The run's measures in one line of plain text, for its tooltip."""
    numbers, notes = _measures(run)
    return " · ".join([f"{label} {value} ms" for label, _, value in numbers] + notes)


def _chips(totals: Dict[str, int], small: bool = False) -> str:
    size = " small" if small else ""
    return "".join(
        f'<span class="chip{size} {status.lower()}">{count} {status}</span>'
        for status, count in totals.items()
        if count or status == "PASS"
    )


def _job_chip(index: int, job: Job) -> str:
    colour = index % len(JOB_COLOURS)
    return (
        f'<span class="chip small job-{colour}" title="{escape(str(job.directory))}">'
        f"{job_letter(index)}</span>"
    )


def _version_key(qemu: str) -> Tuple[Tuple[int, int, str], ...]:
    """``7.2.22 → 10.0.13`` sorted as numbers: (7, 2, 22, 10, 0, 13)."""
    return tuple(
        (0, int(part), "") if part.isdigit() else (1, 0, part)
        for part in re.split(r"[^0-9A-Za-z]+", qemu)
        if part
    )


def _breakable(text: str, marks: str = "._") -> str:
    """``text`` escaped, breakable after each of ``marks`` (dots and
    underscores of a test's name, slashes of a path)."""
    escaped = escape(text)
    for mark in marks:
        escaped = escaped.replace(mark, f"{mark}<wbr>")
    return escaped
