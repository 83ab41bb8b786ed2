"""The GitLab pipeline, ``.gitlab-ci.yml``, run on this host by gitlab-ci-local.

Neither GitLab nor docker is here: gitlab-ci-local (``make
gitlab-ci-local``) reads the file as GitLab does (GitLab's JSON schema,
``extends``, ``parallel:matrix``, variables) and runs its jobs in its
shell executor, in this tree, with this host's QEMU and venv.  The
listing must hold a job for every architecture of ``arch.yaml`` in each
QEMU version's group; one architecture's job then runs end to end,
narrowed to two tests by the pipeline's own ``AVOCADO_EXTRA_ARGS`` (the
job's shape stays that of the real one), and the ``report`` job merges
it.  Its JUnit file, its artifacts and the merged page are checked, each
check also shown failing on bad input.

Every run has its own state and results directories, removed afterwards,
and leaves no QEMU behind: the pipeline's jobs carry a marker variable
that every process they start inherits, so what is left can be found,
killed by PID and named.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import signal
import subprocess
import uuid
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Sequence, Set, Tuple
from urllib.parse import unquote, urlsplit

import pytest
import yaml
from conftest import ROOT

from migtest.artifacts import PLOT_FILE, REPORT_FILE
from migtest.versions import LABELS, cross_pairs
from migtest.wait import wait_for

GITLAB_CI_LOCAL = ROOT / ".tools" / "node_modules" / ".bin" / "gitlab-ci-local"
#: Every job has an image; this runs them on this host all the same.
SHELL = ["--force-shell-executor"]
#: The job run end to end: this host's QEMU on aarch64 (TCG only; x86_64
#: would add KVM variants, several times slower on this host's KVM).
JOB = "qemu-7.2: [aarch64]"
#: Two tests: a precopy over TCP, and a destination nobody listens on.
NARROW = "-t seed,tcp"
EXPECTED_TESTS = ("Precopy.test_tcp", "BadDestination.test_nobody_listening")
#: The run takes about 30 s here (20 s of it Avocado's job).
RUN_TIMEOUT = 300.0
#: The variable the pipeline's processes inherit, to find them afterwards.
MARKER = "MIGTEST_GITLAB_CI_SELFTEST"
#: Make's own variables, and those of the Makefile an environment would
#: set: a job on GitLab starts without them, so this one does too.
NOT_INHERITED = ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES", "VARIANTS", "AVOCADO_ARGS",
                 "RESULTS", "PARALLEL", "ARCHES")  # fmt: skip

needs_tool = pytest.mark.skipif(
    not GITLAB_CI_LOCAL.exists(), reason="gitlab-ci-local is not installed: make gitlab-ci-local"
)


# -- what the pipeline must hold -----------------------------------------------


class _MuxLoader(yaml.SafeLoader):
    """Reads a variants file, its ``!mux`` nodes as plain mappings."""


_MuxLoader.add_constructor("!mux", lambda loader, node: loader.construct_mapping(node))


def variant_arches() -> List[str]:
    """The architectures of ``arch.yaml``: those every QEMU version's jobs cover."""
    text = (ROOT / "tests/migration/variants/arch.yaml").read_text()
    return list(yaml.load(text, Loader=_MuxLoader)["arch"])


MATRIX_JOB = re.compile(r"^(?P<group>.+): \[(?P<arch>[^\]]+)\]$")


def listing_problems(jobs: Sequence[Mapping[str, Any]], arches: Sequence[str]) -> List[str]:
    """What is wrong with the jobs ``gitlab-ci-local --list-json`` lists.

    Each group of the ``test`` stage (a QEMU version) must have one job
    per architecture, and a ``report`` job after them must run whatever
    their outcome, since a failed suite is when its page is wanted.
    """
    problems: List[str] = []
    groups: Dict[str, Set[str]] = {}
    for job in jobs:
        if job["stage"] != "test":
            continue
        found = MATRIX_JOB.match(job["name"])
        if found is None:
            problems.append(f"test job {job['name']!r} is not one of an architecture matrix")
            continue
        groups.setdefault(found["group"], set()).add(found["arch"])
    if not groups:
        problems.append("no test jobs")
    for group, present in groups.items():
        if set(arches) - present:
            problems.append(f"{group} has no job for {', '.join(sorted(set(arches) - present))}")
        if present - set(arches):
            problems.append(f"{group} has jobs for {', '.join(sorted(present - set(arches)))}, "
                            "which arch.yaml does not have")  # fmt: skip
    reports = [job for job in jobs if job["name"] == "report"]
    if not reports:
        problems.append("no report job")
    elif reports[0]["stage"] == "test" or reports[0]["when"] != "always":
        problems.append(f"the report job must run after the tests, always: {reports[0]}")
    return problems


