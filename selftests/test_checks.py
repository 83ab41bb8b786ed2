"""The memory checks, on synthetic dumps: each must pass the good and fail the bad."""

from __future__ import annotations

import pytest

from migtest.checks import (
    CHUNK_PAGES,
    PAGE_SIZE,
    check_counter_pattern,
    check_multifd_used,
    check_shared_ram_not_sent,
    check_statuses_after,
    check_switchover_budget,
    check_throttle_steps,
    check_zero_pages,
    compare_memory,
    same_bytes,
)
from migtest.errors import CheckFailure

BASE = 0x100000
PAGES = 64


def dump(counters: list[int]) -> bytearray:
    """A test range whose pages hold ``counters`` and zeros elsewhere."""
    data = bytearray(len(counters) * PAGE_SIZE)
    data[::PAGE_SIZE] = bytes(counters)
    return data


def test_all_counters_equal_passes() -> None:
    check_counter_pattern(bytes(dump([7] * PAGES)), BASE)


def test_one_step_down_passes() -> None:
    check_counter_pattern(bytes(dump([8] * 10 + [7] * (PAGES - 10))), BASE)


def test_step_across_wraparound_passes() -> None:
    check_counter_pattern(bytes(dump([0] * 10 + [255] * (PAGES - 10))), BASE)


def test_two_steps_fail_naming_the_second() -> None:
    counters = [9] * 10 + [8] * 10 + [7] * (PAGES - 20)
    with pytest.raises(CheckFailure) as failure:
        check_counter_pattern(bytes(dump(counters)), BASE)
    assert f"0x{BASE + 20 * PAGE_SIZE:x}: expected 0x08, found 0x07" in str(failure.value)


def test_step_up_fails() -> None:
    counters = [7] * 10 + [8] * (PAGES - 10)
    with pytest.raises(CheckFailure, match="out of sequence"):
        check_counter_pattern(bytes(dump(counters)), BASE)


def test_wrong_counter_byte_fails_naming_it() -> None:
    counters = [5] * PAGES
    counters[33] = 0x42
    with pytest.raises(CheckFailure) as failure:
        check_counter_pattern(bytes(dump(counters)), BASE)
    assert f"0x{BASE + 33 * PAGE_SIZE:x}: expected 0x05, found 0x42" in str(failure.value)


def test_stray_nonzero_byte_fails_naming_it() -> None:
    data = dump([3] * PAGES)
    data[5 * PAGE_SIZE + 100] = 0x80
    with pytest.raises(CheckFailure) as failure:
        check_counter_pattern(bytes(data), BASE)
    message = str(failure.value)
    assert "never writes" in message
    assert f"0x{BASE + 5 * PAGE_SIZE + 100:x}: expected 0x00, found 0x80" in message


@pytest.mark.parametrize("page", [0, CHUNK_PAGES - 1, CHUNK_PAGES, 2 * CHUNK_PAGES + 4])
def test_stray_byte_is_found_in_any_chunk(page: int) -> None:
    # Two whole chunks and a short one: the last byte of ``page`` is wrong.
    data = dump([3] * (2 * CHUNK_PAGES + 5))
    data[page * PAGE_SIZE + PAGE_SIZE - 1] = 0x01
    with pytest.raises(CheckFailure, match=f"0x{BASE + (page + 1) * PAGE_SIZE - 1:x}: expected"):
        check_counter_pattern(memoryview(data), BASE)


def test_all_zeros_fails() -> None:
    with pytest.raises(CheckFailure, match="never ran"):
        check_counter_pattern(bytes(PAGES * PAGE_SIZE), BASE)


def test_partial_page_is_refused() -> None:
    with pytest.raises(CheckFailure, match="whole number of pages"):
        check_counter_pattern(bytes(PAGE_SIZE + 1), BASE)


def test_identical_memory_passes() -> None:
    data = bytes(dump([1] * PAGES))
    compare_memory(data, bytes(data), BASE, "two dumps")


