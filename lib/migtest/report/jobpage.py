"""One HTML page for an Avocado job: every migration test on every variant.

Avocado's own reports list tests one by one; across the architecture matrix
the question is rather "which test fails where".  This page answers it with
a grid, one row per test and one column per architecture and accelerator,
each cell giving the status, QEMU's total time and downtime, and links to
the test's timeline plot and its ``debug.log``.  It reads only what the job
left on disk (``results.json``, ``jobdata/`` and each test's
``migration.json``), so it works on any finished job, copied or not::

    migtest-report ~/avocado/job-results/latest

The page is self-contained: the CSS is inline, and it links to files of the
job by relative paths, so the directory can be archived or served as is.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple
from urllib.parse import quote

from ..arch import DEFAULT_ARCH
from ..artifacts import METRICS_FILE, PLOT_FILE, REPORT_FILE, TRACE_FILE
from ..errors import MigtestError
from ..host import DEFAULT_ACCEL
from .timeline import render_timeline_svg

LOG = logging.getLogger(__name__)

#: A test's parameters when neither its variant nor ``-p`` set them (README).
DEFAULTS = {"arch": DEFAULT_ARCH, "accel": DEFAULT_ACCEL}
#: Statuses in the order the header counts them, with results.json's keys.
TOTALS = (("PASS", "pass"), ("FAIL", "failures"), ("ERROR", "errors"), ("WARN", "warn"),
          ("INTERRUPTED", "interrupt"), ("CANCEL", "cancel"), ("SKIP", "skip"))  # fmt: skip

#: The page's style: inline, so the page needs nothing from the network.
CSS = """
:root { --ink: #1f2328; --muted: #656d76; --line: #d8dee4; --bg: #f6f8fa; --pass: #1a7f37;
  --pass-bg: #e6f6ea; --fail: #cf222e; --fail-bg: #ffebe9; --error: #a40e26; --error-bg: #ffe0dc;
  --warn: #9a6700; --warn-bg: #fff5cc; --interrupted: #8250df; --interrupted-bg: #f5edff;
  --cancel: #57606a; --cancel-bg: #eef1f4; }
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--ink);
  font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; }