def version_problems(pipeline: Mapping[str, Any]) -> List[str]:
    """What is wrong with the QEMU versions the expanded pipeline's jobs ask for.

    A job of fetched versions names the labels to fetch (``QEMU_VERSIONS``)
    and the nodes of ``versions.yaml`` to run (``QEMU_NODES``): each node
    must exist, its group must be named too (Avocado's filter drops only
    the siblings of what it names), and its versions must be fetched.
    """
    same = {f"/run/qemu/same/{label}": {label} for label in LABELS}
    cross = {f"/run/qemu/cross/{src}-to-{dst}": {src, dst} for src, dst in cross_pairs()}
    problems: List[str] = []
    for name, job in pipeline.items():
        variables = job.get("variables") if isinstance(job, dict) else None
        if name.startswith(".") or not isinstance(variables, dict) or "QEMU_NODES" not in variables:
            continue
        fetched = set(str(variables.get("QEMU_VERSIONS", "")).split())
        if fetched - set(LABELS):
            problems.append(f"{name}: QEMU_VERSIONS {sorted(fetched - set(LABELS))} are not "
                            f"labels of lib/migtest/versions.py ({', '.join(LABELS)})")  # fmt: skip
        nodes = str(variables["QEMU_NODES"]).split()
        for node in nodes:
            if node in ("/run/qemu/same", "/run/qemu/cross"):
                continue
            needed = same.get(node) or cross.get(node)
            if needed is None:
                problems.append(f"{name}: {node} is no node of versions.yaml")
                continue
            if node.rsplit("/", 1)[0] not in nodes:
                problems.append(f"{name}: {node} without its group {node.rsplit('/', 1)[0]}")
            if needed - fetched:
                problems.append(f"{name}: {node} needs QEMU {', '.join(sorted(needed - fetched))}, "
                                "which QEMU_VERSIONS does not fetch")  # fmt: skip
    return problems


# -- what a job leaves ---------------------------------------------------------