def test_flipped_bit_fails_naming_address_and_values() -> None:
    good = dump([1] * PAGES)
    bad = bytearray(good)
    bad[3 * PAGE_SIZE + 17] ^= 0x10
    with pytest.raises(CheckFailure) as failure:
        compare_memory(bytes(good), bytes(bad), BASE, "source and destination RAM")
    message = str(failure.value)
    assert message.startswith("source and destination RAM differ")
    assert f"0x{BASE + 3 * PAGE_SIZE + 17:x}: expected 0x00, found 0x10" in message
    assert "1 pages differ" in message


def test_views_compare_like_bytes() -> None:
    data = bytes(dump([1] * PAGES))
    compare_memory(memoryview(data), data, BASE, "a view and its bytes")
    changed = bytearray(data)
    changed[-1] = 0xFF
    with pytest.raises(
        CheckFailure, match=f"0x{BASE + len(data) - 1:x}: expected 0x00, found 0xff"
    ):
        compare_memory(memoryview(data), memoryview(changed), BASE, "dumps")


@pytest.mark.parametrize("size", [1, 7, 8, 4097])
def test_same_bytes_sees_the_last_byte(size: int) -> None:
    data = bytes(range(256)) * (size // 256 + 1)
    assert same_bytes(memoryview(data[:size]), data[:size])
    assert not same_bytes(data[:size], data[: size - 1] + b"\xfe")
    assert not same_bytes(data[:size], data[: size - 1])


def test_different_sizes_fail() -> None:
    with pytest.raises(CheckFailure, match="differ in size"):
        compare_memory(bytes(PAGE_SIZE), bytes(2 * PAGE_SIZE), BASE, "dumps")


PAUSED_THEN_RECOVERED = ["setup", "active", "postcopy-active", "postcopy-paused",
                         "postcopy-recover", "postcopy-active", "completed"]  # fmt: skip


def test_status_sequence_passes() -> None:
    check_statuses_after(PAUSED_THEN_RECOVERED, "postcopy-paused", {"failed", "active"})


def test_status_sequence_through_forbidden_status_fails() -> None:
    history = [*PAUSED_THEN_RECOVERED[:4], "failed", "postcopy-recover", "completed"]
    with pytest.raises(CheckFailure, match="postcopy-paused -> failed -> postcopy-recover"):
        check_statuses_after(history, "postcopy-paused", {"failed", "active"})


def test_status_sequence_completing_twice_fails() -> None:
    history = [*PAUSED_THEN_RECOVERED[:4], "completed", "postcopy-active", "completed"]
    with pytest.raises(CheckFailure, match="must not pass through"):
        check_statuses_after(history, "postcopy-paused", {"failed"})


def test_status_sequence_not_ending_completed_fails() -> None:
    with pytest.raises(CheckFailure, match="before ending 'completed'"):
        check_statuses_after(PAUSED_THEN_RECOVERED[:-1], "postcopy-paused", {"failed"})


def test_status_sequence_without_the_mark_fails() -> None:
    with pytest.raises(CheckFailure, match="never reached 'postcopy-paused'"):
        check_statuses_after(["setup", "active", "completed"], "postcopy-paused", {"failed"})


# 2400 Mbit/s is 300 000 bytes a millisecond: 300 kB fit in 1 ms.
AT_PRE_SWITCHOVER = {"status": "pre-switchover", "ram": {"remaining": 299_008, "mbps": 2400.0}}


def test_switchover_within_the_limit_passes() -> None:
    check_switchover_budget(AT_PRE_SWITCHOVER, {"downtime-limit": 1})


def test_switchover_with_too_much_left_fails_saying_how_much() -> None:
    info = {"ram": {"remaining": 99 * 2**20, "mbps": 2400.0}}
    with pytest.raises(CheckFailure, match="103809024 bytes of RAM left, more than the 300000"):
        check_switchover_budget(info, {"downtime-limit": 1})


def test_switchover_budget_uses_the_declared_bandwidth_when_set() -> None:
    # 100 MB/s declared: 100 kB a millisecond, whatever QEMU measured.
    parameters = {"downtime-limit": 1, "avail-switchover-bandwidth": 100_000_000}
    with pytest.raises(CheckFailure, match="avail-switchover-bandwidth"):
        check_switchover_budget(AT_PRE_SWITCHOVER, parameters)


# Measured with QEMU 10.0, x86_64 and ppc64 (the latter's 4.3 MB of
# ``transferred`` are its hash page table, not RAM).
SHARED = 150 * 2**20
X86_SHARED_RUN = {"total": 532_480, "normal-bytes": 212_992, "transferred": 327_924}
PPC64_SHARED_RUN = {"total": 0, "normal-bytes": 0, "transferred": 4_387_485}


@pytest.mark.parametrize("ram", [X86_SHARED_RUN, PPC64_SHARED_RUN])
def test_shared_ram_left_out_passes(ram: dict[str, int]) -> None:
    check_shared_ram_not_sent(ram, SHARED)


def test_shared_ram_counted_as_migratable_fails() -> None:
    ram = {**X86_SHARED_RUN, "total": SHARED + 532_480}
    with pytest.raises(CheckFailure, match="shared RAM included"):
        check_shared_ram_not_sent(ram, SHARED)


def test_shared_ram_sent_fails() -> None:
    # What the guest's 99 MiB of counter pages would send.
    ram = {**X86_SHARED_RUN, "normal-bytes": 99 * 2**20}
    with pytest.raises(CheckFailure, match="103809024 bytes of page data were sent"):
        check_shared_ram_not_sent(ram, SHARED)


@pytest.mark.parametrize("seen", [[5, 55, 95], [5, 95], [5]])
def test_throttle_on_the_grid_passes(seen: list[int]) -> None:
    check_throttle_steps(seen, initial=5, increment=50, maximum=95)


@pytest.mark.parametrize(
    ("seen", "complaint"),
    [
        ([20, 55, 95], "the first is not cpu-throttle-initial"),
        ([5, 55, 105], "105 is above max-cpu-throttle"),
        ([5, 60, 95], "60 is not initial"),
        ([5, 95, 55], "55 follows 95: throttling fell"),
        ([], "the first is not"),
    ],
)
def test_throttle_off_the_grid_fails(seen: list[int], complaint: str) -> None:
    with pytest.raises(CheckFailure, match=complaint):
        check_throttle_steps(seen, initial=5, increment=50, maximum=95)


# -- multifd and zero pages --------------------------------------------------------


def test_multifd_must_have_carried_the_pages() -> None:
    check_multifd_used({"multifd-bytes": 105_000_000, "normal-bytes": 104_000_000})
    check_multifd_used({"multifd-bytes": 3_000_000, "normal-bytes": 104_000_000}, "compressed")
    check_multifd_used({"multifd-bytes": 1, "normal-bytes": 104_000_000}, "some")
    with pytest.raises(CheckFailure, match="no byte went over the multifd channels"):
        check_multifd_used({"multifd-bytes": 0, "normal-bytes": 104_000_000}, "some")
    with pytest.raises(CheckFailure, match="some were sent another way"):
        check_multifd_used({"multifd-bytes": 50_000_000, "normal-bytes": 104_000_000})
    with pytest.raises(CheckFailure, match="they were not compressed"):
        check_multifd_used(
            {"multifd-bytes": 105_000_000, "normal-bytes": 104_000_000}, "compressed"
        )


def test_zero_pages_are_found_only_when_detection_is_on() -> None:
    check_zero_pages({"duplicate": 12_000}, detected=True)
    check_zero_pages({"duplicate": 0}, detected=False)
    with pytest.raises(CheckFailure, match="no zero page was found"):
        check_zero_pages({"duplicate": 0}, detected=True)
    with pytest.raises(CheckFailure, match="but 12000 zero pages were found"):
        check_zero_pages({"duplicate": 12_000}, detected=False)
