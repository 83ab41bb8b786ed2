"""The migration plot and the job report: synthetic timelines, then a real job;
and the names of the files they read."""

from __future__ import annotations

import ast
import json
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, Dict, List, Optional
from urllib.parse import unquote, urlsplit

import pytest
from conftest import ROOT, qemu_or_skip
from test_report_merge import runs_of

from migtest.artifacts import (
    METRICS_FILE,
    PLOT_FILE,
    REPORT_FILE,
    TRACE_FILE,
    console_file,
    output_file,
)
from migtest.report import jobpage
from migtest.report.timeline import HEIGHT, WIDTH, render_timeline_svg

SVG = "{http://www.w3.org/2000/svg}"
MIB = 1 << 20


def side(start: Optional[float], phases: List[Any], samples: List[Dict[str, Any]], **final: Any):
    return {
        "start": start,
        "phases": [{"t": t, "status": status} for t, status in phases],
        "samples": samples,
        "final": final,
    }


def sample(t: float, status: str, remaining_mib: float, mbps: float, dirty: float = 0):
    return {"t": t, "status": status, "remaining": int(remaining_mib * MIB), "mbps": mbps,
            "dirty-pages-rate": dirty}  # fmt: skip


def parse(report: Dict[str, Any]) -> ET.Element:
    """Render ``report``; the SVG must be well-formed XML of the promised size."""
    root = ET.fromstring(render_timeline_svg(report))
    assert root.tag == f"{SVG}svg"
    assert (root.get("width"), root.get("height")) == (str(WIDTH), str(HEIGHT))
    return root


def texts(root: ET.Element) -> List[str]:
    return ["".join(e.itertext()) for e in root.iter() if e.tag in (f"{SVG}text", f"{SVG}title")]


def assert_inside(root: ET.Element) -> None:
    """Everything is drawn within the picture: the sides' clocks are aligned."""
    for element in root.iter():
        for name in ("x", "x1", "x2", "cx"):
            if element.get(name) is not None:
                assert 0 <= float(element.get(name, "")) <= WIDTH, (element.tag, element.attrib)


def test_one_sample_is_a_dot_on_a_readable_axis() -> None:
    report = {"test": "1-tests/migration/x.py:X.test_one", "arch": "s390x", "accel": "tcg",
              "sides": {"src": side(50.0, [(0.0, "active")], [sample(0.0, "active", 12, 0)]),
                        "dst": side(None, [], [])}}  # fmt: skip
    root = parse(report)
    words = texts(root)
    assert "X.test_ones390x / tcg" in words
    assert {"src", "active", "0.00 s", "0.10 s", "12.5"} <= set(words)
    assert "dst" not in words
    assert root.findall(f".//{SVG}polyline") == []
    assert len(root.findall(f".//{SVG}circle")) == 3
    assert_inside(root)


def test_postcopy_recovery_marks_every_phase_of_both_sides() -> None:
    src_phases = [(-0.001, "setup"), (0.003, "active"), (0.4, "postcopy-active"),
                  (0.49, "postcopy-paused"), (0.593, "postcopy-recover"),
                  (0.594, "postcopy-active"), (0.683, "completed")]  # fmt: skip
    dst_phases = [(-0.54, "active"), (-0.14, "postcopy-active"), (-0.05, "postcopy-paused"),
                  (0.0, "setup"), (0.05, "postcopy-recover"), (0.052, "postcopy-active"),
                  (0.14, "completed")]  # fmt: skip
    samples = [sample(t / 10, "active", 150 - 15 * t, 2400, 1000 * t) for t in range(8)]
    report = {"test": "7-tests/migration/postcopy.py:Postcopy.test_recovery",
              "arch": "x86_64", "accel": "tcg",
              "sides": {"src": side(1000.0, src_phases, samples, **{"total-time": 684,
                                    "downtime": 1, "status": "completed"}),
                        "dst": side(1000.54, dst_phases, samples[:1])}}  # fmt: skip
    root = parse(report)
    words = texts(root)
    for status in ("setup", "active", "postcopy-active", "postcopy-paused",
                   "postcopy-recover", "completed"):  # fmt: skip
        assert status in words, status
    assert {"src", "dst", "paused", "completed  ·  total 684 ms  ·  downtime 1 ms"} <= set(words)
    assert any(w.startswith("dst: postcopy-paused from 0.") for w in words)
    assert "remaining RAM (MiB)" in words and "throughput (Mbit/s)" in words
    assert len(root.findall(f".//{SVG}polyline")) == 3
    assert_inside(root)


def test_failed_migration_without_numbers_says_so() -> None:
    report = {"test": "5-tests/migration/failures.py:BadDestination.test_nobody_listening",
              "sides": {"src": side(10.0, [(-0.002, "setup"), (-0.001, "failed")],
                                    [{"t": 0.0, "status": "failed"}]),
                        "dst": side(None, [], [])}}  # fmt: skip
    words = texts(parse(report))
    assert "failed" in words and "no RAM figures recorded" in words