def job_slug(name: str) -> str:
    """GitLab's ``CI_JOB_NAME_SLUG``: the name lowercased, runs of other
    characters than letters and digits made one ``-``, at most 63 long."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:63].rstrip("-")


def expand(text: str, variables: Mapping[str, str]) -> str:
    """``$NAME`` and ``${NAME}`` of ``variables`` in ``text``, as GitLab expands paths."""
    return re.sub(r"\$\{?(\w+)\}?", lambda found: variables.get(found[1], found[0]), text)


def junit_problems(paths: Sequence[Path], expected: Sequence[str]) -> List[str]:
    """What is wrong with the files a job's JUnit report pattern matched.

    One xunit file of Avocado's, whose counts agree with its test cases,
    with a passing case for each of ``expected`` (``Class.test``) and no
    other.
    """
    if len(paths) != 1:
        return [f"the JUnit pattern matched {len(paths)} files, not 1: {list(map(str, paths))}"]
    try:
        suite = ElementTree.parse(paths[0]).getroot()
    except ElementTree.ParseError as exc:
        return [f"{paths[0]} is not XML: {exc}"]
    cases = suite.findall("testcase")
    problems = []
    if suite.get("tests") != str(len(cases)):
        problems.append(f"tests={suite.get('tests')!r} but {len(cases)} test cases")
    names = [str(case.get("name")).split(":", 1)[-1].split(";")[0] for case in cases]
    if sorted(names) != sorted(expected):
        problems.append(f"test cases {names}, expected {list(expected)}")
    for case, name in zip(cases, names):
        if len(case):
            problems.append(f"{name} did not pass: {[child.tag for child in case]}")
    return problems


def artifact_problems(jobdir: Path) -> List[str]:
    """What a job's Avocado directory lacks among what its artifacts are for:
    the JUnit file, both HTML reports, the job's log, and for each test its
    log and timeline plot."""
    problems = [
        f"{jobdir.name} has no {name}"
        for name in ("results.xml", "results.html", REPORT_FILE, "job.log", "results.json")
        if not (jobdir / name).is_file()
    ]
    tests = sorted(p for p in (jobdir / "test-results").glob("*") if p.name != "by-status")
    if not tests:
        problems.append(f"{jobdir.name} has no test results")
    for test in tests:
        for name in ("debug.log", f"data/{PLOT_FILE}"):
            if not (test / name).is_file():
                problems.append(f"{test.name} has no {name}")
    return problems


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.hrefs: List[str] = []

    def handle_starttag(self, tag: str, attrs: List[Tuple[str, str | None]]) -> None:
        self.hrefs += [value for name, value in attrs if name == "href" and value]


def merged_report_problems(page: Path, jobdirs: Sequence[Path]) -> List[str]:
    """What is wrong with the merged page of ``jobdirs``: every test of every
    job must be on it, and each of its links to a file must reach one (the
    report job keeps the job directories next to the page for that)."""
    if not page.is_file():
        return [f"no merged report {page}"]
    text = page.read_text()
    problems = []
    for jobdir in jobdirs:
        for test in json.loads((jobdir / "results.json").read_text())["tests"]:
            name = test["name"].split(";")[0].split(":", 1)[-1]
            if name not in text:
                problems.append(f"{name} of {jobdir.parent.name} is not on the page")
    links = _Links()
    links.feed(text)
    for href in links.hrefs:
        parts = urlsplit(href)
        if parts.scheme or parts.netloc or not parts.path:
            continue
        if not (page.parent / unquote(parts.path)).exists():
            problems.append(f"link {href} reaches nothing")
    if not links.hrefs:
        problems.append("the page links to nothing")
    return problems


# -- running gitlab-ci-local ---------------------------------------------------


@dataclass
class Pipeline:
    """One gitlab-ci-local state: its directories in this tree, all its own."""

    token: str
    #: gitlab-ci-local's state (expanded pipeline, job logs, artifacts),
    #: relative to the tree, as its --state-dir wants.
    state: str
    #: The pipeline's RESULTS_ROOT: where the jobs write their results.
    results: str

    def run(self, *arguments: str, timeout: float = 60.0) -> str:
        """gitlab-ci-local's standard output; its failure is an assertion quoting it.

        It runs in a session of its own, so a deadline that passes takes
        it and everything it started that stayed in that session.
        """
        env = {k: v for k, v in os.environ.items() if k not in NOT_INHERITED}
        logs = ROOT / self.state / "selftest"
        logs.mkdir(parents=True, exist_ok=True)
        command = [str(GITLAB_CI_LOCAL), *SHELL, "--state-dir", self.state, "--no-color",
                   f"--variable={MARKER}={self.token}",
                   f"--variable=RESULTS_ROOT={self.results}", *arguments]  # fmt: skip
        with (logs / "stdout").open("wb") as out, (logs / "stderr").open("wb") as err:
            process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=err,
                                       start_new_session=True)  # fmt: skip
            try:
                wait_for(
                    lambda: (process.poll() is not None, self._tail(logs / "stdout")),
                    what=f"gitlab-ci-local {' '.join(arguments)} to finish",
                    timeout=timeout,
                    interval=0.2,
                )
            finally:
                if process.poll() is None:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait()
        assert process.returncode == 0, (
            f"gitlab-ci-local {' '.join(arguments)} exited with {process.returncode}:\n"
            f"{self._tail(logs / 'stdout')}\n{self._tail(logs / 'stderr')}"
        )
        return (logs / "stdout").read_text()

    @staticmethod
    def _tail(path: Path) -> str:
        return path.read_text(errors="replace")[-3000:]

    def expanded(self) -> Dict[str, Any]:
        """The pipeline as gitlab-ci-local expanded it (``extends`` resolved)."""
        return dict(yaml.safe_load((ROOT / self.state / "expanded-gitlab-ci.yml").read_text()))

    def artifacts(self, job: str) -> Path:
        """Where the job's artifacts were exported, at paths relative to the
        project as GitLab keeps them, in a directory named as gitlab-ci-local
        names a job's (``safeDockerString``: each run of characters other
        than word characters and ``-`` written in unpadded base64url)."""
        safe = re.sub(
            r"[^A-Za-z0-9_-]+",
            lambda run: base64.urlsafe_b64encode(run[0].encode()).decode().rstrip("="),
            job,
        )
        exported = ROOT / self.state / "artifacts" / safe
        assert exported.is_dir(), f"no artifacts of {job!r} in {exported.parent}"
        return exported


def marked_processes(token: str) -> Dict[int, str]:
    """The processes whose environment holds this run's marker, by PID, with their command."""
    found = {}
    needle = f"{MARKER}={token}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if needle in (entry / "environ").read_bytes().split(b"\0"):
                command = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
                found[int(entry.name)] = command.decode(errors="replace")
        except OSError:  # gone meanwhile, or not ours to read
            continue
    return found


