"""Parameters: every bad value is refused with its name and the accepted values."""

from __future__ import annotations

import os
import platform
import shutil
import stat
from pathlib import Path
from typing import Any, Dict, Optional

import pytest

from migtest import host
from migtest.arch import get_profile
from migtest.errors import ConfigError, Unavailable
from migtest.host import check_binary, resolve_accel
from migtest.params import SuiteParams


class Params:
    """A stand-in for Avocado's params: the same ``get``."""

    def __init__(self, **values: Any) -> None:
        self.values = values

    def get(self, key: str, path: Optional[str] = None, default: Any = None) -> Any:
        return self.values.get(key, default)


def read(environ: Optional[Dict[str, str]] = None, **values: Any) -> SuiteParams:
    return SuiteParams.from_params(Params(**values), environ or {"PATH": os.environ["PATH"]})


@pytest.mark.parametrize("kvm_works", [True, False], ids=["kvm-works", "no-kvm"])
def test_defaults(x86_binary: str, monkeypatch: pytest.MonkeyPatch, kvm_works: bool) -> None:
    """No parameters: the x86_64 guest, on KVM where KVM can run it and on
    TCG elsewhere, the x86_64 binary on PATH for both sides, strict mode off.

    Whether KVM works is set here rather than read from the host, so that
    every host checks both answers of the default accelerator.
    """
    problem = None if kvm_works else "KVM does not work here (the test says so)"
    monkeypatch.setattr(host, "kvm_problem", lambda profile: problem)
    if kvm_works:
        try:
            check_binary("qemu_bin", x86_binary, get_profile("x86_64"), "kvm")
        except Unavailable as missing:
            pytest.skip(f"this QEMU is built without KVM: {missing}")
    params = read()
    assert params.profile.name == "x86_64"
    assert params.accel == ("kvm" if kvm_works else "tcg")
    assert params.qemu_bin_src == params.qemu_bin_dst == x86_binary
    assert params.strict is False


def test_unknown_arch_names_parameter_and_choices() -> None:
    with pytest.raises(ConfigError) as error:
        read(arch="vax")
    assert error.value.parameter == "arch"
    assert "'vax'" in str(error.value) and "x86_64" in str(error.value)


def test_unknown_accel_names_parameter_and_choices() -> None:
    with pytest.raises(ConfigError, match=r"'accel'.*auto, tcg, kvm"):
        read(accel="hvf")


def test_missing_binary_is_unavailable() -> None:
    with pytest.raises(Unavailable, match="qemu_bin=/nonexistent/qemu"):
        read(qemu_bin="/nonexistent/qemu")


@pytest.fixture
def other_qemu(x86_binary: str, tmp_path: Path) -> str:
    """A second QEMU binary, at another path: what a cross-version run names."""
    wrapper = tmp_path / "other" / "qemu-system-x86_64"
    wrapper.parent.mkdir()
    wrapper.write_text(f'#!/bin/sh\nexec {x86_binary} "$@"\n')
    wrapper.chmod(0o755)
    return str(wrapper)


def test_one_side_binary_overrides(x86_binary: str, other_qemu: str) -> None:
    with pytest.raises(Unavailable, match="qemu_bin_dst=/old/qemu"):
        read(qemu_bin_dst="/old/qemu")
    params = read(qemu_bin_src=other_qemu)
    assert (params.qemu_bin_src, params.qemu_bin_dst) == (other_qemu, x86_binary)
    params = read(qemu_bin=other_qemu, qemu_bin_dst=x86_binary)
    assert (params.qemu_bin_src, params.qemu_bin_dst) == (other_qemu, x86_binary)


def test_environment_names_the_binary(x86_binary: str, other_qemu: str) -> None:
    environ = {"PATH": os.environ["PATH"], "QTEST_QEMU_BINARY": other_qemu}
    params = read(environ)
    assert (params.qemu_bin_src, params.qemu_bin_dst) == (other_qemu, other_qemu)
    environ["QTEST_QEMU_BINARY_SRC"] = x86_binary
    assert read(environ).qemu_bin_src == x86_binary
    environ["QTEST_QEMU_BINARY_DST"] = "/nonexistent/dst"
    with pytest.raises(Unavailable, match="qemu_bin_dst"):
        read(environ)
    assert read(environ, qemu_bin_dst=other_qemu).qemu_bin_dst == other_qemu


def test_non_executable_binary_is_a_config_error(tmp_path: Path) -> None:
    fake = tmp_path / "qemu-system-x86_64"
    fake.write_text("not a program")
    fake.chmod(stat.S_IRUSR)
    with pytest.raises(ConfigError, match=r"'qemu_bin'.*executable"):
        read(qemu_bin=str(fake))


def test_kvm_for_a_foreign_guest_is_unavailable() -> None:
    foreign = "aarch64" if platform.machine() != "aarch64" else "x86_64"
    profile = get_profile("x86_64")
    profile = type(profile)(**{**profile.__dict__, "kvm_hosts": (foreign,)})
    with pytest.raises(Unavailable, match="KVM cannot run"):
        resolve_accel("kvm", profile)
    assert resolve_accel("auto", profile) == "tcg"


def test_strict_mode_from_parameter_or_environment() -> None:
    assert SuiteParams.strict_from(Params(strict="yes"), {}) is True
    assert SuiteParams.strict_from(Params(), {"MIGTEST_STRICT": "1"}) is True
    with pytest.raises(ConfigError, match="'strict'"):
        SuiteParams.strict_from(Params(strict="maybe"), {})


def test_binary_that_is_not_qemu_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"'qemu_bin'.*QEMU system emulator"):
        read(qemu_bin="/bin/true")


def test_binary_of_another_arch_lacks_the_machine_type() -> None:
    other = shutil.which("qemu-system-s390x")
    if other is None:
        pytest.skip("qemu-system-s390x is not installed")
    with pytest.raises(Unavailable, match="no machine type 'pc'"):
        read(qemu_bin=other, accel="tcg")


@pytest.mark.parametrize("value", ["abc", "0", "-5", "inf", ""])
def test_malformed_timeout_names_parameter(value: str) -> None:
    with pytest.raises(ConfigError, match=r"'boot_timeout'.*seconds greater than 0"):
        read(boot_timeout=value)


def test_timeout_accepts_numbers() -> None:
    assert read(boot_timeout="2.5").boot_timeout == 2.5
