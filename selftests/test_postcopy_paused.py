"""Postcopy memory checked byte for byte: a destination kept paused until every
page has arrived, and a destination that ran, whose RAM but for the counter
bytes must still be the source's.  Pure checks first, then real QEMU (x86_64
TCG), with one byte of the destination's RAM changed behind QEMU's back."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Dict, Iterator, Tuple

import pytest

from migtest.checks import PAGE_SIZE, check_pushed_to_paused, compare_memory_except_counters
from migtest.errors import CheckFailure
from migtest.machine import QEMUMachine
from migtest.pair import MigrationPair
from migtest.params import SuiteParams
from migtest.scenarios import postcopy, postcopy_into_paused
from migtest.verify import assert_memory_identical, verify_migration

MiB = 1 << 20

# -- the comparison but for the counters ------------------------------------------

BASE = 0x40000000
#: A test range of 64 pages inside a dump of 1 MiB (256 pages) at BASE.
COUNTERS = (BASE + 64 * PAGE_SIZE, BASE + 128 * PAGE_SIZE)


def dumps() -> Tuple[bytearray, bytearray]:
    """A source's dump, its counters at 5, and a copy of it."""
    source = bytearray(MiB)
    source[3] = 7  # firmware, say: not a counter
    source[COUNTERS[0] - BASE : COUNTERS[1] - BASE : PAGE_SIZE] = b"\x05" * 64
    return source, bytearray(source)


def test_counters_moved_on_pass() -> None:
    source, destination = dumps()
    first, last = COUNTERS[0] - BASE, COUNTERS[1] - BASE
    destination[first:last:PAGE_SIZE] = bytes(range(64))
    compare_memory_except_counters(source, destination, BASE, COUNTERS, "RAM")


@pytest.mark.parametrize(
    "offset",
    [
        3,  # below the test range
        COUNTERS[0] - BASE + 1,  # a byte after a counter
        COUNTERS[1] - BASE - 1,  # the last byte of the range
        COUNTERS[1] - BASE,  # the first byte of a page after the range: no counter
        COUNTERS[0] - BASE - PAGE_SIZE,  # the first byte of a page before it
        MiB - 1,
    ],
)
def test_any_other_byte_fails_naming_its_address(offset: int) -> None:
    source, destination = dumps()
    destination[offset] ^= 0x40
    with pytest.raises(CheckFailure) as failed:
        compare_memory_except_counters(source, destination, BASE, COUNTERS, "RAM")
    message = str(failed.value)
    assert "RAM differ beyond the counter bytes" in message
    assert f"0x{BASE + offset:x}: expected 0x{source[offset]:02x}" in message
    assert "1 pages differ" in message


def test_sizes_must_match() -> None:
    source, destination = dumps()
    with pytest.raises(CheckFailure, match="differ in size"):
        compare_memory_except_counters(source, destination[:-1], BASE, COUNTERS, "RAM")


def test_counters_of_a_range_outside_the_dump_are_not_exempt() -> None:
    source, destination = dumps()
    destination[0] = 1
    elsewhere = (BASE + 2 * MiB, BASE + 3 * MiB)
    with pytest.raises(CheckFailure, match=f"0x{BASE:x}: expected 0x00, found 0x01"):
        compare_memory_except_counters(source, destination, BASE, elsewhere, "RAM")


def final_ram(requests: int, pushed: int) -> Dict[str, Any]:
    return {"postcopy-requests": requests, "postcopy-bytes": pushed}


def test_pages_pushed_and_none_asked_for_pass() -> None:
    check_pushed_to_paused(final_ram(0, 104015911))


def test_a_page_asked_for_fails() -> None:
    with pytest.raises(CheckFailure, match="asked for 3 pages"):
        check_pushed_to_paused(final_ram(3, 104015911))


def test_nothing_pushed_fails() -> None:
    with pytest.raises(CheckFailure, match="no byte was sent in postcopy"):
        check_pushed_to_paused(final_ram(0, 0))


# -- against real QEMU ------------------------------------------------------------


def poke(machine: QEMUMachine, address: int) -> None:
    """Flip a bit of guest RAM at ``address``, behind QEMU's back.

    HMP's ``gpa2hva`` says where QEMU maps it; the byte is written through
    ``/proc/PID/mem``, as a bad migration would have left it.
    """
    text = machine.cmd("human-monitor-command", command_line=f"gpa2hva {address:#x}")
    found = re.search(r"is (0x[0-9a-f]+)", text)
    assert found, text
    with open(f"/proc/{machine.pid}/mem", "r+b", buffering=0) as memory:
        memory.seek(int(found.group(1), 16))
        byte = memory.read(1)[0]
        memory.seek(int(found.group(1), 16))
        memory.write(bytes([byte ^ 0x40]))


@pytest.fixture
def paused_pair(tcg_params: SuiteParams, workdir: Path) -> Iterator[MigrationPair]:
    """An x86_64 TCG pair, the destination started paused, postcopy enabled."""
    with MigrationPair(tcg_params, workdir) as pair:
        pair.start()
        pair.set_capabilities({"postcopy-ram": True})
        yield pair


def test_paused_destination_is_compared_byte_for_byte(paused_pair: MigrationPair) -> None:
    postcopy_into_paused(paused_pair, "unix")
    verify_migration(paused_pair)


def test_a_pushed_page_gone_wrong_fails(paused_pair: MigrationPair) -> None:
    """One byte above the counter range: only a byte-for-byte comparison sees it."""
    postcopy_into_paused(paused_pair, "unix")
    poke(paused_pair.dst.machine, 120 * MiB)
    with pytest.raises(CheckFailure, match=r"0x7800000: expected 0x00, found 0x40"):
        assert_memory_identical(paused_pair)


def test_a_destination_that_runs_fails_the_paused_scenario(
    tcg_params: SuiteParams, workdir: Path
) -> None:
    with MigrationPair(tcg_params, workdir) as pair:
        pair.start(dst_paused=False)
        pair.set_capabilities({"postcopy-ram": True})
        with pytest.raises(CheckFailure, match="its guest runs in postcopy-active"):
            postcopy_into_paused(pair, "unix")


@pytest.fixture
def running_pair(tcg_params: SuiteParams, workdir: Path) -> Iterator[MigrationPair]:
    """An x86_64 TCG pair after a postcopy into a running destination."""
    with MigrationPair(tcg_params, workdir) as pair:
        pair.start(dst_paused=False)
        pair.set_capabilities({"postcopy-ram": True})
        postcopy(pair, "unix")
        yield pair


def test_running_destination_is_the_source_but_for_counters(running_pair: MigrationPair) -> None:
    verify_migration(running_pair)


def test_running_destination_with_another_byte_changed_fails(running_pair: MigrationPair) -> None:
    """Outside the test range, where the guest's pattern says nothing."""
    poke(running_pair.dst.machine, 120 * MiB)
    with pytest.raises(CheckFailure, match=r"beyond the counter bytes:\n  0x7800000: expected"):
        verify_migration(running_pair)
