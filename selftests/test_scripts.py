"""scripts/soak and scripts/bench, run for real on the quickest tests; and
bench's reading of a test's logs, on logs made by hand.

What matters in both is the report a person acts on: that every test shows
up with the right counts and plausible numbers, that a failure is named with
its reason and log, and that the exit status says whether all passed.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import json
import re
import signal
import subprocess
import sys
import time
from contextlib import suppress
from datetime import datetime
from pathlib import Path
from types import ModuleType
from typing import Any, Dict, List, Set, Tuple

import pytest
from conftest import ROOT, as_in_a_terminal, qemu_or_skip

from migtest.artifacts import METRICS_FILE, TRACE_FILE
from migtest.machine import LAUNCH_PREFIX
from migtest.qmp import ANSWER_PREFIX, COMMAND_PREFIX, TRACE_LOGGER
from migtest.test import TRACE_FORMAT

DEPRECATED = "tests/migration/deprecated.py"
DEPRECATED_TEST = "tests/migration/deprecated.py:DeprecatedCommands.test_removed_commands"
UNIX = "tests/migration/precopy.py:Precopy.test_unix"
#: A duration as both scripts print it.
SECONDS = r"\d+\.\d\d"


def run(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run one of the scripts for real: its jobs need an x86_64 QEMU."""
    qemu_or_skip("x86_64")
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
    qemu_or_skip("x86_64")
    soak = subprocess.Popen(
        [sys.executable, str(ROOT / "scripts/soak"), "--runs", "3", "--arch", "x86_64",
         "--load", "--results", str(tmp_path), UNIX],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=as_in_a_terminal,
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
    # What bench printed, against what the job itself wrote.
    (results,) = tmp_path.glob("x86_64-1-*/job-*/results.json")
    entries = {
        str(entry["name"]).split("/")[-1]: entry
        for entry in json.loads(results.read_text())["tests"]
    }
    assert set(entries) == set(tests)
    for name, (_, arch, status, *numbers) in tests.items():
        assert (arch, status) == ("x86_64", "PASS")
        wall, _, boot, migrating, qmp, waiting, _, avocado = numbers
        assert all(re.fullmatch(SECONDS, n) for n in (wall, boot, migrating, qmp, waiting))
        assert wall == f"{entries[name]['time_elapsed']:.2f}"
        assert float(avocado) > 0  # starting a runner process takes time
        assert float(boot) > 0  # every test launches a QEMU, and asks it things
        assert 0 < float(waiting) <= float(wall)
    deprecated, unix = (tests[name.split("/")[-1]] for name in (DEPRECATED_TEST, UNIX))
    assert deprecated[4] == "-" and float(deprecated[6]) == 0  # no migration
    data = Path(entries[UNIX.split("/")[-1]]["logdir"]) / "data" / METRICS_FILE
    total_time = json.loads(data.read_text())["sides"]["src"]["final"]["total-time"] / 1000
    assert unix[4] == f"{total_time:.2f}"
    # The test sends 'migrate' before QEMU starts its clock, and sees the
    # migration completed after QEMU stopped it: by our log, it waited longer.
    assert float(unix[6]) >= total_time - 0.01
    (totals,) = rows(result.stdout, "x86_64").values()
    tests_count, job, wall, avocado, other = totals[1], *map(float, totals[2:6])
    assert tests_count == "2"
    assert abs(wall - sum(entry["time_elapsed"] for entry in entries.values())) < 0.01
    assert job > wall and other > 0  # Avocado's start and discovery take time
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


# -- bench's reading of a test's logs, on logs made by hand -------------------


@pytest.fixture
def bench(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """scripts/bench as a module, to call its parsing without running Avocado."""
    monkeypatch.syspath_prepend(str(ROOT / "scripts"))  # its avocado_jobs
    loader = importlib.machinery.SourceFileLoader("bench", str(ROOT / "scripts" / "bench"))
    spec = importlib.util.spec_from_loader("bench", loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "bench", module)  # dataclasses look their module up
    loader.exec_module(module)
    return module


#: The hand-made logs' clock: whole milliseconds after this moment.
EPOCH = datetime(2026, 1, 2, 3, 4, 5)


def asctime(ms: int) -> str:
    """A record's time as Python's logging writes it, ``ms`` after EPOCH."""
    moment = datetime.fromtimestamp(EPOCH.timestamp() + ms // 1000)
    return f"{moment:%Y-%m-%d %H:%M:%S},{ms % 1000:03d}"


def debug_line(ms: int, logger: str, message: str) -> str:
    """A record of debug.log, as Avocado writes a library's records there."""
    return f"[stdlog] {asctime(ms)} {logger} machine          L0137 DEBUG| {message}"


def trace_line(ms: int, name: str, message: str) -> str:
    """A record of the QMP trace, written with the format the tests use."""
    logger = f"{TRACE_LOGGER}.{name}"
    return TRACE_FORMAT % {"asctime": asctime(ms), "name": logger, "message": message}


def sent(ms: int, name: str, command: str, args: str = "{}") -> str:
    return trace_line(ms, name, f"{COMMAND_PREFIX}{command} {args}")


def answered(ms: int, name: str, result: str = "{}") -> str:
    return trace_line(ms, name, f"{ANSWER_PREFIX}{result}")


def write_test_logs(logdir: Path) -> None:
    """A precopy test's logs, every interval chosen so the figures are known.

    Waiting on QEMU: boot 0-0.5 s (src launched at 0, dst at 0.1, migrate
    sent at 0.5); migrating 0.5-1.502 s (until src answers 'completed');
    then pmemsave 2.0-2.4 s.  Round trips inside those intervals add
    nothing.  Unanswered: src's migrate-set-parameters (an error), dst's quit.
    """
    logdir.mkdir()
    (logdir / "debug.log").write_text("\n".join([
        debug_line(0, "migtest.machine.src", f"{LAUNCH_PREFIX}qemu-system-x86_64 -nodefaults"),
        debug_line(100, "migtest.machine.dst", f"{LAUNCH_PREFIX}qemu-system-x86_64 -incoming"),
        "    defer",  # a continuation line: no record of its own
        debug_line(150, "migtest.test", f"{LAUNCH_PREFIX}not a QEMU of ours"),
        debug_line(500, "migtest.machine.src", "migrate {'uri': 'unix:m.sock'}"),
        debug_line(3000, "migtest.test", f"{COMMAND_PREFIX}not a command"),
    ]) + "\n")  # fmt: skip
    (logdir / TRACE_FILE).write_text("\n".join([
        sent(250, "dst", "query-status"), answered(260, "dst", "{'status': 'inmigrate'}"),
        sent(300, "src", "query-status"), answered(310, "src", "{'status': 'running'}"),
        sent(500, "src", "migrate", "{'uri': 'unix:m.sock'}"), answered(510, "src"),
        sent(600, "src", "query-migrate"), answered(605, "src", "{'status': 'active'}"),
        sent(1500, "src", "query-migrate"),
        answered(1502, "src", "{'status': 'completed', 'total-time': 990}"),
        sent(1800, "src", "migrate-set-parameters", "{'downtime-limit': -1}"),
        sent(2000, "src", "pmemsave", "{'val': 0, 'size': 1024}"), answered(2400, "src"),
        sent(2500, "dst", "quit"),
    ]) + "\n")  # fmt: skip
    (logdir / "data").mkdir()
    sides = {"src": {"final": {"status": "completed", "total-time": 990}}, "dst": {"final": {}}}
    (logdir / "data" / METRICS_FILE).write_text(json.dumps({"sides": sides}))


def test_bench_reads_waits_from_the_logs_the_suite_writes(
    bench: ModuleType, tmp_path: Path
) -> None:
    logdir = tmp_path / "1-tests_migration_precopy.py_Precopy.test_unix"
    write_test_logs(logdir)
    entry: Dict[str, Any] = {
        "id": f"1-{UNIX}", "status": "PASS", "time_elapsed": 3.0, "logdir": str(logdir),
        "logfile": str(logdir / "debug.log"), "actual_time_start": 100.0,
        "actual_time_end": 103.25,
    }  # fmt: skip
    figures = bench.figures(entry, "x86_64", 1)
    expected = {"test": UNIX, "wall": 3.0, "qemu_migration": 0.99, "several_migrations": False,
                "boot": 0.5, "migrating": 1.002, "qmp": 0.4, "waiting": 1.902,
                "overhead": 1.098, "unanswered_commands": 2, "avocado": 0.25}  # fmt: skip
    assert {key: getattr(figures, key) for key in expected} == pytest.approx(expected, abs=1e-6)
