"""The verification of a migrated guest, against real QEMU: it passes a good
migration and fails each kind of bad outcome it is meant to catch."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from migtest.errors import CheckFailure, MigtestError, WaitTimeout
from migtest.pair import MigrationPair
from migtest.params import SuiteParams
from migtest.verify import (
    assert_guest_memory,
    assert_guest_runs,
    assert_memory_identical,
    verify_migration,
)
from migtest.wait import limit_all_waits


@pytest.fixture
def pair(tcg_params: SuiteParams, workdir: Path) -> Iterator[MigrationPair]:
    with MigrationPair(tcg_params, workdir) as pair:
        pair.start()
        yield pair


def migrate_stopped(pair: MigrationPair) -> None:
    """Non-live: the fastest complete migration."""
    pair.src.machine.cmd("stop")
    pair.allow_convergence()
    pair.migrate("unix")
    pair.wait_for_completion()


def test_good_migration_passes(pair: MigrationPair) -> None:
    migrate_stopped(pair)
    verify_migration(pair)


def test_live_tcp_migration_passes(pair: MigrationPair) -> None:
    pair.prevent_convergence()
    pair.migrate("tcp")
    pair.src.wait_for_dirty_sync(2)
    pair.allow_convergence()
    pair.wait_for_completion()
    verify_migration(pair)


def test_destination_that_ran_on_differs_from_source(pair: MigrationPair) -> None:
    migrate_stopped(pair)
    dst = pair.dst.machine
    dst.cmd("cont")
    assert_guest_runs(dst, pair.profile)
    dst.cmd("stop")
    with pytest.raises(CheckFailure, match="source and destination RAM differ"):
        assert_memory_identical(pair)


def test_destination_that_never_received_memory_fails(pair: MigrationPair) -> None:
    with pytest.raises(CheckFailure, match="never ran"):
        assert_guest_memory(pair.dst.machine, pair.profile)


def test_paused_guest_is_not_running(pair: MigrationPair) -> None:
    pair.src.machine.cmd("stop")
    with pytest.raises(CheckFailure, match="does not run on src"):
        assert_guest_runs(pair.src.machine, pair.profile, timeout=0.5)


def test_guest_check_out_of_time_is_no_verdict_on_the_guest(pair: MigrationPair) -> None:
    """A check cut short by the test's time limit is no FAIL, and says why it ended.

    The guest is paused, so it would fail the check if the check had its
    time; it has not, so nothing is known about the guest.
    """
    pair.src.machine.cmd("stop")
    limit_all_waits(0.3, "the test's time is up")
    try:
        # Verdicts are caught too: expecting only a WaitTimeout here would
        # decide beforehand what the check raises, instead of finding out.
        with pytest.raises((MigtestError, AssertionError)) as raised:
            assert_guest_runs(pair.src.machine, pair.profile)
    finally:
        limit_all_waits(None)
    # Avocado turns any AssertionError (CheckFailure is one) into a FAIL.
    assert not isinstance(raised.value, AssertionError), f"a verdict: {raised.value!r}"
    assert isinstance(raised.value, WaitTimeout), f"not a timeout: {raised.value!r}"
    assert raised.value.cut_short == "the test's time is up"


def test_memory_check_refuses_a_running_guest(pair: MigrationPair) -> None:
    with pytest.raises(CheckFailure, match="src runs: its memory can be checked only while"):
        assert_guest_memory(pair.src.machine, pair.profile)


def test_comparison_refuses_a_running_side(pair: MigrationPair) -> None:
    with pytest.raises(CheckFailure, match="src runs"):
        assert_memory_identical(pair)


def test_dead_destination_fails_the_migration(pair: MigrationPair) -> None:
    pair.prevent_convergence()
    pair.migrate("unix")
    pair.dst.machine.kill()
    with pytest.raises(CheckFailure, match="reached 'failed'"):
        pair.src.wait_for_status("completed", fail_on=("failed",))
    assert_guest_runs(pair.src.machine, pair.profile)


def test_final_stats_of_a_completed_source_are_read(pair: MigrationPair) -> None:
    migrate_stopped(pair)
    final = pair.src.read_final_stats()
    assert final["status"] == "completed"
    assert pair.src.recorder.final is final


def test_final_stats_wait_for_the_source_to_finish(pair: MigrationPair) -> None:
    """A source not (or no longer) in postmigrate has no final figures yet."""
    migrate_stopped(pair)
    pair.dst.machine.shutdown()  # it holds the disk image's lock
    pair.src.cont()
    with pytest.raises(WaitTimeout, match=r"run state postmigrate .*running"):
        pair.src.read_final_stats(timeout=0.5)


def test_a_failed_migration_quotes_the_destinations_reason(
    tcg_params: SuiteParams, workdir: Path
) -> None:
    """The source only sees its stream break; the destination knows why."""
    with MigrationPair(tcg_params, workdir) as pair:
        pair.start(dst_args=["-m", "160M"])  # RAM the source's does not fit
        pair.src.stop()
        pair.allow_convergence()
        pair.migrate("unix")
        with pytest.raises(CheckFailure) as failed:
            pair.wait_for_completion()
    message = str(failed.value)
    assert "the migration failed" in message
    assert "dst (QEMU " in message and "src (QEMU " in message
    assert "Size mismatch: pc.ram" in message, message


def test_a_known_bug_the_vcpu_comparison_allows_is_noted_on_the_pair() -> None:
    """The check passes within what the finding allows, and the pair says which finding."""
    from migtest.vcpu_state import Run, compare_vcpus

    run = Run("ppc64", "tcg", (7, 2, 22), (10, 0, 13))
    result = compare_vcpus({0: {"DECR": ("00000abc",)}}, {0: {"DECR": ("00000000",)}}, run)
    assert result.differences == []
    assert result.findings == ["ppc64-decr-before-8.2"]
    # The same pair of values within one version is no finding: a failure.
    same = Run("ppc64", "tcg", (10, 0, 13), (10, 0, 13))
    failing = compare_vcpus({0: {"DECR": ("00000abc",)}}, {0: {"DECR": ("00000000",)}}, same)
    assert failing.differences and failing.findings == []
