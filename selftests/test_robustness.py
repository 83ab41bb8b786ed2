"""Never hang, never leak: real Avocado runs that fail, hang and get
interrupted, and a look afterwards for anything of ours left behind."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

import pytest
from conftest import ROOT, as_in_a_terminal

from migtest.errors import WaitTimeout
from migtest.wait import wait_for

TEST = "tests/migration/precopy.py:Precopy.test_unix"
#: A test that migrates for seconds: two of them overlap, however they are scheduled.
SLOW_TEST = "tests/migration/capabilities.py:AutoConverge.test_throttle_steps"
#: Avocado tests made for these self-tests.
SELFTEST_TESTS = Path(__file__).parent / "avocado"


def qemu_wrapper(tmp_path: Path, *extra: str) -> tuple[Path, str]:
    """A qemu_bin that runs the real QEMU with ``extra`` arguments and a marker."""
    real = shutil.which("qemu-system-x86_64")
    if real is None:
        pytest.skip("qemu-system-x86_64 is not installed")
    token = f"migtest-selftest-{uuid.uuid4().hex[:12]}"
    wrapper = tmp_path / "qemu-wrapper"
    wrapper.write_text(f'#!/bin/sh\nexec {real} "$@" -name {token} {" ".join(extra)}\n')
    wrapper.chmod(0o755)
    return wrapper, token


def processes_with(token: str) -> List[int]:
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and token.encode() in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def processes_in_group(pgid: int) -> Dict[int, str]:
    """Live processes (zombies are dead) of process group ``pgid``, with their command lines.

    A process group is what a parent chain becomes once Avocado has exited:
    its leftovers are re-parented to init, but keep the group.
    """
    found = {}
    for entry in Path("/proc").iterdir():
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        state, _, group = stat[stat.rindex(")") + 2 :].split()[:3]
        if int(group) == pgid and state != "Z":
            found[int(entry.name)] = cmdline.replace(b"\0", b" ").decode(errors="replace")
    return found


def shm_files_of_gone_processes() -> List[Path]:
    """Shared memory files whose maker (``migtest-<pid>-...``) has exited.

    A running test's file is unlinked as soon as both QEMUs have it open;
    one that outlived its test process is a leak, whoever ran it (others'
    runs may share this machine: their live files are not ours to judge).
    """
    left = []
    for path in Path("/dev/shm").glob("migtest-*"):
        pid = path.name.split("-")[1]
        if not pid.isdigit() or not Path(f"/proc/{pid}").exists():
            left.append(path)
    return left


def socket_files(directory: Path) -> List[Path]:
    """Socket files under ``directory``, which Avocado may be removing meanwhile."""
    found = []
    for parent, _, names in os.walk(directory):  # unlike rglob, skips what vanished
        found += [Path(parent, name) for name in names if name.endswith(".sock")]
    return found


def avocado(
    results: Path,
    *params: str,
    tests: Sequence[str] = (TEST,),
    config: Optional[str] = "avocado.conf",
    options: Sequence[str] = (),
) -> List[str]:
    """An ``avocado run`` command line; ``config=None`` leaves avocado.conf out."""
    args = [str(Path(sys.executable).parent / "avocado")]
    if config:
        args += ["--config", config]
    args += ["run", "--job-results-dir", str(results), "--disable-sysinfo", *options, *tests]
    for param in params:
        args += ["-p", param]
    return args


def results(directory: Path) -> Dict[str, Any]:
    (job,) = directory.glob("job-*")
    test: Dict[str, Any] = json.loads((job / "results.json").read_text())["tests"][0]
    return test


def assert_nothing_left(token: str, job_dir: Path, pgid: int = 0) -> None:
    """Nothing of the job remains, the moment it has ended: no grace period.

    :param pgid: the job's process group, if it has one of its own: then
        no QEMU may remain in it either, with our marker or without.
    """
    qemus = processes_with(token)
    if pgid:
        qemus += [pid for pid, cmd in processes_in_group(pgid).items() if "qemu-system" in cmd]
    assert not qemus, f"a QEMU of the test is still running: {sorted(set(qemus))}"
    assert not shm_files_of_gone_processes(), "a shared memory file is left"
    assert not socket_files(job_dir), "a socket file is left"


def end_group(pgid: int) -> None:
    """Kill whatever is left of the job's process group: only processes it started."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        return

    def gone() -> tuple[bool, Dict[int, str]]:
        left = processes_in_group(pgid)
        return not left, left

    wait_for(gone, what=f"process group {pgid} to be gone", timeout=10)


def test_hung_guest_ends_in_error_naming_the_wait(tmp_path: Path) -> None:
    wrapper, token = qemu_wrapper(tmp_path, "-S")  # the guest never runs
    started = time.monotonic()
    subprocess.run(avocado(tmp_path, f"qemu_bin={wrapper}", "boot_timeout=2"),
                   cwd=ROOT, capture_output=True, timeout=120)  # fmt: skip
    test = results(tmp_path)
    assert test["status"] == "ERROR"
    assert "waiting for the guest on src to print 'B'" in test["fail_reason"]
    assert "last seen" in test["fail_reason"]
    assert time.monotonic() - started < 60
    assert_nothing_left(token, tmp_path)


