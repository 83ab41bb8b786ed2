"""The cancel tests account for every status of the QEMU under test: a status
left out (as a new QEMU version would add one) makes them FAIL."""

from __future__ import annotations

from pathlib import Path

from test_strict import run_avocado


def test_a_status_nobody_cancels_in_fails_naming_it(tmp_path: Path) -> None:
    result = run_avocado(
        tmp_path, "selftests/avocado/cancel_unaccounted.py", "-p", "arch=x86_64",
        "-p", "accel=tcg", strict=True,
    )  # fmt: skip
    (test,) = result["tests"]
    assert test["status"] == "FAIL", test["fail_reason"]
    assert "statuses no cancel test accounts for: ['setup']" in test["fail_reason"]