@pytest.mark.parametrize("report", [{}, {"sides": {}}, {"sides": {"src": side(1.0, [], [])}}])
def test_empty_reports_still_render(report: Dict[str, Any]) -> None:
    assert "no RAM figures recorded" in texts(parse(report))


class Links(HTMLParser):
    """Every href and src of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.targets: List[str] = []

    def handle_starttag(self, tag: str, attrs: List[Any]) -> None:
        self.targets += [value for name, value in attrs if name in ("href", "src") and value]


@pytest.fixture(scope="module")
def job(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real job: one precopy migration and one test that migrates nothing."""
    qemu_or_skip("x86_64")
    results = tmp_path_factory.mktemp("results")
    avocado = Path(sys.executable).parent / "avocado"
    subprocess.run(
        [str(avocado), "--config", "avocado.conf", "run", "--job-results-dir", str(results),
         "--disable-sysinfo", "tests/migration/precopy.py:Precopy.test_unix",
         "tests/migration/deprecated.py", "-p", "accel=tcg"],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=True,
    )  # fmt: skip
    (directory,) = results.glob("job-*")
    return directory


def report_of(job: Path, *args: str) -> Path:
    """Run the installed command (setup.py's entry point); it prints where the page went."""
    completed = subprocess.run(
        [str(Path(sys.executable).parent / "migtest-report"), str(job), *args],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    return Path(completed.stdout.strip())


def test_report_of_a_real_job(job: Path) -> None:
    page = report_of(job)
    assert page == job / REPORT_FILE
    html = page.read_text()
    for name in ("Precopy.test_unix", "DeprecatedCommands.test_removed_commands",
                 "tests/migration/precopy.py", "x86_64", "tcg", "2 PASS"):  # fmt: skip
        assert name in html, name
    assert html.count('class="status">PASS<') == 2
    (metrics,) = job.glob(f"test-results/*Precopy.test_unix*/data/{METRICS_FILE}")
    final = json.loads(metrics.read_text())["sides"]["src"]["final"]
    assert f'<b class="total">{final["total-time"]}</b>' in html
    assert f'<b class="downtime">{final["downtime"]}</b>' in html
    plot = metrics.with_name(PLOT_FILE)
    assert "Precopy.test_unix" in "".join(ET.parse(plot).getroot().itertext())
    logs = [metrics.parent.parent / name for name in ("debug.log", TRACE_FILE)]
    assert_links_resolve(page, html, expect=[plot, *logs])


def test_report_elsewhere_links_back_into_the_job(job: Path, tmp_path: Path) -> None:
    page = report_of(job, "-o", str(tmp_path / "deep" / "er" / "page.html"))
    assert page.parent.parent.parent == tmp_path
    assert_links_resolve(page, page.read_text(), expect=[job / "job.log"])


def assert_links_resolve(page: Path, html: str, expect: List[Path]) -> None:
    """Every link is relative, leads to a file, and ``expect`` are among them."""
    parser = Links()
    parser.feed(html)
    targets = set()
    for link in parser.targets:
        url = urlsplit(link)
        assert not url.scheme and not url.netloc, f"{link}: the page must stand alone"
        if url.path:
            target = (page.parent / unquote(url.path)).resolve()
            assert target.is_file(), link
            targets.add(target)
    assert {path.resolve() for path in expect} <= targets


def test_real_job_metrics_have_every_phase_and_a_clean_quit(job: Path) -> None:
    """QEMU lives until tearDown (Avocado's test thread ends before it), so
    the last events are kept and QEMU is asked to quit, not killed."""
    (metrics,) = job.glob(f"test-results/*Precopy.test_unix/data/{METRICS_FILE}")
    src = json.loads(metrics.read_text())["sides"]["src"]
    assert [p["status"] for p in src["phases"]][-1] == "completed"
    assert src["final"]["total-time"] > 0
    trace = (metrics.parent.parent / TRACE_FILE).read_text()
    assert "migtest.qmp.src -> quit" in trace
    assert "migtest.qmp.src <- {}" in trace.split("-> quit", 1)[1], "QEMU did not answer 'quit'"
    story = (metrics.parent.parent / "debug.log").read_text()
    assert "migtest.machine.src" in story and "| migrate {'uri': 'unix:" in story
    assert "query-migrate" not in story, "polling belongs in the QMP trace, not debug.log"


@pytest.mark.parametrize("layout", ["missing", "empty", "garbage"])
def test_not_a_job_directory_exits_2_saying_so(
    tmp_path: Path, layout: str, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = tmp_path / "job"
    if layout != "missing":
        directory.mkdir()
    if layout == "garbage":
        (directory / "results.json").write_text("<html>")
    with pytest.raises(SystemExit) as exited:
        jobpage.main([str(directory)])
    assert exited.value.code == 2
    assert f"{directory} is not an Avocado job results directory" in capsys.readouterr().err
    assert not (directory / REPORT_FILE).exists()


def test_the_report_loads_no_qmp_client() -> None:
    """The report only reads files: loading it must not load the QMP client
    (asyncio, qemu.qmp, and the log level migtest.qmp sets on it)."""
    probe = (
        "import sys, migtest.report.jobpage; print(*sorted(m for m in sys.modules "
        "if m.partition('.')[0] in ('asyncio', 'qemu') or m in ('migtest.qmp', 'migtest.machine')))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    ).stdout.split()
    assert loaded == []


#: The code that writes or reads what a test leaves in its results.
CODE = [
    *(ROOT / "lib" / "migtest").rglob("*.py"),
    *(ROOT / "tests" / "migration").rglob("*.py"),
    *(ROOT / "scripts" / name for name in ("bench", "soak", "avocado_jobs.py")),
]


def string_literals(path: Path) -> List[str]:
    """The string literals of a Python file, docstrings left out."""
    tree = ast.parse(path.read_text(), str(path))
    documented = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, documented) and node.body and isinstance(node.body[0], ast.Expr)
    }
    return [
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
        and id(node) not in docstrings
    ]  # fmt: skip


def test_artifact_names_are_spelled_only_in_artifacts() -> None:
    """Writers and readers take every name from migtest.artifacts, so that
    renaming a file there renames it for both; a copy of the name left
    anywhere else would make its reader find nothing, silently."""
    names = [METRICS_FILE, PLOT_FILE, TRACE_FILE, REPORT_FILE, console_file("")]
    # The output file's name is only a suffix, too common to look for in a
    # string: found as a literal of its own, it builds a file name.
    suffix = output_file("")
    spelled = {
        str(path.relative_to(ROOT)): found
        for path in CODE
        if path.name != "artifacts.py"
        for found in [
            [s for s in string_literals(path) if s == suffix or any(n in s for n in names)]
        ]
        if found
    }
    assert spelled == {}


def test_qemu_versions_are_said_once_or_by_each_run(job: Path, tmp_path: Path) -> None:
    """One QEMU for every run: said once, above the grid; the pair when the
    source's and the destination's differ."""
    copy = tmp_path / "job"
    shutil.copytree(job, copy)
    (metrics,) = copy.glob(f"test-results/*Precopy.test_unix*/data/{METRICS_FILE}")
    report = json.loads(metrics.read_text())
    version = report["qemu"]["src"]
    assert re.fullmatch(r"\d+\.\d+\.\d+", version) and report["qemu"]["dst"] == version
    assert f"QEMU <b>{version}</b>" in report_of(copy).read_text()
    report["qemu"] = {"src": "7.2.22", "dst": "10.0.13"}
    metrics.write_text(json.dumps(report))
    assert "QEMU <b>7.2.22 → 10.0.13</b>" in report_of(copy).read_text()


def test_a_real_job_and_its_rerun_elsewhere_merge(job: Path, tmp_path: Path) -> None:
    """The job, and a copy of it standing for a rerun on another host with
    another QEMU: one cell holds both runs of a test, each its own."""
    other = tmp_path / "other-host" / job.name
    shutil.copytree(job, other)
    results = json.loads((other / "results.json").read_text())
    results["job_id"] = "f" * 40
    (other / "results.json").write_text(json.dumps(results))
    (metrics,) = other.glob(f"test-results/*Precopy.test_unix*/data/{METRICS_FILE}")
    report = json.loads(metrics.read_text())
    ours = report["sides"]["src"]["final"]["total-time"]
    report["sides"]["src"]["final"]["total-time"] = 987654
    report.update(host="other-host", qemu={"src": "10.0.13", "dst": "10.0.13"})
    metrics.write_text(json.dumps(report))
    page = report_of(job, str(other), "-o", str(tmp_path / "site" / "merged.html"))
    assert page == tmp_path / "site" / "merged.html"
    runs = runs_of(page).runs
    unix = [r for r in runs if "debug.log" in str(r["links"]) and "total" in r]
    assert [(r["job"], r["total"]) for r in unix] == [("A", str(ours)), ("B", "987654")]
    assert "10.0.13 · other-host" in unix[1]["origin"]
    assert "other-host" not in unix[0]["origin"]
    for run in runs:
        directory = {"A": job, "B": other}[run["job"]]
        for link in run["links"]:
            target = (page.parent / unquote(urlsplit(link).path)).resolve()
            assert directory.resolve() in target.parents, (run["job"], link)
    assert len(runs) == 4
