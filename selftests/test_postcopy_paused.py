"""Postcopy memory checked byte for byte: a destination kept paused until every
page has arrived, and a destination that ran, whose RAM outside the guest's
test range must still be the source's.  Pure checks first, then real QEMU (x86_64
TCG), with one byte of the destination's RAM changed behind QEMU's back."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Dict, Iterator, List, Tuple

import pytest

from migtest.checks import check_pushed_to_paused, ranges_around
from migtest.errors import CheckFailure
from migtest.machine import QEMUMachine
from migtest.pair import MigrationPair
from migtest.params import SuiteParams
from migtest.scenarios import postcopy, postcopy_into_paused
from migtest.verify import assert_memory_identical, verify_migration

MiB = 1 << 20

# -- what is compared of a destination that ran ----------------------------------


@pytest.mark.parametrize(
    "ranges,parts",
    [
        # x86_64: low RAM, then RAM from 1 MiB; the test range from 1 MiB to 100 MiB.
        ([(0, 0xA0000), (MiB, 150 * MiB)], [(0, 0xA0000), (100 * MiB, 150 * MiB)]),
        # ppc64, s390x: one range around the test range.
        ([(0, 256 * MiB)], [(0, MiB), (100 * MiB, 256 * MiB)]),
        # a range that ends where the test range begins, one inside it, one after it.
        (
            [(0, MiB), (2 * MiB, 3 * MiB), (100 * MiB, 101 * MiB)],
            [(0, MiB), (100 * MiB, 101 * MiB)],
        ),
    ],
)
def test_ram_around_the_test_range(
    ranges: List[Tuple[int, int]], parts: List[Tuple[int, int]]
) -> None:
    assert ranges_around(ranges, (MiB, 100 * MiB)) == parts


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


def test_running_destination_is_the_source_outside_the_test_range(
    running_pair: MigrationPair,
) -> None:
    verify_migration(running_pair)


def test_running_destination_with_a_byte_changed_outside_the_test_range_fails(
    running_pair: MigrationPair,
) -> None:
    """Where the guest's pattern says nothing."""
    poke(running_pair.dst.machine, 120 * MiB)
    with pytest.raises(
        CheckFailure, match=r"RAM outside the test range differ:\n  0x7800000: expected 0x00"
    ):
        verify_migration(running_pair)


def test_running_destination_with_a_byte_changed_inside_the_test_range_fails(
    running_pair: MigrationPair,
) -> None:
    """The guest contract: every byte but the counters is zero."""
    poke(running_pair.dst.machine, 2 * MiB + 1)
    with pytest.raises(
        CheckFailure, match=r"never writes are not zero[^\n]*\n  0x200001: expected"
    ):
        verify_migration(running_pair)
