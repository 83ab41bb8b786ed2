"""The report of several jobs: synthetic job directories laid out as Avocado
writes them, merged into one page; what goes wrong is refused or said."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence
from urllib.parse import unquote, urlsplit

import pytest

from migtest.artifacts import METRICS_FILE, REPORT_FILE, TRACE_FILE
from migtest.report import jobpage
from migtest.report.jobdata import GUEST_FELT_DOWNTIME, guest_felt_downtime, load_job
from migtest.report.links import Linker
from migtest.report.matrix import job_letter

UNIX = "tests/migration/precopy.py:Precopy.test_unix"
TCP = "tests/migration/precopy.py:Precopy.test_tcp"
#: A key left out of migration.json.
ABSENT = object()


@dataclass(frozen=True)
class Run:
    """One test of a synthetic job: what it ran and what QEMU said."""

    test: str = UNIX
    arch: str = "x86_64"
    accel: str = "tcg"
    status: str = "PASS"
    #: QEMU's total time (ms); None: the test wrote no migration.json.
    total: Optional[int] = 500
    downtime: int = 50
    qemu: str = "7.2.22"
    reason: str = ""
    felt: Any = ABSENT
    #: The host the test itself recorded in migration.json, if any.
    host: Optional[str] = None


def write_job(
    directory: Path,
    job_id: str,
    runs: Sequence[Run],
    host: Optional[str] = "alpha",
    spawner: str = "process",
):
    """A job of ``runs``: results.json, jobdata, sysinfo's host name (none
    when ``host`` is None, as with --disable-sysinfo) and each test's logs."""
    variants: Dict[str, Any] = {}
    tests = []
    for i, run in enumerate(runs, 1):
        variant_id = f"run-accel-{run.accel}-arch-{run.arch}-{i:04x}"
        variants[variant_id] = {
            "variant_id": variant_id,
            "variant": [[f"/run/arch/{run.arch}", [[f"/run/arch/{run.arch}", "arch", run.arch]]],
                        [f"/run/accel/{run.accel}",
                         [[f"/run/accel/{run.accel}", "accel", run.accel]]]],
        }  # fmt: skip
        logdir = directory / "test-results" / f"{i:03d}-{run.test.replace('/', '_')}_{variant_id}"
        (logdir / "data").mkdir(parents=True)
        (logdir / "debug.log").write_text(f"{job_id} {run.test}\n")
        (logdir / TRACE_FILE).write_text("")
        if run.total is not None:
            final = {"status": "completed", "total-time": run.total, "downtime": run.downtime}
            metrics: Dict[str, Any] = {
                "test": f"{i}-{run.test}", "arch": run.arch, "accel": run.accel,
                "qemu": {"src": run.qemu, "dst": run.qemu},
                "sides": {"src": {"start": 1.0, "phases": [], "samples": [], "final": final},
                          "dst": {"start": None, "phases": [], "samples": [], "final": {}}},
            }  # fmt: skip
            if run.felt is not ABSENT:
                metrics[GUEST_FELT_DOWNTIME] = run.felt
            if run.host:
                metrics["host"] = run.host
            (logdir / "data" / METRICS_FILE).write_text(json.dumps(metrics))
        tests.append({"name": f"{run.test};{variant_id}", "status": run.status,
                      "fail_reason": run.reason, "logdir": str(logdir),
                      "time_elapsed": 1.5})  # fmt: skip
    (directory / "jobdata").mkdir(parents=True)
    (directory / "jobdata" / "variants-1.json").write_text(json.dumps(list(variants.values())))
    (directory / "jobdata" / "args.json").write_text(
        json.dumps({"run.spawner": spawner, "run.test_parameters": []})
    )
    (directory / "results.json").write_text(json.dumps(
        {"job_id": job_id, "start": "2026-12-01 10:00:00.1", "time": 9.0, "tests": tests,
         "pass": sum(r.status == "PASS" for r in runs),
         "failures": sum(r.status == "FAIL" for r in runs),
         "cancel": sum(r.status == "CANCEL" for r in runs)}))  # fmt: skip
    (directory / "job.log").write_text("")
    if host is not None:
        (directory / "sysinfo" / "pre").mkdir(parents=True)
        (directory / "sysinfo" / "pre" / "hostname").write_text(f"{host}\n")
    return directory


