"""The dirty-tracking checks, each given bad input: they must fail."""

from __future__ import annotations

import pytest

from migtest.arch import DIRTY_RING, get_profile
from migtest.checks import (
    check_dirty_limit_released,
    check_dirty_limit_throttled,
    check_dirty_rates,
    check_vcpu_dirty_limits,
)
from migtest.errors import CheckFailure


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