def remove_if_empty(path: Path) -> None:
    """Remove ``path`` if nothing else (a user's own pipeline run) is in it."""
    try:
        path.rmdir()
    except OSError:
        pass


@pytest.fixture
def pipeline() -> Iterator[Pipeline]:
    """A state of gitlab-ci-local's own; after the test, it and its
    results are gone, and no process that carried its marker is left."""
    token = uuid.uuid4().hex[:12]
    state = Pipeline(token, f".gitlab-ci-local/selftest-{token}", f"results/selftest-{token}")
    try:
        yield state
    finally:
        left = marked_processes(token)
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for directory in (state.state, state.results):
            shutil.rmtree(ROOT / directory, ignore_errors=True)
            remove_if_empty((ROOT / directory).parent)
        assert not left, f"processes of the pipeline were left running (killed now): {left}"


# -- the pipeline, listed and run ----------------------------------------------


@needs_tool
def test_every_qemu_version_has_a_job_per_architecture_then_the_report(
    pipeline: Pipeline,
) -> None:
    jobs = json.loads(pipeline.run("--list-json"))
    assert listing_problems(jobs, variant_arches()) == []
    assert version_problems(pipeline.expanded()) == []


@needs_tool
def test_one_architecture_runs_end_to_end_and_the_report_merges_it(pipeline: Pipeline) -> None:
    # Exit status 0: both jobs passed (the report job too, so it merged).
    pipeline.run(JOB, "report", f"--variable=AVOCADO_EXTRA_ARGS={NARROW}", timeout=RUN_TIMEOUT)
    slug = job_slug(JOB)
    # The job's artifacts: its Avocado directory, whole.
    exported = pipeline.artifacts(JOB)
    jobdirs = sorted((exported / pipeline.results / slug).glob("job-*"))
    assert len(jobdirs) == 1, jobdirs
    assert artifact_problems(jobdirs[0]) == []
    # Its JUnit report: the pattern GitLab would read, expanded as GitLab
    # expands it, matched among the artifacts.
    pattern = pipeline.expanded()[JOB.split(":")[0]]["artifacts"]["reports"]["junit"]
    xunit = expand(pattern, {"RESULTS_ROOT": pipeline.results, "CI_JOB_NAME_SLUG": slug})
    assert junit_problems(sorted(exported.glob(xunit)), EXPECTED_TESTS) == []
    # The report job's artifacts: the merged page, with what it links to.
    merged = pipeline.artifacts("report") / pipeline.results
    page = merged / REPORT_FILE
    assert merged_report_problems(page, sorted(merged.glob(f"{slug}/job-*"))) == []


# -- each check, failing on what it must refuse --------------------------------

ARCHES = ["x86_64", "aarch64"]


def listed(*names: str, report: str = "always") -> List[Dict[str, str]]:
    jobs = [{"name": name, "stage": "test", "when": "on_success"} for name in names]
    return [*jobs, {"name": "report", "stage": "report", "when": report}]


