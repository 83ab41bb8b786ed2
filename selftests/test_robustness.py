"""Never hang, never leak: real Avocado runs that fail, hang and get
interrupted, and a look afterwards for anything of ours left behind."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Dict, List

import pytest
from conftest import ROOT

TEST = "tests/migration/precopy.py:Precopy.test_unix"


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


def avocado(results: Path, *params: str) -> List[str]:
    args = [str(Path(sys.executable).parent / "avocado"), "--config", "avocado.conf", "run",
            "--job-results-dir", str(results), "--disable-sysinfo", TEST]  # fmt: skip
    for param in params:
        args += ["-p", param]
    return args


def results(directory: Path) -> Dict[str, Any]:
    (job,) = directory.glob("job-*")
    test: Dict[str, Any] = json.loads((job / "results.json").read_text())["tests"][0]
    return test


def assert_nothing_left(token: str, job_dir: Path) -> None:
    deadline = time.monotonic() + 10
    while processes_with(token) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert processes_with(token) == [], "a QEMU of the test is still running"
    assert not list(Path("/dev/shm").glob("migtest-*")), "a shared memory file is left"
    assert not list(job_dir.rglob("*.sock")), "a socket file is left"


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
    wrapper, token = qemu_wrapper(tmp_path, "-S")
    job = subprocess.Popen(avocado(tmp_path, f"qemu_bin={wrapper}", "boot_timeout=60"), cwd=ROOT,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while len(processes_with(token)) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(processes_with(token)) == 2, "source and destination never started"
        job.send_signal(signum)
        job.wait(timeout=60)
    finally:
        if job.poll() is None:
            job.kill()
            job.wait()
    assert_nothing_left(token, tmp_path)


def test_timed_out_test_leaves_nothing(tmp_path: Path) -> None:
    wrapper, token = qemu_wrapper(tmp_path, "-S")
    subprocess.run(avocado(tmp_path, f"qemu_bin={wrapper}", "boot_timeout=60", "timeout=3"),
                   cwd=ROOT, capture_output=True, timeout=120)  # fmt: skip
    assert results(tmp_path)["status"] == "INTERRUPTED"
    assert_nothing_left(token, tmp_path)