def test_wait_outlasting_the_test_timeout_is_cut_short_naming_it(tmp_path: Path) -> None:
    wrapper, token = qemu_wrapper(tmp_path, "-S")
    started = time.monotonic()
    subprocess.run(avocado(tmp_path, f"qemu_bin={wrapper}", "boot_timeout=60", "timeout=8"),
                   cwd=ROOT, capture_output=True, timeout=120)  # fmt: skip
    test = results(tmp_path)
    assert test["status"] == "ERROR", test["fail_reason"]
    assert "(cut short: the test's 8 s timeout is near)" in test["fail_reason"]
    assert "waiting for the guest on src to print 'B'" in test["fail_reason"]
    assert time.monotonic() - started < 60
    assert_nothing_left(token, tmp_path)


def test_failed_migration_leaves_nothing(tmp_path: Path) -> None:
    wrapper, token = qemu_wrapper(tmp_path, "-m", "160M")  # RAM sizes differ: refused
    subprocess.run(avocado(tmp_path, f"qemu_bin_dst={wrapper}", "accel=tcg"),
                   cwd=ROOT, capture_output=True, timeout=120)  # fmt: skip
    test = results(tmp_path)
    assert test["status"] == "FAIL"
    assert "failed" in test["fail_reason"]
    assert_nothing_left(token, tmp_path)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_job_leaves_nothing(tmp_path: Path, signum: int) -> None:
    """One signal to Avocado alone, as ``kill`` and scripts send it: nothing is left at its exit."""
    wrapper, token = qemu_wrapper(tmp_path, "-S")
    job = subprocess.Popen(avocado(tmp_path, f"qemu_bin={wrapper}", "boot_timeout=60"), cwd=ROOT,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           start_new_session=True, preexec_fn=as_in_a_terminal)  # fmt: skip
    try:

        def started() -> tuple[bool, int]:
            count = len(processes_with(token))
            return count == 2, count

        wait_for(started, what="source and destination to start", timeout=60, interval=0.1)
        job.send_signal(signum)
        wait_for_exit(job, timeout=60)
        assert_nothing_left(token, tmp_path, pgid=job.pid)
    finally:
        end_group(job.pid)


def test_timed_out_test_leaves_nothing(tmp_path: Path) -> None:
    wrapper, token = qemu_wrapper(tmp_path, "-S")
    subprocess.run(avocado(tmp_path, f"qemu_bin={wrapper}", "boot_timeout=60", "timeout=3"),
                   cwd=ROOT, capture_output=True, timeout=120)  # fmt: skip
    assert results(tmp_path)["status"] == "INTERRUPTED"
    assert_nothing_left(token, tmp_path)


def start_parallel_job(tmp_path: Path) -> tuple[subprocess.Popen[bytes], str]:
    """Two slow migrations at once, without avocado.conf, as a user runs the suite.

    Avocado runs in a session of its own, as in a terminal: the process
    group a Ctrl-C reaches.  Returns once both tests are migrating (their
    sockets exist): interrupted then, each has a pair of QEMUs and files.
    """
    wrapper, token = qemu_wrapper(tmp_path)
    params = [f"qemu_bin={wrapper}", "arch=x86_64", "accel=tcg"]
    tests = [SLOW_TEST, SLOW_TEST]
    parallel = ["--max-parallel-tasks", "2"]
    command = avocado(tmp_path, *params, tests=tests, config=None, options=parallel)
    job = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, start_new_session=True,
                           preexec_fn=as_in_a_terminal)  # fmt: skip

    def migrating() -> tuple[bool, int]:
        sockets = len(socket_files(tmp_path))
        return sockets == 2 or job.poll() is not None, sockets

    try:
        wait_for(migrating, what="both tests to migrate", timeout=60, interval=0.05)
    except BaseException:
        end_group(job.pid)
        raise
    assert job.poll() is None, "the job ended before it could be interrupted"
    return job, token


def wait_for_exit(job: subprocess.Popen[bytes], timeout: float) -> int:
    def exited() -> tuple[bool, Any]:
        return job.poll() is not None, job.returncode

    code: int = wait_for(exited, what="Avocado to exit", timeout=timeout, interval=0.01)
    return code


def interrupt_twice(job: subprocess.Popen[bytes], gap: float, group: bool) -> Callable[[], None]:
    """Interrupt Avocado twice, ``gap`` seconds apart, as a user does.

    :param group: send to Avocado's process group, as a terminal's Ctrl-C
        does, rather than to Avocado alone (``kill -INT``).
    :return: what interrupts it once more.
    """

    def interrupt() -> None:
        if job.poll() is None:  # once Avocado is gone, a Ctrl-C reaches the shell
            (os.killpg if group else os.kill)(job.pid, signal.SIGINT)

    interrupt()
    time.sleep(gap)  # the user's pause, not a wait for anything
    interrupt()
    return interrupt