class Runs(HTMLParser):
    """Each run of a page: its job letter, text, links, and the text of its
    parts by class (status, origin, total, downtime, felt); every link too."""

    PARTS = ("status", "origin", "total", "downtime", "felt")
    VOID = ("br", "wbr", "img", "meta", "col")

    def __init__(self) -> None:
        super().__init__()
        self.runs: List[Dict[str, Any]] = []
        self.links: List[str] = []
        #: The open elements of the run being read: (tag, part or None).
        self._open: List[Any] = []

    def handle_starttag(self, tag: str, attrs: List[Any]) -> None:
        attributes = dict(attrs)
        classes = (attributes.get("class") or "").split()
        for name in ("href", "src"):
            if attributes.get(name):
                self.links.append(attributes[name])
                if self._open and name == "href":
                    self.runs[-1]["links"].append(attributes[name])
        if tag in self.VOID:
            return
        if not self._open and tag == "div" and "run" in classes:
            self.runs.append({"job": attributes.get("data-job"), "links": [], "text": ""})
        if self.runs and (self._open or (tag == "div" and "run" in classes)):
            self._open.append((tag, next((c for c in classes if c in self.PARTS), None)))

    def handle_endtag(self, tag: str) -> None:
        if self._open and tag not in self.VOID:
            self._open.pop()

    def handle_data(self, data: str) -> None:
        if self._open:
            self.runs[-1]["text"] += data
            for part in {part for _, part in self._open if part}:
                self.runs[-1][part] = self.runs[-1].get(part, "") + data


def runs_of(page: Path) -> Runs:
    parser = Runs()
    parser.feed(page.read_text())
    return parser


def assert_runs_are_their_jobs(page: Path, jobs: Dict[str, Path]) -> None:
    """Every run's links lead into the job its letter names, to its own test's log."""
    for run in runs_of(page).runs:
        job = jobs[run["job"]]
        assert run["links"], run
        for link in run["links"]:
            target = (page.parent / unquote(urlsplit(link).path)).resolve()
            assert job.resolve() in target.parents, (run["job"], link)
            if target.name == "debug.log":
                assert target.read_text().split()[0] == load_job(job).job_id, (run, link)


def test_two_jobs_of_one_test_stay_apart(tmp_path: Path) -> None:
    """The same test and variant on two hosts and QEMUs: two runs in one cell,
    each with its own job's status, numbers, origin and logs."""
    a = write_job(tmp_path / "a", "aaaa1111", [Run(total=111, downtime=11)], host="alpha")
    b = write_job(tmp_path / "b", "bbbb2222", [Run(status="FAIL", total=222, downtime=22,
                  qemu="10.0.13", reason="memory differs")], host="beta")  # fmt: skip
    page = tmp_path / "site" / "report.html"
    assert jobpage.main([str(a), str(b), "-o", str(page)]) == 0
    runs = runs_of(page).runs
    assert [(r["job"], r["status"], r["total"], r["downtime"]) for r in runs] == [
        ("A", "PASS", "111", "11"), ("B", "FAIL", "222", "22")]  # fmt: skip
    assert "7.2.22 · alpha" in runs[0]["origin"] and "10.0.13 · beta" in runs[1]["origin"]
    assert "tcg" not in runs[0]["origin"], "what every run shares is said once, above"
    assert "accelerator <b>tcg</b>" in page.read_text()
    assert "memory differs" in runs[1]["text"] and "memory differs" not in runs[0]["text"]
    assert_runs_are_their_jobs(page, {"A": a, "B": b})