def test_the_listing_check_names_a_missing_architecture_or_report() -> None:
    whole = listed("qemu-7.2: [x86_64]", "qemu-7.2: [aarch64]")
    assert listing_problems(whole, ARCHES) == []
    assert listing_problems(listed("qemu-7.2: [x86_64]", "qemu-11.1.3: [x86_64]"), ARCHES) == [
        "qemu-7.2 has no job for aarch64",
        "qemu-11.1.3 has no job for aarch64",
    ]
    extra = listed("q: [x86_64]", "q: [aarch64]", "q: [sparc64]", "lint")
    assert listing_problems(extra, ARCHES) == [
        "test job 'lint' is not one of an architecture matrix",
        "q has jobs for sparc64, which arch.yaml does not have",
    ]
    assert listing_problems(whole[:-1], ARCHES) == ["no report job"]
    assert (
        "the report job must run after the tests, always"
        in listing_problems(listed("q: [x86_64]", "q: [aarch64]", report="on_success"), ARCHES)[0]
    )
    assert listing_problems(whole[-1:], ARCHES) == ["no test jobs"]


def test_the_architectures_are_arch_yamls() -> None:
    assert variant_arches() == ["x86_64", "aarch64", "s390x", "ppc64", "riscv64"]


def versions_job(versions: str, nodes: str) -> Dict[str, Any]:
    return {"qemu-x": {"variables": {"QEMU_VERSIONS": versions, "QEMU_NODES": nodes}}}


def test_the_versions_check_refuses_unknown_or_unfetched_versions_and_lone_nodes() -> None:
    good = versions_job("7.2 10.0.13", "/run/qemu/cross /run/qemu/cross/7.2-to-10.0.13")
    assert version_problems({**good, ".template": {}, "stages": ["test"]}) == []
    assert version_problems(versions_job("11.1.4", "/run/qemu/same /run/qemu/same/11.1.4")) == [
        "qemu-x: QEMU_VERSIONS ['11.1.4'] are not labels of lib/migtest/versions.py "
        f"({', '.join(LABELS)})",
        "qemu-x: /run/qemu/same/11.1.4 is no node of versions.yaml",
    ]
    assert version_problems(versions_job("11.1.3", "/run/qemu/same/11.1.3")) == [
        "qemu-x: /run/qemu/same/11.1.3 without its group /run/qemu/same"
    ]
    assert version_problems(
        versions_job("7.2", "/run/qemu/cross /run/qemu/cross/7.2-to-10.0.13")
    ) == [
        "qemu-x: /run/qemu/cross/7.2-to-10.0.13 needs QEMU 10.0.13, "
        "which QEMU_VERSIONS does not fetch"
    ]


def test_slugs_and_paths_expand_as_gitlab_does() -> None:
    assert job_slug("qemu-7.2: [x86_64]") == "qemu-7-2-x86-64"
    assert job_slug("X" * 70) == "x" * 63
    assert expand("$A/${B}/$C", {"A": "a", "B": "b"}) == "a/b/$C"


XUNIT = """<?xml version="1.0" encoding="UTF-8"?>
<testsuite name="job" tests="{count}" errors="0" failures="0" skipped="0">
  <testcase classname="Precopy" name="tests/migration/precopy.py:Precopy.test_tcp;run-1"/>
  <testcase classname="BadDestination"
            name="tests/migration/failures.py:BadDestination.test_nobody_listening;run-1">{inner}</testcase>
</testsuite>
"""


def test_the_junit_check_wants_one_file_every_expected_test_and_no_failure(tmp_path: Path) -> None:
    good = tmp_path / "good.xml"
    good.write_text(XUNIT.format(count=2, inner=""))
    assert junit_problems([good], EXPECTED_TESTS) == []
    assert junit_problems([], EXPECTED_TESTS) == ["the JUnit pattern matched 0 files, not 1: []"]
    assert "matched 2 files" in junit_problems([good, good], EXPECTED_TESTS)[0]
    failed = tmp_path / "failed.xml"
    failed.write_text(XUNIT.format(count=3, inner='<failure message="bad"/>'))
    assert junit_problems([failed], EXPECTED_TESTS) == [
        "tests='3' but 2 test cases",
        "BadDestination.test_nobody_listening did not pass: ['failure']",
    ]
    assert junit_problems([good], ["Precopy.test_unix"]) == [
        "test cases ['Precopy.test_tcp', 'BadDestination.test_nobody_listening'], "
        "expected ['Precopy.test_unix']"
    ]
    broken = tmp_path / "broken.xml"
    broken.write_text("<testsuite>")
    assert "is not XML" in junit_problems([broken], EXPECTED_TESTS)[0]


