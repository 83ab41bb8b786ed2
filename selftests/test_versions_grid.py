"""README's versions grid, from synthetic job directories laid out as Avocado writes them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Tuple

import pytest

from migtest.report.versions_grid import main, outcomes, render, verdict

SLB = "known QEMU finding ppc64-slb-version (QEMU bug): ...; it showed as: cpu/slb: ..."

#: (test, src, dst, arch, status, fail_reason)
Run = Tuple[str, str, str, str, str, str]


def write_job(directory: Path, runs: List[Run]) -> Path:
    """A job of ``runs``: results.json and the variants each ran in."""
    variants, tests = {}, []
    for i, (test, src, dst, arch, status, reason) in enumerate(runs):
        variant_id = f"run-arch-{arch}-qemu-{src}-to-{dst}"
        node = f"/run/qemu/cross/{src}-to-{dst}"
        variants[variant_id] = {
            "variant_id": variant_id,
            "variant": [
                [f"/run/arch/{arch}", [[f"/run/arch/{arch}", "arch", arch]]],
                [node, [[node, "qemu_version_src", src], [node, "qemu_version_dst", dst]]],
            ],
        }
        name = f"tests/migration/x.py:X.{test};{variant_id}"
        tests.append({"name": name, "status": status, "fail_reason": reason,
                      "logdir": f"{directory}/test-results/{i}"})  # fmt: skip
    (directory / "jobdata").mkdir(parents=True)
    (directory / "jobdata" / "variants-1.json").write_text(json.dumps(list(variants.values())))
    (directory / "results.json").write_text(json.dumps({"tests": tests}))
    return directory


def test_each_status_is_counted_as_what_it_means() -> None:
    assert verdict("PASS", "") == "pass"
    assert verdict("WARN", "did not reproduce") == "WARN"
    assert verdict("CANCEL", SLB) == "ppc64-slb-version"
    assert verdict("CANCEL", "channels (added in QEMU 8.2) ...") == "n/a"
    assert verdict("FAIL", "memory differs") == verdict("ERROR", "timed out") == "FAIL"


def test_the_grid_counts_each_pair_and_architecture(tmp_path: Path) -> None:
    job = write_job(tmp_path / "job", [
        ("test_a", "11.1.3", "7.2", "ppc64", "CANCEL", SLB),
        ("test_b", "11.1.3", "7.2", "ppc64", "CANCEL", SLB),
        ("test_a", "11.1.3", "7.2", "x86_64", "PASS", ""),
        ("test_b", "11.1.3", "7.2", "x86_64", "FAIL", "memory differs"),
        ("test_a", "7.2", "11.1.3", "x86_64", "PASS", ""),
        ("test_b", "7.2", "11.1.3", "x86_64", "CANCEL", "channels (added in QEMU 8.2)"),
    ])  # fmt: skip
    grid = render(outcomes([job]))
    assert grid.splitlines() == [
        "=====================  =====  ==============",
        "source -> destination  ppc64  x86_64",
        "=====================  =====  ==============",
        "7.2 -> 11.1.3          -      1 pass, 1 n/a",
        "11.1.3 -> 7.2          2 (a)  1 FAIL, 1 pass",
        "=====================  =====  ==============",
        "",
        "(a) ``ppc64-slb-version``: QEMU >= 9.2 sends cpu/slb as version 2, which older "
        "QEMUs refuse (QEMU bug)",
    ]


def test_a_later_job_replaces_what_it_reran(tmp_path: Path) -> None:
    first = write_job(
        tmp_path / "first",
        [
            ("test_a", "7.2", "10.0.13", "s390x", "FAIL", "x"),
            ("test_b", "7.2", "10.0.13", "s390x", "PASS", ""),
        ],
    )
    rerun = write_job(tmp_path / "rerun", [("test_a", "7.2", "10.0.13", "s390x", "PASS", "")])
    assert "2 pass" in render(outcomes([first, rerun]))
    assert "1 FAIL, 1 pass" in render(outcomes([rerun, first]))


def test_a_job_without_cross_version_tests_is_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    job = write_job(tmp_path / "job", [("test_a", "7.2", "7.2", "s390x", "PASS", "")])
    with pytest.raises(SystemExit):
        main([str(job)])
    assert "no test of these jobs ran across two QEMU versions" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([str(tmp_path / "missing")])
    assert "is not an Avocado job results directory" in capsys.readouterr().err