def test_a_page_that_mixed_two_jobs_up_is_caught(tmp_path: Path) -> None:
    """The check above fails on a page whose runs link into the other job."""
    a = write_job(tmp_path / "a", "aaaa1111", [Run()])
    b = write_job(tmp_path / "b", "bbbb2222", [Run()])
    page = tmp_path / "report.html"
    jobpage.main([str(a), str(b), "-o", str(page)])
    html = page.read_text()
    page.write_text(
        html.replace('data-job="A"', 'data-job="X"').replace('data-job="B"', 'data-job="A"')
    )
    with pytest.raises(AssertionError):
        assert_runs_are_their_jobs(page, {"A": a, "X": b})


def test_tests_and_architectures_of_several_jobs_make_one_grid(tmp_path: Path) -> None:
    a = write_job(tmp_path / "a", "a1", [Run(arch="ppc64"), Run(arch="x86_64", accel="kvm")])
    b = write_job(tmp_path / "b", "b2", [Run(test=TCP, arch="loongarch64"), Run(arch="mips")])
    page = tmp_path / "report.html"
    jobpage.main([str(a), str(b), "-o", str(page)])
    html = page.read_text()
    heads = [h.split("</span>")[0] for h in html.split('<span class="arch">')[1:]]
    assert heads == ["x86_64", "ppc64", "loongarch64", "mips"], "known arches first, in order"
    assert html.count('<tr><th scope="row">') == 2
    runs = runs_of(page).runs
    assert [(r["job"], r["origin"]) for r in runs] == [
        ("A", "A kvm"), ("A", "A tcg"), ("B", "B tcg"), ("B", "B tcg")]  # fmt: skip


def test_runs_in_a_cell_go_by_job_accelerator_and_version(tmp_path: Path) -> None:
    a = write_job(tmp_path / "a", "a1", [
        Run(qemu="11.1.3"), Run(accel="kvm", qemu="7.2.22"), Run(qemu="7.2.22"),
        Run(qemu="10.0.13")])  # fmt: skip
    b = write_job(tmp_path / "b", "b2", [Run(qemu="7.2.22")])
    page = tmp_path / "report.html"
    jobpage.main([str(a), str(b), "-o", str(page)])
    assert [r["origin"] for r in runs_of(page).runs] == [
        "A tcg · 7.2.22", "A tcg · 10.0.13", "A tcg · 11.1.3", "A kvm · 7.2.22",
        "B tcg · 7.2.22"]  # fmt: skip


def test_a_job_without_tests_is_listed_and_shows_nothing(tmp_path: Path) -> None:
    a = write_job(tmp_path / "a", "a1", [Run()])
    empty = write_job(tmp_path / "empty", "e2", [])
    page = tmp_path / "report.html"
    jobpage.main([str(a), str(empty), "-o", str(page)])
    assert [r["job"] for r in runs_of(page).runs] == ["A"]
    assert str(empty) in page.read_text()
    jobpage.main([str(empty)])
    assert runs_of(empty / REPORT_FILE).runs == []


def test_host_comes_from_the_test_then_sysinfo_else_is_not_recorded(tmp_path: Path) -> None:
    a = write_job(tmp_path / "a", "a1", [Run(host="remote-1"), Run(test=TCP)], host="alpha")
    b = write_job(tmp_path / "b", "b2", [Run()], host=None)
    page = tmp_path / "report.html"
    jobpage.main([str(a), str(b), "-o", str(page)])
    origins = [r["origin"] for r in runs_of(page).runs]
    assert origins == ["A remote-1", "B host ?", "A alpha"]
    assert "host not recorded" in page.read_text()


def test_a_job_that_spawned_its_tests_elsewhere_does_not_lend_them_its_host(
    tmp_path: Path,
) -> None:
    """With Avocado's remote spawner, sysinfo names the job's host, not the
    tests': only a test that named its host has one."""
    job = write_job(tmp_path / "a", "a1", [Run(host="lab-2"), Run(test=TCP)], spawner="remote")
    jobpage.main([str(job)])
    page = job / REPORT_FILE
    assert [r["origin"] for r in runs_of(page).runs] == ["lab-2", "host ?"]
    assert "tests run by Avocado's remote spawner" in page.read_text()


