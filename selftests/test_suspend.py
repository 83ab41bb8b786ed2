"""The suspending guest and the checks of a suspended migration.

Each new check is shown failing on the outcome it is meant to catch: a
destination woken before the check, a guest that booted again instead of
resuming; and passing on a good migration, against a QEMU that keeps a
suspended guest suspended (9.0 on).  The pure parts (the profile, the
finding) are unit tests.
"""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
from pathlib import Path
from typing import Any, Dict, Iterator, Tuple

import pytest
from conftest import ROOT

from migtest.arch import PROFILES, get_profile
from migtest.errors import CheckFailure, Unavailable
from migtest.findings import explain
from migtest.pair import MigrationPair
from migtest.params import SuiteParams
from migtest.verify import (
    assert_run_state,
    assert_woken_guest_runs,
    is_paused,
    require_paused,
    verify_suspended_migration,
)
from migtest.versions import binary_for
from migtest.wait import wait_for

#: What verify_suspended_migration says of a destination that runs.
WOKEN = (
    "dst: run state 'running', not 'suspended': "
    "a guest migrated while suspended must stay suspended"
)
#: A QEMU that keeps a migrated guest suspended: fetched by make qemu-versions.
PRESERVING_QEMU = "10.0.13"


# -- the guest ----------------------------------------------------------------


def test_suspending_guest_rebuilds_byte_for_byte(tmp_path: Path) -> None:
    """guest-s3.img is what guest.S builds with SUSPEND defined (test_guests checks guest.img)."""
    if shutil.which("x86_64-linux-gnu-as") is None:
        pytest.skip("x86_64-linux-gnu-as is not installed")
    source = ROOT / "guests" / "x86_64"
    build = tmp_path / "x86_64"
    shutil.copytree(source, build, ignore=shutil.ignore_patterns("*.img"))
    subprocess.run(["make", "-s", "-C", str(build)], check=True, timeout=120)
    for image in ("guest.img", "guest-s3.img"):
        assert (build / image).read_bytes() == (source / image).read_bytes(), image


def test_only_x86_64_has_a_suspending_guest() -> None:
    assert get_profile("x86_64").require_suspending_guest() == "guest-s3.img"
    assert get_profile("x86_64").guest_file("guest-s3.img").is_file()
    for name in sorted(set(PROFILES) - {"x86_64"}):
        with pytest.raises(Unavailable, match=f"{name} has no test guest that can suspend") as exc:
            get_profile(name).require_suspending_guest()
        assert not exc.value.expected, "strict mode must not turn it into an ERROR"


# -- the checks, on answers written here --------------------------------------


class Status:
    """A machine and endpoint that answer ``query-status`` with one run state."""

    name = "dst"

    def __init__(self, status: str) -> None:
        self.status = status
        self.machine = self

    def cmd(self, command: str, **arguments: Any) -> Dict[str, Any]:
        assert command == "query-status", command
        return {"status": self.status, "running": self.status == "running"}

    def run_state(self) -> str:
        return self.status


def test_a_suspended_guest_counts_as_paused_for_the_memory_checks() -> None:
    """query-status says running: false while suspended; the check stays QEMU's word."""
    assert is_paused(Status("suspended"))  # type: ignore[arg-type]
    require_paused(Status("suspended"), "RAM can be compared")  # type: ignore[arg-type]
    with pytest.raises(CheckFailure, match="dst runs: RAM can be compared only while"):
        require_paused(Status("running"), "RAM can be compared")  # type: ignore[arg-type]


def test_run_state_check_fails_on_a_woken_destination() -> None:
    assert_run_state(Status("suspended"), "suspended", "why")  # type: ignore[arg-type]
    for state in ("running", "paused"):
        with pytest.raises(CheckFailure, match=f"dst: run state '{state}', not 'suspended'"):
            assert_run_state(Status(state), "suspended", "why")  # type: ignore[arg-type]


