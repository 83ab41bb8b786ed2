"""Bad input: every bad value ends the test in setUp, before any QEMU
runs or any wait starts, naming the parameter and what it accepts.  One
Avocado job runs them all, as variants."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Dict, Tuple

import pytest
from conftest import ROOT

from migtest.errors import ConfigError
from migtest.transport import make_channel

TEST = "tests/migration/precopy.py:Precopy.test_unix"

#: variant -> (parameter, value, status, words the reason must contain)
CASES: Dict[str, Tuple[str, str, str, str]] = {
    "arch": (
        "arch",
        "vax",
        "ERROR",
        "'arch': accepted one of aarch64, loongarch64, ppc64, riscv64, s390x, x86_64",
    ),
    "accel": ("accel", "hvf", "ERROR", "'accel': accepted one of auto, tcg, kvm"),
    "missing": ("qemu_bin", "/nonexistent/qemu", "CANCEL", "qemu_bin=/nonexistent/qemu"),
    "not_executable": ("qemu_bin", "NOT_EXECUTABLE", "ERROR", "'qemu_bin': accepted an executable"),
    "not_qemu": ("qemu_bin", "/bin/true", "ERROR", "'qemu_bin': accepted a QEMU system emulator"),
    "number": ("boot_timeout", "soon", "ERROR", "'boot_timeout': accepted a number of seconds"),
}


def test_each_bad_parameter_is_named_with_what_it_accepts(tmp_path: Path) -> None:
    not_executable = tmp_path / "qemu-system-x86_64"
    not_executable.write_text("")
    not_executable.chmod(0o644)
    variants = tmp_path / "bad.yaml"
    lines = ["bad: !mux"]
    for name, (parameter, value, _, _) in CASES.items():
        value = value.replace("NOT_EXECUTABLE", str(not_executable))
        lines += [f"    {name}:", f"        {parameter}: '{value}'"]
    variants.write_text("\n".join(lines) + "\n")
    subprocess.run(
        [str(Path(sys.executable).parent / "avocado"), "--config", "avocado.conf", "run",
         "--job-results-dir", str(tmp_path), "--disable-sysinfo", TEST, "-m", str(variants)],
        cwd=ROOT, capture_output=True, timeout=300,
    )  # fmt: skip
    (job,) = tmp_path.glob("job-*")
    outcomes = {
        test["id"].rsplit("-", 2)[-2]: test
        for test in json.loads((job / "results.json").read_text())["tests"]
    }
    for name, (_, _, status, words) in CASES.items():
        outcome = outcomes[name]
        assert (outcome["status"], name) == (status, name)
        assert words in outcome["fail_reason"], name


def test_unknown_transport_names_parameter() -> None:
    with pytest.raises(ConfigError, match="'transport': accepted one of unix, tcp, fd"):
        make_channel("carrier-pigeon")