@pytest.mark.parametrize(
    ("felt", "shown"),
    [(ABSENT, None), (None, None), (37, "37"), (12.5, "12.5"),
     ("fast", f"{GUEST_FELT_DOWNTIME} is not a number: 'fast'"), (True, "is not a number"),
     (-3, "is negative")],
)  # fmt: skip
def test_guest_felt_downtime_next_to_qemus(tmp_path: Path, felt: Any, shown: Optional[str]) -> None:
    job = write_job(tmp_path / "a", "a1", [Run(felt=felt)])
    jobpage.main([str(job)])
    (run,) = runs_of(job / REPORT_FILE).runs
    text = run["text"]
    if shown is None:
        assert "felt" not in run and "guest-felt" not in text
    elif shown[0].isdigit():
        assert run["felt"] == shown and f"downtime 50 ms · guest-felt {shown} ms" in text
    else:
        assert "felt" not in run and shown in text


def test_guest_felt_downtime_reads_numbers_only() -> None:
    assert guest_felt_downtime({GUEST_FELT_DOWNTIME: 4}) == (4.0, "")
    assert guest_felt_downtime({}) == (None, "")
    assert guest_felt_downtime({GUEST_FELT_DOWNTIME: float("nan")})[1].endswith("nan")


@pytest.mark.parametrize("layout", ["missing", "empty", "garbage"])
def test_a_directory_that_is_not_a_job_is_named(
    tmp_path: Path, layout: str, capsys: pytest.CaptureFixture[str]
) -> None:
    good = write_job(tmp_path / "good", "g1", [Run()])
    bad = tmp_path / "bad"
    if layout != "missing":
        bad.mkdir()
    if layout == "garbage":
        (bad / "results.json").write_text('{"tests": 3}')
    page = tmp_path / "report.html"
    with pytest.raises(SystemExit) as exited:
        jobpage.main([str(good), str(bad), "-o", str(page)])
    assert exited.value.code == 2
    assert f"{bad} is not an Avocado job results directory" in capsys.readouterr().err
    assert not page.exists()


def test_a_results_directory_of_jobs_says_to_name_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_job(tmp_path / "job-1", "j1", [Run()])
    write_job(tmp_path / "job-2", "j2", [Run()])
    with pytest.raises(SystemExit):
        jobpage.main([str(tmp_path), "-o", str(tmp_path / "x.html")])
    assert f"it holds 2 jobs: name them, e.g. {tmp_path}/job-*" in capsys.readouterr().err


def test_several_jobs_need_an_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = write_job(tmp_path / "a", "a1", [Run()])
    b = write_job(tmp_path / "b", "b2", [Run()])
    with pytest.raises(SystemExit) as exited:
        jobpage.main([str(a), str(b)])
    assert exited.value.code == 2
    assert "2 job directories need -o FILE" in capsys.readouterr().err
    assert not (a / REPORT_FILE).exists() and not (b / REPORT_FILE).exists()