def fake_job(jobdir: Path, tests: Sequence[str] = ("precopy.py:Precopy.test_tcp",)) -> Path:
    """An Avocado job directory holding what a job's artifacts are for."""
    for name in ("results.xml", "results.html", REPORT_FILE, "job.log"):
        (jobdir / name).parent.mkdir(parents=True, exist_ok=True)
        (jobdir / name).write_text("")
    entries = []
    for number, test in enumerate(tests, 1):
        test_dir = jobdir / "test-results" / f"{number}-{test.replace('/', '_')}"
        (test_dir / "data").mkdir(parents=True)
        (test_dir / "debug.log").write_text("")
        (test_dir / "data" / PLOT_FILE).write_text("<svg/>")
        entries.append({"name": f"tests/migration/{test};run-1", "logdir": str(test_dir)})
    (jobdir / "results.json").write_text(json.dumps({"tests": entries}))
    return jobdir


def test_the_artifact_check_names_what_a_job_directory_lacks(tmp_path: Path) -> None:
    jobdir = fake_job(tmp_path / "job-1")
    assert artifact_problems(jobdir) == []
    (jobdir / "results.xml").unlink()
    plot = next(jobdir.glob(f"test-results/*/data/{PLOT_FILE}"))
    plot.unlink()
    assert artifact_problems(jobdir) == [
        "job-1 has no results.xml",
        f"{plot.parent.parent.name} has no data/{PLOT_FILE}",
    ]
    empty = tmp_path / "job-2"
    empty.mkdir()
    assert artifact_problems(empty) == [
        f"job-2 has no {name}"
        for name in ("results.xml", "results.html", REPORT_FILE, "job.log", "results.json")
    ] + ["job-2 has no test results"]


def test_the_merged_report_check_wants_every_test_and_links_that_reach_files(
    tmp_path: Path,
) -> None:
    jobdir = fake_job(tmp_path / "qemu-7-2-x86-64" / "job-1", ["precopy.py:Precopy.test_tcp"])
    page = tmp_path / REPORT_FILE
    plot = f"qemu-7-2-x86-64/job-1/test-results/1-precopy.py:Precopy.test_tcp/data/{PLOT_FILE}"
    page.write_text(f'<p>Precopy.test_tcp</p><a href="{plot.replace(":", "%3A")}">plot</a>'
                    '<a href="https://gitlab.example/">elsewhere</a>')  # fmt: skip
    assert merged_report_problems(page, [jobdir]) == []
    assert merged_report_problems(tmp_path / "none.html", [jobdir]) == [
        f"no merged report {tmp_path / 'none.html'}"
    ]
    page.write_text('<p>nothing</p><a href="qemu-7-2-x86-64/job-1/gone.svg">plot</a>')
    assert merged_report_problems(page, [jobdir]) == [
        "Precopy.test_tcp of qemu-7-2-x86-64 is not on the page",
        "link qemu-7-2-x86-64/job-1/gone.svg reaches nothing",
    ]
    page.write_text("<p>Precopy.test_tcp</p>")
    assert merged_report_problems(page, [jobdir]) == ["the page links to nothing"]


def test_a_process_left_by_the_pipeline_is_found_by_its_marker() -> None:
    token = uuid.uuid4().hex[:12]
    sleeper = subprocess.Popen(["sleep", "60"], env={**os.environ, MARKER: token})
    try:
        found = marked_processes(token)
        assert list(found) == [sleeper.pid] and found[sleeper.pid].startswith("sleep 60")
    finally:
        sleeper.kill()
        sleeper.wait()
    assert marked_processes(token) == {}