def test_the_finding_explains_a_woken_guest_only_where_qemu_wakes_it() -> None:
    v7_2, v10_0 = (7, 2, 22), (10, 0, 13)
    for src, dst in ((v7_2, v7_2), (v7_2, v10_0), (v10_0, v7_2)):
        hit = explain("x86_64", src, dst, WOKEN)
        assert hit is not None and hit.finding.id == "suspended-guest-woken", (src, dst)
    assert explain("x86_64", v10_0, v10_0, WOKEN) is None
    assert explain("x86_64", v7_2, v7_2, "dst: run state 'paused', not 'running'") is None


# -- the checks, against real QEMU --------------------------------------------


@pytest.fixture
def suspended(tcg_params: SuiteParams, workdir: Path) -> Iterator[MigrationPair]:
    """A pair whose source guest has suspended itself (the host's QEMU)."""
    with MigrationPair(tcg_params, workdir) as pair:
        pair.start(guest=pair.profile.require_suspending_guest())
        pair.src.require_wakeup_support()
        pair.src.wait_for_suspend()
        yield pair


def test_the_guest_suspends_once_and_woken_counts_on(suspended: MigrationPair) -> None:
    src = suspended.src
    assert_run_state(src, "suspended", "the guest suspends after its first pass")
    assert src.machine.console_text() == "AB"
    assert_woken_guest_runs(src, suspended.profile)
    assert src.machine.events("SUSPEND") and len(src.machine.events("SUSPEND")) == 1


def test_a_woken_guest_fails_the_suspended_check(suspended: MigrationPair) -> None:
    suspended.src.wakeup()
    with pytest.raises(CheckFailure, match="src: run state 'running', not 'suspended'"):
        assert_run_state(suspended.src, "suspended", "why")


def test_a_guest_that_booted_again_fails_the_wakeup_check(
    suspended: MigrationPair, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Woken, then reset: SeaBIOS boots the disk, the guest prints 'A' again.

    The stand-in waits for that 'A' before it returns: woken first, the
    guest may print a 'B' before the reboot's 'A', and the check would
    see the guest run before the reboot showed (that race made this
    self-test fail now and then).  A reset while still suspended is no
    reboot: SeaBIOS finds the S3 resume code in the CMOS and resumes.
    """
    side = suspended.src
    wakeup = side.wakeup
    printed = len(side.machine.console_text())

    def wakeup_then_reboot() -> None:
        wakeup()
        side.machine.cmd("system_reset")

        def booted() -> Tuple[bool, str]:
            text = side.machine.console_text()[printed:]
            return "A" in text, text

        wait_for(booted, what="the reset guest's 'A' (console since wakeup)", timeout=30)

    monkeypatch.setattr(side, "wakeup", wakeup_then_reboot)
    with pytest.raises(CheckFailure, match="booted again instead of resuming"):
        assert_woken_guest_runs(side, suspended.profile)


@pytest.fixture
def preserving(tcg_params: SuiteParams, workdir: Path) -> Iterator[MigrationPair]:
    """A suspended guest migrated (not live) with a QEMU that keeps it suspended."""
    try:
        binary = binary_for(PRESERVING_QEMU, "x86_64")
    except Unavailable as exc:
        pytest.skip(str(exc))
    params = dataclasses.replace(tcg_params, qemu_bin_src=binary, qemu_bin_dst=binary)
    with MigrationPair(params, workdir) as pair:
        pair.start(guest=pair.profile.require_suspending_guest())
        pair.src.wait_for_suspend()
        pair.src.stop()
        pair.allow_convergence()
        pair.migrate("unix")
        pair.wait_for_completion()
        pair.dst.cont()
        yield pair


def test_a_suspended_migration_passes(preserving: MigrationPair) -> None:
    verify_suspended_migration(preserving)


def test_a_destination_woken_before_the_check_fails_it(preserving: MigrationPair) -> None:
    preserving.dst.wakeup()
    with pytest.raises(CheckFailure, match=WOKEN):
        verify_suspended_migration(preserving)