@pytest.mark.parametrize("how", ["twice", "copy", "symlink"])
def test_the_same_job_twice_is_refused(
    tmp_path: Path, how: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Its runs would be counted twice, as if two hosts had run them."""
    a = write_job(tmp_path / "a", "a1", [Run()])
    other = a
    if how == "copy":
        other = Path(shutil.copytree(a, tmp_path / "copy"))
    elif how == "symlink":
        other = tmp_path / "latest"
        other.symlink_to("a")
    with pytest.raises(SystemExit):
        jobpage.main([str(a), str(other), "-o", str(tmp_path / "report.html")])
    assert f"{a} and {other} are the same " in capsys.readouterr().err


def test_job_letters_go_on_past_z() -> None:
    assert [job_letter(i) for i in (0, 1, 25, 26, 27, 51, 52, 701, 702)] == [
        "A", "B", "Z", "AA", "AB", "AZ", "BA", "ZZ", "AAA"]  # fmt: skip


def assert_links_stay_in(page: Path, tree: Path) -> List[Path]:
    """Every link of ``page`` is relative, and leads to a file inside ``tree``."""
    targets = []
    for link in runs_of(page).links:
        url = urlsplit(link)
        assert not url.scheme and not url.netloc and not url.path.startswith("/"), link
        target = Path(os.path.normpath(page.parent / unquote(url.path)))
        assert target.is_file(), f"{link}: no such file"
        assert tree in target.resolve().parents, f"{link} leaves {tree}"
        targets.append(target)
    return targets


def test_a_merged_page_copied_with_its_jobs_keeps_every_link(tmp_path: Path) -> None:
    """Page and jobs in separate folders of one tree; the tree moves."""
    tree = tmp_path / "ci"
    a = write_job(tree / "host-a" / "job-1", "a1", [Run(), Run(test=TCP)])
    b = write_job(tree / "host-b" / "job-2", "b2", [Run(qemu="10.0.13")])
    jobpage.main([str(a), str(b), "-o", str(tree / "pages" / "merged.html")])
    moved = tmp_path / "archive" / "ci"
    moved.parent.mkdir()
    tree.rename(moved)
    targets = assert_links_stay_in(moved / "pages" / "merged.html", moved)
    assert {t.name for t in targets} >= {"debug.log", TRACE_FILE, "job.log", "migration.svg"}
    assert len([t for t in targets if t.name == "debug.log"]) == 3


def test_a_link_that_would_break_in_a_copy_is_not_made(tmp_path: Path) -> None:
    """A test's logs that are not really in the job (a symlink out of it, or
    only at the absolute place results.json recorded) get no link: the page
    says they are missing rather than point outside what is copied."""
    outside = tmp_path / "original-results"
    job = write_job(tmp_path / "job", "j1", [Run(), Run(test=TCP)])
    logdirs = sorted((job / "test-results").iterdir())
    shutil.move(str(logdirs[0]), str(outside))
    logdirs[0].symlink_to(outside)
    results = json.loads((job / "results.json").read_text())
    gone = outside.with_name("elsewhere")
    shutil.move(str(logdirs[1]), str(gone))
    results["tests"][1]["logdir"] = str(gone)
    (job / "results.json").write_text(json.dumps(results))
    jobpage.main([str(job)])
    page = job / REPORT_FILE
    assert_links_stay_in(page, job.resolve())
    runs = runs_of(page).runs
    assert [r["links"] for r in runs] == [[], []]
    assert all("no logs in this job directory" in r["text"] for r in runs)


def test_the_link_check_fails_on_a_link_out_of_the_tree(tmp_path: Path) -> None:
    job = write_job(tmp_path / "job", "j1", [Run()])
    (tmp_path / "outside.log").write_text("")
    page = job / "page.html"
    page.write_text('<a href="../outside.log">x</a>')
    with pytest.raises(AssertionError, match="leaves"):
        assert_links_stay_in(page, job)
    page.write_text(f'<a href="file://{job}/job.log">x</a>')
    with pytest.raises(AssertionError):
        assert_links_stay_in(page, job)


def test_linker_links_inside_the_jobs_only(tmp_path: Path) -> None:
    job = tmp_path / "jobs" / "j"
    (job / "t").mkdir(parents=True)
    (job / "t" / "debug.log").write_text("")
    (tmp_path / "other.log").write_text("")
    links = Linker(tmp_path / "pages" / "x", [job])
    assert links.href(job / "t" / "debug.log") == "../../jobs/j/t/debug.log"
    assert links.href(job / "t" / "none.log") is None
    assert links.href(tmp_path / "other.log") is None
    (job / "escape.log").symlink_to(tmp_path / "other.log")
    assert links.href(job / "escape.log") is None
    (job / "t" / "a:b.log").write_text("")
    assert links.href(job / "t" / "a:b.log") == "../../jobs/j/t/a%3Ab.log"
