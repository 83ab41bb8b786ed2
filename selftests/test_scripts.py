"""scripts/soak and scripts/bench, run for real on the quickest tests.

What matters in both is the report a person acts on: that every test shows
up with the right counts and plausible numbers, that a failure is named with
its reason and log, and that the exit status says whether all passed.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from contextlib import suppress
from pathlib import Path
from typing import Dict, List, Set, Tuple

import pytest
from conftest import ROOT, qemu_or_skip

DEPRECATED = "tests/migration/deprecated.py"
DEPRECATED_TEST = "tests/migration/deprecated.py:DeprecatedCommands.test_removed_commands"
UNIX = "tests/migration/precopy.py:Precopy.test_unix"
#: A duration as both scripts print it.
SECONDS = r"\d+\.\d\d"


@pytest.fixture(autouse=True)
def x86_qemu() -> None:
    qemu_or_skip("x86_64")


def run(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / script), *args],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def rows(table: str, first: str) -> Dict[str, List[str]]:
    """Table lines whose first cell starts with ``first``, split on 2+ spaces."""
    cells = [re.split(r"\s{2,}", line.strip()) for line in table.splitlines()]
    return {row[0]: row for row in cells if row[0].startswith(first)}


def test_soak_counts_a_passing_test(tmp_path: Path) -> None:
    result = run("soak", "--runs", "1", "--arch", "x86_64", "--results", str(tmp_path), DEPRECATED)
    assert result.returncode == 0, result.stdout + result.stderr
    _, arch, runs, passes, not_pass, median, longest = rows(result.stdout, "tests/")[
        DEPRECATED_TEST
    ]
    assert (arch, runs, passes, not_pass) == ("x86_64", "1", "1", "0")
    assert re.fullmatch(f"{SECONDS} s", median) and median == longest
    assert 0 < float(median.split()[0]) < 60
    assert "all 1 runs passed" in result.stdout
    assert len(list(tmp_path.glob("run001-x86_64-*/job-*/results.json"))) == 1


def test_soak_reports_a_failure_with_reason_and_log(tmp_path: Path) -> None:
    result = run(
        "soak", "--runs", "1", "--arch", "x86_64", "--results", str(tmp_path),
        "--avocado-arg", "-p qemu_bin=/bin/true", DEPRECATED,
    )  # fmt: skip
    assert result.returncode == 1, result.stdout + result.stderr
    row = rows(result.stdout, "tests/")[DEPRECATED_TEST]
    assert row[2:5] == ["1", "0", "1 (ERROR 1)"]
    assert "1 of 1 runs did not pass" in result.stdout
    assert f"{DEPRECATED_TEST} [x86_64, run 1] ERROR:" in result.stdout
    assert "'qemu_bin': accepted a QEMU system emulator" in result.stdout
    (log,) = re.findall(r"^  log: (.*)$", result.stdout, re.M)
    assert Path(log).is_file() and Path(log).name == "debug.log"


def test_soak_reports_a_job_that_cannot_run(tmp_path: Path) -> None:
    missing = "tests/migration/no_such_test.py"
    result = run("soak", "--runs", "1", "--arch", "x86_64", "--results", str(tmp_path), missing)
    assert result.returncode == 1
    assert "(avocado job) [x86_64, run 1] JOB-ERROR: exit status" in result.stdout
    assert f"No tests found for given test references: {missing}" in result.stdout


def processes() -> Dict[int, Tuple[int, int, str, str]]:
    """pid -> (parent, session, state, command name) of every live process."""
    found = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue  # it ended meanwhile
        name = text[text.index("(") + 1 : text.rindex(")")]
        state, parent, _, session = text[text.rindex(")") + 2 :].split()[:4]
        found[int(stat.parent.name)] = (int(parent), int(session), state, name)
    return found


def migrating(sessions: Set[int]) -> bool:
    """A destination QEMU runs in one of ``sessions`` (not just a QEMU probe)."""
    for pid, (_, session, _, name) in processes().items():
        if name.startswith("qemu-system") and session in sessions:
            with suppress(OSError):
                if b"-incoming" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    return True
    return False


def test_soak_interrupted_stops_load_and_avocado(tmp_path: Path) -> None:
    """Ctrl-C in the middle of a migration: nothing soak started survives."""
    soak = subprocess.Popen(
        [sys.executable, str(ROOT / "scripts/soak"), "--runs", "3", "--arch", "x86_64",
         "--load", "--results", str(tmp_path), UNIX],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        children: Set[int] = set()
        sessions: Set[int] = set()  # Avocado runs in a session of its own
        while not migrating(sessions):
            assert time.monotonic() < deadline, "no migration started"
            time.sleep(0.1)
            children = {pid for pid, (parent, *_) in processes().items() if parent == soak.pid}
            sessions = children & {session for _, session, *_ in processes().values()}
        assert len(children) == 3, "two load workers and Avocado"
        soak.send_signal(signal.SIGINT)
        out, err = soak.communicate(timeout=60)
    finally:
        if soak.poll() is None:
            soak.kill()
            soak.wait()
    assert soak.returncode == 130, out + err
    assert "interrupted: reporting the runs that finished" in err
    left = [
        pid
        for pid, (_, session, state, _) in processes().items()
        if (pid in children or session in sessions) and state != "Z"
    ]
    assert left == []


def test_bench_splits_wall_time(tmp_path: Path) -> None:
    result = run("bench", "--results", str(tmp_path), DEPRECATED, UNIX)
    assert result.returncode == 0, result.stdout + result.stderr
    tests = rows(result.stdout, "deprecated.py") | rows(result.stdout, "precopy.py")
    assert set(tests) == {DEPRECATED_TEST.split("/")[-1], UNIX.split("/")[-1]}
    for _, arch, status, *numbers in tests.values():
        assert (arch, status) == ("x86_64", "PASS")
        wall, _, boot, migrating, qmp, waiting, overhead, avocado = numbers
        assert all(re.fullmatch(SECONDS, n) for n in (wall, boot, migrating, qmp, waiting))
        assert float(avocado) > 0  # starting a runner process takes time
        # The parts add up, to the rounding of each.
        parts = float(boot) + float(migrating) + float(qmp)
        assert abs(parts - float(waiting)) < 0.02
        assert abs(float(wall) - float(waiting) - float(overhead)) < 0.02
        assert 0 < float(waiting) <= float(wall)
    deprecated, unix = (tests[name.split("/")[-1]] for name in (DEPRECATED_TEST, UNIX))
    assert deprecated[4] == "-" and float(deprecated[6]) == 0  # no migration
    assert float(unix[4]) > 0 and float(unix[6]) > 0  # migrated, and waited for it
    (totals,) = rows(result.stdout, "x86_64").values()
    tests_count, job, wall, avocado, other = totals[1], *map(float, totals[2:6])
    assert tests_count == "2" and job > wall > 0
    assert abs(job - wall - avocado - other) < 0.03
    assert re.search(
        f"precopy over unix: wall <= 3 s, x86_64: {SECONDS} s: (met|MISSED)", result.stdout
    )
    assert "all tests of one arch: job wall <= 40 s, x86_64" in result.stdout
    assert "our overhead per test <= 0.5 s, x86_64" in result.stdout


def test_bench_json(tmp_path: Path) -> None:
    result = run("bench", "--json", "--results", str(tmp_path), DEPRECATED)
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    (test,) = report["tests"]
    assert (test["test"], test["status"], test["runs"]) == (DEPRECATED_TEST, "PASS", 1)
    assert test["qemu_migration"] is None and test["wall"] > 0
    assert report["arches"]["x86_64"]["tests"] == 1
    (job,) = report["jobs"]
    assert job["exit_status"] == 0 and job["wall"] > test["wall"]
    assert {t["target"] for t in report["targets"]} == {
        "all tests of one arch: job wall",
        "our overhead per test",
    }


def test_bench_names_a_test_that_did_not_pass(tmp_path: Path) -> None:
    result = run(
        "bench", "--results", str(tmp_path), "--avocado-arg", "-p qemu_bin=/bin/true", DEPRECATED
    )
    assert result.returncode == 1
    assert f"- {DEPRECATED_TEST} [x86_64, run 1] ERROR: invalid value '/bin/true'" in result.stdout
    (log,) = re.findall(r"^  log: (.*)$", result.stdout, re.M)
    assert Path(log).is_file()
