"""Shared fixtures of the self-tests."""

from __future__ import annotations

import shutil
import signal
import sys
from importlib.machinery import SourceFileLoader
from importlib.util import module_from_spec, spec_from_loader
from pathlib import Path
from types import ModuleType
from typing import Iterator

import pytest

from migtest.arch import get_profile
from migtest.params import SuiteParams

#: The top of the source tree.
ROOT = Path(__file__).resolve().parent.parent


def load_script(name: str) -> ModuleType:
    """Import ``scripts/<name>``, a script without a ``.py`` ending, as a module."""
    module_name = name.replace("-", "_")
    loader = SourceFileLoader(module_name, str(ROOT / "scripts" / name))
    spec = spec_from_loader(module_name, loader)
    assert spec is not None
    module = module_from_spec(spec)
    sys.modules[module_name] = module  # its dataclasses look themselves up there
    loader.exec_module(module)
    return module


def as_in_a_terminal() -> None:
    """For ``preexec_fn``: Ctrl-C's signal acts, as in a terminal's foreground job.

    A shell without job control starts a background command with SIGINT
    ignored, and its children inherit that: a self-test of what Ctrl-C
    does, run from such a command (CI started with ``&``), would send a
    signal nobody hears.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)


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