def assert_avocado_exits(job: subprocess.Popen[bytes], interrupt: Callable[[], None],
                         token: str, job_dir: Path) -> None:  # fmt: skip
    """Wait for Avocado to exit, interrupting it a third time if it spins.

    Avocado 113 can spin for ever in its loop that ends tasks, all of them
    gone, when the second interrupt came in the middle of it (its stack:
    ``Worker._terminate_tasks``; seen once in twenty runs on a loaded
    machine).  A user presses Ctrl-C once more; by then nothing of ours
    may be left either.
    """
    try:
        wait_for_exit(job, timeout=15)
    except WaitTimeout:
        assert_nothing_left(token, job_dir, pgid=job.pid)
        interrupt()
        wait_for_exit(job, timeout=15)


#: Seconds between the two Ctrl-C: a double tap, while Avocado still ends
#: its tasks one by one, and a second try after a pause.
CTRL_C_GAPS = [0.3, 2.0]


@pytest.mark.parametrize("gap", CTRL_C_GAPS)
def test_ctrl_c_twice_with_parallel_tasks_leaves_nothing_at_once(tmp_path: Path, gap: float):
    """Ctrl-C twice in a terminal, while two tests migrate in parallel.

    Avocado ends a task by signalling its runner alone, kills the runner a
    second later, never the test under it, and stops ending tasks at the
    second Ctrl-C.  Every test process must end its QEMUs and files by
    itself, before Avocado exits: the check comes at once, with no grace.
    Before the fix, each run left the sockets of both tests behind (Python
    stopped the test on Ctrl-C without running tearDown).
    """
    job, token = start_parallel_job(tmp_path)
    try:
        interrupt = interrupt_twice(job, gap, group=True)
        assert_avocado_exits(job, interrupt, token, tmp_path)
        assert_nothing_left(token, tmp_path, pgid=job.pid)
        assert job.returncode != 0
    finally:
        end_group(job.pid)


def test_tasks_avocado_gives_up_on_end_with_it(tmp_path: Path):
    """Two interrupts sent to Avocado alone (``kill -INT``), in quick succession.

    At the second, Avocado exits without a word to the tasks it has not
    ended yet.  Their test processes see it go, and end their QEMUs and
    remove their files: not before Avocado's exit, which they cannot know
    of, but within a moment (before the fix, they ran to the end).
    """
    job, token = start_parallel_job(tmp_path)
    try:
        # 0.2 s: within the second Avocado gives the first task it ends
        interrupt = interrupt_twice(job, 0.2, group=False)
        assert_avocado_exits(job, interrupt, token, tmp_path)

        def cleaned_up() -> tuple[bool, str]:
            try:
                assert_nothing_left(token, tmp_path, pgid=job.pid)
            except AssertionError as left:
                return False, str(left)
            return True, ""

        wait_for(cleaned_up, what="the tasks Avocado gave up on to clean up", timeout=2)
    finally:
        end_group(job.pid)


def test_failed_teardown_step_turns_a_pass_into_a_warn_naming_it(tmp_path: Path) -> None:
    """A report step that fails shows: a PASS becomes a WARN, the step named.

    A FAIL keeps its own reason, and a CANCEL its status and reason: the
    step is logged as an error there, since a warning would make it a WARN.
    """
    x86 = shutil.which("qemu-system-x86_64")
    if x86 is None:
        pytest.skip("qemu-system-x86_64 is not installed")
    subprocess.run(avocado(tmp_path, "arch=x86_64", "accel=tcg", f"qemu_bin={x86}",
                           tests=[str(SELFTEST_TESTS / "teardown_steps.py")]),
                   cwd=ROOT, capture_output=True, timeout=120)  # fmt: skip
    (job,) = tmp_path.glob("job-*")
    tests = json.loads((job / "results.json").read_text())["tests"]
    by_name = {test["id"].rsplit(".", 1)[-1]: test for test in tests}
    failed_step = "tearDown: saving the metrics and the plot failed: OSError: [Errno 28] No space"

    passed = by_name["test_passes"]
    assert passed["status"] == "WARN", passed["fail_reason"]
    assert f"WARNI| {failed_step}" in Path(passed["logfile"]).read_text()

    failed = by_name["test_fails"]
    assert failed["status"] == "FAIL"
    assert failed["fail_reason"] == "the scenario's own failure"
    assert f"ERROR| {failed_step}" in Path(failed["logfile"]).read_text()

    cancelled = by_name["test_cancels"]
    assert cancelled["status"] == "CANCEL"
    assert cancelled["fail_reason"] == "nothing to run here"
    assert f"ERROR| {failed_step}" in Path(cancelled["logfile"]).read_text()
