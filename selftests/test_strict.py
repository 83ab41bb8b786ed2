"""Nothing hidden: a missing binary CANCELs, and in strict mode is an ERROR."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict

from conftest import ROOT

TEST = "tests/migration/precopy.py:Precopy.test_unix"


def run_avocado(results: Path, *args: str, strict: bool) -> Dict[str, Any]:
    avocado = Path(sys.executable).parent / "avocado"
    env = {**os.environ, "MIGTEST_STRICT": "1" if strict else "0"}
    completed = subprocess.run(
        [str(avocado), "--config", "avocado.conf", "run", "--job-results-dir", str(results),
         "--disable-sysinfo", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    (job,) = results.glob("job-*")
    result: Dict[str, Any] = json.loads((job / "results.json").read_text())
    result["exit_code"] = completed.returncode
    return result


def test_missing_binary_cancels_with_its_name(tmp_path: Path) -> None:
    result = run_avocado(tmp_path, TEST, "-p", "qemu_bin=/nonexistent/qemu", strict=False)
    (test,) = result["tests"]
    assert test["status"] == "CANCEL"
    assert "/nonexistent/qemu" in test["fail_reason"]
    assert result["exit_code"] == 0


def test_strict_mode_turns_the_cancel_into_an_error(tmp_path: Path) -> None:
    result = run_avocado(tmp_path, TEST, "-p", "qemu_bin=/nonexistent/qemu", strict=True)
    (test,) = result["tests"]
    assert test["status"] == "ERROR"
    assert "strict mode" in test["fail_reason"]
    assert "/nonexistent/qemu" in test["fail_reason"]
    assert result["exit_code"] != 0


def test_a_feature_newer_than_the_qemu_stays_a_cancel_in_strict_mode(tmp_path: Path) -> None:
    """Strict mode fails what should be there, not what this QEMU predates."""
    result = run_avocado(
        tmp_path, "tests/migration/precopy.py:Precopy.test_channels",
        "-p", "arch=x86_64", "-p", "accel=tcg", strict=True,
    )  # fmt: skip
    (test,) = result["tests"]
    if test["status"] == "CANCEL":
        assert "channels (added in QEMU 8.2)" in test["fail_reason"]
    else:
        assert test["status"] == "PASS", test["fail_reason"]


def test_postcopy_refusals_are_weighed_by_what_qemu_says() -> None:
    """Host support missing is expected; a target page bigger than the host's never is."""
    from migtest.test import postcopy_refusal

    # QEMU 10.0.13's words, loongarch64 (16 KiB pages) on a 4 KiB x86_64 host.
    pages = postcopy_refusal(
        "Postcopy is not supported: Target page size bigger than host page size"
    )
    assert pages is not None and not pages.expected
    assert "Target page size bigger" in str(pages)
    # userfaultfd missing or forbidden: the host was meant to have it.
    host = postcopy_refusal("Postcopy is not supported: Userfaultfd not available: ...")
    assert host is not None and host.expected
    # Any other refusal is not about support: it fails the test.
    assert postcopy_refusal("Postcopy is not compatible with ignore-shared") is None
