"""The committed guest binaries are exactly what their sources build.

Runs wherever the architecture's cross binutils are installed (``make
check`` installs them), so a source and its binary can never drift apart.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import ROOT

from migtest.arch import PROFILES


@pytest.mark.parametrize("arch", sorted(PROFILES))
def test_guest_rebuilds_byte_for_byte(arch: str, tmp_path: Path) -> None:
    profile = PROFILES[arch]
    source = ROOT / "guests" / arch
    cross = re.search(r"^CROSS\s*\?=\s*(\S*)", (source / "Makefile").read_text(), re.M)
    assert cross, f"guests/{arch}/Makefile does not set CROSS ?="
    if shutil.which(f"{cross.group(1)}as") is None:
        pytest.skip(f"{cross.group(1)}as is not installed")
    build = tmp_path / arch
    shutil.copytree(source, build, ignore=shutil.ignore_patterns(profile.guest))
    subprocess.run(["make", "-s", "-C", str(build)], check=True, timeout=120)
    rebuilt = (build / profile.guest).read_bytes()
    committed = (source / profile.guest).read_bytes()
    assert rebuilt == committed, (
        f"guests/{arch}/{profile.guest} differs from what its source builds"
    )
