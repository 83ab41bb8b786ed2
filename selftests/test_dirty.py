"""The dirty-tracking checks, each given bad input: they must fail."""

from __future__ import annotations

from importlib.util import module_from_spec, spec_from_file_location
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import List, Sequence

import pytest

from migtest.arch import DIRTY_RING, get_profile
from migtest.checks import (
    check_dirty_limit_released,
    check_dirty_limit_throttled,
    check_dirty_rates,
    check_vcpu_dirty_limits,
)
from migtest.errors import CheckFailure, MigtestError
from migtest.findings import explain


def test_throttle_time_that_stays_zero_fails() -> None:
    with pytest.raises(CheckFailure, match="stayed 0"):
        check_dirty_limit_throttled([0, 0, 0])
    check_dirty_limit_throttled([0, 0, 1200])


def test_a_limit_left_after_cancel_fails() -> None:
    limited = [{"cpu-index": 0, "limit-rate": 1, "current-rate": 0}]
    with pytest.raises(CheckFailure, match="still limited"):
        check_dirty_limit_released([limited, limited])
    with pytest.raises(CheckFailure):
        check_dirty_limit_released([])
    check_dirty_limit_released([limited, []])


def test_vcpu_dirty_limits_wrong_or_missing_fail() -> None:
    with pytest.raises(CheckFailure):
        check_vcpu_dirty_limits([], 1)
    with pytest.raises(CheckFailure):
        check_vcpu_dirty_limits([{"cpu-index": 0, "limit-rate": 2, "current-rate": 0}], 1)
    check_vcpu_dirty_limits([{"cpu-index": 0, "limit-rate": 1, "current-rate": 0}], 1)


def test_dirty_rates_against_the_limit() -> None:
    with pytest.raises(CheckFailure, match="never came down"):
        check_dirty_rates([40, 30, 20], 1, limited=True)
    with pytest.raises(CheckFailure, match="after the limit"):
        check_dirty_rates([0, 0], 1, limited=False)
    with pytest.raises(CheckFailure):
        check_dirty_rates([], 1, limited=True)
    check_dirty_rates([40, 0], 1, limited=True)
    check_dirty_rates([0, 40], 1, limited=False)


def test_dirty_ring_goes_on_the_accel_option() -> None:
    args = get_profile("x86_64").qemu_args(
        "kvm", get_profile("x86_64").guest_file(), accel_options=DIRTY_RING
    )
    assert args[:2] == ["-accel", "kvm,dirty-ring-size=4096"]


# -- the stall of finding vcpu-dirty-limit-stalls-guest, told by the tests ------------

#: The stalled guest's account, word for word from a run on this host.
STUCK = (
    "the guest does not run on src: timed out after 30 s waiting for a new 'B' on the src "
    "console; last seen: 'AB'"
)
#: The source's trace of its harvests (REAP_TRACE) in that run: the whole ring, then little.
TRACE = (
    "kvm_dirty_ring_reap reaped 4032 pages (took 144 us)\n"
    "kvm_dirty_ring_reap reaped 4096 pages (took 62 us)\n"
    "kvm_dirty_ring_reap reaped 45 pages (took 8 us)\n"
)
EARLY = "src: migration reached 'pre-switchover' before the dirty limit to throttle"


def load_dirty() -> ModuleType:
    """tests/migration/dirty.py, whose helpers are plain functions."""
    path = Path(__file__).resolve().parent.parent / "tests" / "migration" / "dirty.py"
    spec = spec_from_file_location("migration_dirty", path)
    assert spec is not None and spec.loader is not None
    module = module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Source:
    """The source endpoint, as far as the helpers use it."""

    def __init__(self, output: str) -> None:
        self.machine = SimpleNamespace(output=output)
        self.calls: List[str] = []

    def cancel(self) -> None:
        self.calls.append("cancel")

    def wait_for_status(self, *statuses: str, fail_on: Sequence[str] = ()) -> None:
        self.calls.append(f"wait for {'/'.join(statuses)}")

    def wait_for_cancelled(self) -> None:
        self.wait_for_status("cancelled")


class FakeTest:
    """A test whose guest runs, or does not (then it fails as assert_guest_runs does)."""

    def __init__(self, runs: bool, output: str = TRACE) -> None:
        self.pair = SimpleNamespace(src=Source(output))
        self.runs = runs

    def assert_guest_runs(self, machine: object) -> None:
        if not self.runs:
            raise CheckFailure(STUCK)


def test_largest_harvest_reads_qemus_trace() -> None:
    dirty = load_dirty()
    assert dirty.largest_harvest(TRACE) == "4096 entries"
    assert dirty.largest_harvest("qemu-system-x86_64: warning: something") == "none traced"


def test_a_guest_that_does_not_run_again_fails_saying_after_what() -> None:
    dirty = load_dirty()
    dirty.assert_runs_again(FakeTest(runs=True), "cancel-vcpu-dirty-limit")
    with pytest.raises(CheckFailure) as failure:
        dirty.assert_runs_again(FakeTest(runs=False), "cancel-vcpu-dirty-limit")
    assert str(failure.value) == (
        f"after cancel-vcpu-dirty-limit, {STUCK}; "
        "the source's largest harvest of its 4096-entry dirty ring: 4096 entries"
    )
    with pytest.raises(CheckFailure, match=r"dirty ring: none traced$"):
        dirty.assert_runs_again(FakeTest(runs=False, output=""), "cancel-vcpu-dirty-limit")


def test_an_early_switchover_stays_the_failure_unless_the_guest_stalled() -> None:
    dirty = load_dirty()
    early = MigtestError(EARLY)
    running = FakeTest(runs=True)
    with pytest.raises(MigtestError) as kept:
        dirty.converged_early(running, early)
    assert kept.value is early
    assert running.pair.src.calls == ["cancel", "wait for cancelled"]
    with pytest.raises(CheckFailure) as stalled:
        dirty.converged_early(FakeTest(runs=False), early)
    assert str(stalled.value).startswith(f"{EARLY}; after migrate_cancel, {STUCK}; ")
    assert stalled.value.__cause__ is early


def told_stall(after: str) -> str:
    """What the tests say of a guest stalled after ``after``, through their own helpers."""
    dirty = load_dirty()
    with pytest.raises(CheckFailure) as failure:
        if after == "migrate_cancel":
            dirty.converged_early(FakeTest(runs=False), MigtestError(EARLY))
        else:
            dirty.assert_runs_again(FakeTest(runs=False), after)
    return str(failure.value)


@pytest.mark.parametrize("after", ["cancel-vcpu-dirty-limit", "migrate_cancel"])
def test_the_stall_as_told_is_the_finding_only_with_the_whole_ring_harvested(after: str) -> None:
    """The helpers' words, with QEMU's trace, are what the finding matches."""
    told = told_stall(after)
    where = ("x86_64", (10, 0, 13), (10, 0, 13))
    hit = explain(*where, "\n".join([told, TRACE, ""]))
    assert hit is not None and hit.finding.id == "vcpu-dirty-limit-stalls-guest"
    assert hit.line == told
    soft_limit_only = TRACE.replace("4096 pages", "4000 pages")
    assert explain(*where, "\n".join([told, soft_limit_only, ""])) is None