header { background: #fff; border-bottom: 1px solid var(--line); padding: 18px 28px 14px; }
h1 { font-size: 20px; margin: 0 0 4px; font-weight: 600; }
h2 { font-size: 16px; font-weight: 600; margin: 28px 0 10px; }
.meta { margin: 0; color: var(--muted); }
code { font: 12.5px ui-monospace, "DejaVu Sans Mono", monospace; background: var(--bg);
  padding: 1px 5px; border-radius: 4px; }
a { color: #0969da; text-decoration: none; } a:hover { text-decoration: underline; }
.totals { margin: 10px 0 0; display: flex; gap: 8px; flex-wrap: wrap; }
.chip { font-weight: 600; font-size: 13px; padding: 2px 10px; border-radius: 999px; }
main { padding: 22px 28px; overflow-x: auto; }
table.grid { border-collapse: separate; border-spacing: 0; background: #fff;
  border: 1px solid var(--line); border-radius: 8px; overflow: hidden; }
.grid th, .grid td { border-bottom: 1px solid var(--line); padding: 8px 12px;
  vertical-align: top; text-align: left; }
.grid tbody tr:last-child > * { border-bottom: none; }
.grid thead th { background: #fafbfc; font-weight: 600; }
.grid thead th.corner { color: var(--muted); font-weight: 500; }
.grid th[scope=row] { font-weight: 400; white-space: nowrap; border-right: 1px solid var(--line); }
.test, .arch { display: block; font-weight: 600; }
.file, .accel, .qemu { display: block; color: var(--muted); font-size: 12px; font-weight: 400; }
.cell { border-left: 3px solid var(--cancel); font-size: 13px; min-width: 215px;
  background: var(--cancel-bg); }
.cell.none { background: #fff; border-left-color: transparent; }
.head { display: flex; justify-content: space-between; gap: 12px; align-items: baseline; }
.status { font-weight: 700; font-size: 12px; letter-spacing: .04em; padding: 1px 7px;
  border-radius: 4px; }
.status, .chip { background: var(--cancel); color: #fff; }
.elapsed, .outcome { color: var(--muted); font-size: 12px; }
.numbers { margin-top: 4px; color: var(--muted); } .numbers span { white-space: nowrap; }
.numbers b { color: var(--ink); font-weight: 600; font-variant-numeric: tabular-nums; }
.reason { margin-top: 4px; font-size: 12px; max-width: 260px; color: var(--cancel); }
.links { margin-top: 4px; display: flex; gap: 10px; font-size: 12.5px; }
.run + .run { margin-top: 8px; padding-top: 8px; border-top: 1px dashed var(--line); }
.none { color: #afb8c1; text-align: center; vertical-align: middle; }
details { background: #fff; border: 1px solid var(--line); border-radius: 8px; margin-bottom: 8px; }
summary { cursor: pointer; padding: 8px 14px; font-weight: 600; }
summary .file { display: inline; margin-left: 8px; }
.plots { display: flex; flex-wrap: wrap; gap: 12px; padding: 4px 14px 14px; }
figure { margin: 0; } figcaption { color: var(--muted); font-size: 12px; margin-top: 3px; }
figure img { display: block; width: 800px; max-width: 100%; height: auto;
  border: 1px solid var(--line); border-radius: 6px; }
footer { padding: 0 28px 28px; color: var(--muted); font-size: 12.5px; }
footer code { padding: 0; background: none; }
"""
#: Per status: its cell's tint and bar, its badge, chip and reason in its colour.
_STATUS_COLOURS = """
.cell.{s} {{ background: var(--{s}-bg); border-left-color: var(--{s}); }}
.{s} .status, .chip.{s} {{ background: var(--{s}); color: #fff; }}
.{s} .reason {{ color: var(--{s}); }}
"""


class NotAJobDirectory(MigtestError):
    """The directory given holds no Avocado job results."""


@dataclass(frozen=True)
class TestRun:
    """One test of the job, on one variant."""

    #: The test without its variant: ``tests/migration/precopy.py:Precopy.test_unix``.
    name: str
    #: Avocado's variant id (``run-accel-tcg-arch-x86_64-652f``), None without variants.
    variant_id: Optional[str]
    status: str
    elapsed: Optional[float]
    fail_reason: str
    whiteboard: str
    logdir: Path
    #: The test's ``migration.json``; empty when it wrote none or it is unreadable.
    metrics: Mapping[str, Any] = field(default_factory=dict)
    metrics_error: str = ""

    @property
    def debug_log(self) -> Path:
        return self.logdir / "debug.log"

    @property
    def qmp_log(self) -> Path:
        return self.logdir / TRACE_FILE

    @property
    def plot(self) -> Path:
        return self.logdir / "data" / PLOT_FILE


@dataclass(frozen=True)
class Column:
    """What a variant ran: a column of the grid."""

    arch: str
    accel: str
    #: The QEMU versions, ``7.2.22`` or ``7.2.22 → 10.0.13``; empty when unknown.
    qemu: str = ""

    def label(self) -> str:
        """The column in one line: ``x86_64 / tcg / QEMU 7.2.22``."""
        return " / ".join([self.arch, self.accel, *([f"QEMU {self.qemu}"] if self.qemu else [])])


def qemu_pair(src: str, dst: str) -> str:
    """One version, or the pair when source and destination differ."""
    return src if src == dst else f"{src} → {dst}"


@dataclass(frozen=True)
class Job:
    """What the report shows of a job."""

    directory: Path
    job_id: str
    start: str
    elapsed: Optional[float]
    totals: Dict[str, int]
    runs: List[TestRun]
    #: Variant id -> its column, in the order the job ran them.
    columns: Dict[Optional[str], Column]


def load_job(directory: Path) -> Job:
    """Read an Avocado job results directory.

    :raise NotAJobDirectory: ``directory`` is missing, or has no readable
        ``results.json`` as Avocado writes it.
    """
    results = _read_results(directory)
    runs = [_test_run(directory, entry) for entry in results["tests"]]
    return Job(
        directory=directory,
        job_id=str(results.get("job_id", directory.name)),
        start=str(results.get("start", "")).split(".")[0],
        elapsed=results.get("time"),
        totals={status: int(results.get(key, 0)) for status, key in TOTALS},
        runs=runs,
        columns=_columns(runs, variant_params(directory)),
    )


def _read_results(directory: Path) -> Dict[str, Any]:
    what = f"{directory} is not an Avocado job results directory"
    if not directory.is_dir():
        raise NotAJobDirectory(f"{what}: it does not exist or is not a directory")
    path = directory / "results.json"
    if not path.is_file():
        hint = ""
        if (directory / "latest" / "results.json").is_file():
            hint = f" (its latest job is {directory / 'latest'})"
        raise NotAJobDirectory(f"{what}: it has no results.json{hint}")
    try:
        results = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise NotAJobDirectory(f"{what}: cannot read {path}: {exc}") from exc
    if not isinstance(results, dict) or not isinstance(results.get("tests"), list):
        raise NotAJobDirectory(f"{what}: {path} has no list of tests")
    return results


def _test_run(directory: Path, entry: Mapping[str, Any]) -> TestRun:
    """One entry of results.json, with its metrics read from its logdir.

    The logdir recorded is absolute, and still points to the original when
    the job was copied: the same directory under this job's
    ``test-results`` comes first.
    """
    name, _, variant = str(entry.get("name", "?")).partition(";")
    recorded = Path(str(entry.get("logdir") or "missing-logdir"))
    logdir = directory / "test-results" / recorded.name
    if not logdir.is_dir() and recorded.is_absolute():
        logdir = recorded
    metrics: Mapping[str, Any] = {}
    error = ""
    path = logdir / "data" / METRICS_FILE
    if path.is_file():
        try:
            metrics = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            error = f"unreadable {METRICS_FILE}: {exc}"
    return TestRun(
        name=name,
        variant_id=variant or None,
        status=str(entry.get("status") or "?"),
        elapsed=entry.get("time_elapsed"),
        fail_reason=str(entry.get("fail_reason") or ""),
        whiteboard=str(entry.get("whiteboard") or ""),
        logdir=logdir,
        metrics=metrics if isinstance(metrics, dict) else {},
        metrics_error=error,
    )


def variant_params(directory: Path) -> Dict[Optional[str], Dict[str, str]]:
    """The ``arch`` and ``accel`` each variant sets, over the ``-p`` ones.

    Avocado keeps no parameters in results.json, but the variants it ran in
    ``jobdata/variants-*.json`` and the command line's ``-p`` in
    ``jobdata/args.json``.
    """
    jobdata = directory / "jobdata"
    given = dict(DEFAULTS)
    args = _read_json(jobdata / "args.json")
    if isinstance(args, dict):
        for pair in args.get("run.test_parameters") or []:
            if isinstance(pair, list) and len(pair) == 2:
                given[str(pair[0])] = str(pair[1])
    params: Dict[Optional[str], Dict[str, str]] = {None: given}
    for path in sorted(jobdata.glob("variants-*.json")):
        for variant in _read_json(path) or []:
            values = dict(given)
            for _, leaves in variant.get("variant") or []:
                values.update({str(key): str(value) for _, key, value in leaves})
            params[variant.get("variant_id")] = values
    return params


def _read_json(path: Path) -> Any:
    """A JSON file's contents, or None: what jobdata lacks, defaults replace."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None


def _columns(
    runs: Sequence[TestRun], params: Mapping[Optional[str], Mapping[str, str]]
) -> Dict[Optional[str], Column]:
    """Label each variant by the arch, accel and QEMU versions its tests really used.

    A ``migration.json`` tells the accelerator ``auto`` became and the
    versions the QEMUs reported; a variant without one is labelled from its
    parameters (``qemu_version``, ``qemu_version_src``/``_dst``).
    """
    columns: Dict[Optional[str], Column] = {}
    for run in runs:
        given = params.get(run.variant_id, params[None])
        both = given.get("qemu_version", "")
        src, dst = given.get("qemu_version_src", both), given.get("qemu_version_dst", both)
        columns.setdefault(
            run.variant_id, Column(given["arch"], given["accel"], qemu_pair(src, dst))
        )
        metrics = run.metrics
        if metrics.get("arch") and metrics.get("accel"):
            versions = metrics.get("qemu") or {}
            qemu = qemu_pair(str(versions["src"]), str(versions["dst"])) if versions else ""
            columns[run.variant_id] = Column(
                str(metrics["arch"]), str(metrics["accel"]), qemu or columns[run.variant_id].qemu
            )
    return columns


def write_plots(job: Job) -> List[Path]:
    """Draw the timeline of every test that has metrics and no plot yet.

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
            run.plot.write_text(svg, encoding="utf-8")
            written.append(run.plot)
    return written


def write_report(directory: Path, output: Optional[Path] = None) -> Path:
    """Write the report of the job in ``directory``, and the missing plots.

    :param output: the HTML file; :data:`~migtest.artifacts.REPORT_FILE` in
        ``directory`` by default.
    :raise NotAJobDirectory: see :func:`load_job`.
    :return: the path of the report.
    """
    job = load_job(directory)
    write_plots(job)
    output = output or directory / REPORT_FILE
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(render_html(job, output.parent), encoding="utf-8")
    return output


def render_html(job: Job, base: Path) -> str:
    """The report page; links are relative to ``base``, the page's directory."""
    results_html = job.directory / "results.html"
    links = [("job.log", job.directory / "job.log")]
    if results_html.is_file():
        links.insert(0, ("Avocado's report", results_html))
    nav = " · ".join(f'<a href="{_href(path, base)}">{escape(label)}</a>' for label, path in links)
    chips = "".join(
        f'<span class="chip {status.lower()}">{count} {status}</span>'
        for status, count in job.totals.items()
        if count or status == "PASS"
    )
    elapsed = f" · {job.elapsed:.1f} s" if isinstance(job.elapsed, (int, float)) else ""
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Migration report · job {escape(job.job_id[:7])}</title>
<style>{_css()}</style></head>
<body><header>
<h1>QEMU migration tests</h1>
<p class="meta">job <code title="{escape(job.job_id)}">{escape(job.job_id[:12])}</code> ·
{escape(job.start)}{elapsed} · {len(job.runs)} tests · {nav}</p>
<p class="totals">{chips}</p>
</header>
<main>{_grid(job, base)}{_timelines(job, base)}</main>
<footer>Total and downtime are QEMU's (<code>query-migrate</code>, in ms) for the
last migration of the test; hover a cell for its summary.</footer>
</body></html>
"""


def _css() -> str:
    """The style; SKIP and unknown statuses look like CANCEL, a PASS is not tinted."""
    statuses = ("pass", "fail", "error", "warn", "interrupted")
    return (
        CSS
        + "".join(_STATUS_COLOURS.format(s=s) for s in statuses)
        + ".cell.pass { background: #fff; }\n"
    )


def _grid(job: Job, base: Path) -> str:
    """The table: a row per test, a column per variant, runs in the cells."""
    cells: Dict[Tuple[str, Optional[str]], List[TestRun]] = {}
    for run in job.runs:
        cells.setdefault((run.name, run.variant_id), []).append(run)
    rows = []
    for name in _test_names(job):
        path, _, test = name.rpartition(":")
        tds = "".join(_cell(cells.get((name, variant), []), base) for variant in job.columns)
        rows.append(
            f'<tr><th scope="row"><span class="test">{escape(test or name)}</span>'
            f'<span class="file">{escape(path)}</span></th>{tds}</tr>'
        )
    heads = "".join(
        f'<th scope="col"><span class="arch">{escape(column.arch)}</span>'
        f'<span class="accel">{escape(column.accel)}</span>'
        + (f'<span class="qemu">QEMU {escape(column.qemu)}</span>' if column.qemu else "")
        + "</th>"
        for column in job.columns.values()
    )
    return (
        f'<table class="grid"><thead><tr><th class="corner">test</th>{heads}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def _timelines(job: Job, base: Path) -> str:
    """Every test's plots, one folded section per test, the first open."""
    sections: List[str] = []
    for index, name in enumerate(_test_names(job)):
        figures = "".join(
            f'<figure><a href="{_href(run.plot, base)}"><img src="{_href(run.plot, base)}" '
            f'loading="lazy" alt="migration timeline of {escape(name)}"></a>'
            f"<figcaption>{escape(job.columns[run.variant_id].label())} · "
            f"{escape(run.status)}</figcaption></figure>"
            for run in job.runs
            if run.name == name and run.plot.is_file()
        )
        if figures:
            path, _, test = name.rpartition(":")
            sections.append(
                f'<details id="timeline-{index}"{" open" if not sections else ""}><summary>'
                f'{escape(test or name)}<span class="file">{escape(path)}</span></summary>'
                f'<div class="plots">{figures}</div></details>'
            )
    return "<h2>Timelines</h2>" + "".join(sections) if sections else ""


def _test_names(job: Job) -> List[str]:
    """The tests, without variants, in the order the job ran them."""
    return list(dict.fromkeys(run.name for run in job.runs))


def _cell(runs: Sequence[TestRun], base: Path) -> str:
    """A grid cell, coloured by its last run (a test may run twice on a variant)."""
    if not runs:
        return '<td class="cell none" title="not run on this variant">&ndash;</td>'
    status = runs[-1].status.lower()
    return f'<td class="cell {escape(status)}">{"".join(_run(run, base) for run in runs)}</td>'


def _run(run: TestRun, base: Path) -> str:
    """A run's status, numbers and links, with its summary as the tooltip."""
    final = _final(run.metrics)
    numbers = []
    if "total-time" in final:
        numbers.append(f'<span>total <b class="total">{final["total-time"]}</b> ms</span>')
    if "downtime" in final:
        numbers.append(f'<span>downtime <b class="downtime">{final["downtime"]}</b> ms</span>')
    outcome = _outcome(run.metrics)
    if outcome and outcome != "completed":
        numbers.append(f'<span class="outcome">migration {escape(outcome)}</span>')
    if run.metrics_error:
        numbers.append(f'<span class="outcome">{escape(run.metrics_error)}</span>')
    links = []
    if run.plot.is_file():
        links.append(f'<a href="{_href(run.plot, base)}">plot</a>')
    if run.debug_log.is_file():
        links.append(f'<a href="{_href(run.debug_log, base)}">debug.log</a>')
    if run.qmp_log.is_file():
        links.append(f'<a href="{_href(run.qmp_log, base)}">QMP</a>')
    elapsed = f"{run.elapsed:.1f} s" if isinstance(run.elapsed, (int, float)) else ""
    reason = ""
    if run.status != "PASS" and run.fail_reason not in ("", "<unknown>"):
        short = run.fail_reason if len(run.fail_reason) <= 90 else run.fail_reason[:88] + "…"
        reason = f'<div class="reason" title="{escape(run.fail_reason)}">{escape(short)}</div>'
    return (
        f'<div class="run" title="{escape(run.whiteboard or run.status)}">'
        f'<div class="head"><span class="status">{escape(run.status)}</span>'
        f'<span class="elapsed">{elapsed}</span></div>{reason}'
        f'<div class="numbers">{" · ".join(numbers) or "no migration"}</div>'
        f'<div class="links">{" ".join(links)}</div></div>'
    )


def _final(metrics: Mapping[str, Any]) -> Mapping[str, Any]:
    final = ((metrics.get("sides") or {}).get("src") or {}).get("final") or {}
    return final if isinstance(final, dict) else {}


def _outcome(metrics: Mapping[str, Any]) -> str:
    """How the source's migration ended: its final status, else its last phase."""
    phases = ((metrics.get("sides") or {}).get("src") or {}).get("phases") or []
    return str(_final(metrics).get("status") or (phases[-1].get("status") if phases else ""))


def _href(path: Path, base: Path) -> str:
    """A relative URL from the page to ``path``; quoted, so ':' is no scheme."""
    return escape(quote(os.path.relpath(path, base)))


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Command line: ``migtest-report JOBDIR [-o FILE]``."""
    parser = argparse.ArgumentParser(
        prog="migtest-report",
        description="Write one HTML page of an Avocado job's migration tests: a test x "
        "variant grid with status, total time and downtime, and each test's timeline plot.",
    )
    parser.add_argument("jobdir", type=Path, help="an Avocado job results directory")
    parser.add_argument(
        "-o", "--output", type=Path, help=f"the page (default JOBDIR/{REPORT_FILE})"
    )
    args = parser.parse_args(argv)
    try:
        output = write_report(args.jobdir, args.output)
    except NotAJobDirectory as exc:
        parser.error(str(exc))
    print(output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
