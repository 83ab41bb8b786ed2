"""Shared fixtures of the self-tests."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Iterator

import pytest

from migtest.arch import get_profile
from migtest.params import SuiteParams

#: The top of the source tree.
ROOT = Path(__file__).resolve().parent.parent


def qemu_or_skip(arch: str) -> str:
    binary = shutil.which(f"qemu-system-{arch}")
    if binary is None:
        pytest.skip(f"qemu-system-{arch} is not installed")
    return binary


@pytest.fixture
def x86_binary() -> str:
    return qemu_or_skip("x86_64")


@pytest.fixture
def tcg_params(x86_binary: str) -> SuiteParams:
    """Parameters for an x86_64 TCG pair: fast and available everywhere."""
    return SuiteParams(
        profile=get_profile("x86_64"),
        accel="tcg",
        qemu_bin_src=x86_binary,
        qemu_bin_dst=x86_binary,
        strict=False,
    )


@pytest.fixture
def workdir(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path
