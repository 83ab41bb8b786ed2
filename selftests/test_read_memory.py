"""Guest RAM read from QEMU's own memory, and the pmemsave dump it falls back to.

Against a real paused x86_64 TCG guest: both ways must give the same bytes
for every range the suite compares, and every reason not to read
``/proc/<pid>/mem`` must end in a dump, not in wrong bytes or an error.
"""

from __future__ import annotations

import errno
import gc
import logging
import mmap
import os
import shutil
import struct
from pathlib import Path
from typing import Any, Iterator, List, Set

import pytest

from migtest import machine as machine_module
from migtest.arch import get_profile
from migtest.checks import same_bytes
from migtest.machine import QEMUMachine, read_memories
from migtest.wait import wait_for

PROFILE = get_profile("x86_64")
RAM_END = PROFILE.ram_ranges[-1][1]
#: Every range the suite reads: the RAM ranges and the counters' range.
RANGES = [*PROFILE.ram_ranges, PROFILE.test_range]
BIOS = 0xFFFC0000  # pc.bios: ROM, mapped in QEMU but not RAM


def open_fds() -> List[str]:
    """What our descriptors are open on (the listing's own excepted)."""
    gc.collect()  # a dump's mapping holds a descriptor until the view is collected
    fds = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            fds.append(f"{fd} {os.readlink(f'/proc/self/fd/{fd}')}")
        except FileNotFoundError:  # the listing's own
            pass
    return sorted(fds)


@pytest.fixture(autouse=True)
def nothing_told_yet(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test sees its own fallback logged (they are logged once per process)."""
    monkeypatch.setattr(machine_module, "_told", set())


@pytest.fixture
def vm(x86_binary: str, workdir: Path) -> Iterator[QEMUMachine]:
    """A paused guest that has counted: RAM that is not all zeros."""
    guest = workdir / "guest.img"  # QEMU locks the image it boots: a copy of our own
    shutil.copyfile(PROFILE.guest_file(), guest)
    with QEMUMachine(x86_binary, PROFILE.qemu_args("tcg", guest), name="vm", workdir=workdir) as m:
        m.launch()
        wait_for(
            lambda: ("B" in m.console_text(), m.console_text()[-20:]),
            what="the guest's first 'B' on the console",
            timeout=30,
        )
        m.cmd("stop")
        yield m


def direct(vm: QEMUMachine, address: int, size: int) -> memoryview:
    """The range as read from /proc/<pid>/mem, or the test fails."""
    host = machine_module._host_address(vm, address, size)
    return machine_module._read_process(vm, host, size, machine_module._zero_frames())


def dumped(vm: QEMUMachine, address: int, size: int) -> memoryview:
    return machine_module._dump_memories([vm], address, size)[0]


def test_proc_and_pmemsave_give_the_same_bytes_for_every_range(
    vm: QEMUMachine, caplog: pytest.LogCaptureFixture
) -> None:
    for start, end in RANGES:
        fast = direct(vm, start, end - start)
        assert fast.readonly and len(fast) == end - start
        assert same_bytes(fast, dumped(vm, start, end - start)), f"0x{start:x}-0x{end:x} differs"
    with caplog.at_level(logging.INFO, logger="migtest.machine"):
        for start, end in RANGES:
            read_memories([vm, vm], start, end - start)
    assert "pmemsave" not in caplog.text, "the profile's ranges were dumped"


def test_the_comparison_sees_a_read_from_the_wrong_place(vm: QEMUMachine) -> None:
    """The check above can fail: a page off, the counters are not the dump's."""
    start, end = PROFILE.test_range
    size = end - start
    host = machine_module._host_address(vm, start, size)
    shifted = machine_module._read_process(vm, host + 4096, size, frozenset())
    assert not same_bytes(shifted, dumped(vm, start, size))


@pytest.mark.parametrize(
    "address, size, reason",
    [
        (BIOS, 4096, "rom"),
        (RAM_END - 4096, 8192, "nothing is mapped"),
        (RAM_END + (1 << 30), 4096, "nothing is mapped"),
    ],
)
def test_a_range_that_is_not_all_ram_is_dumped(
    vm: QEMUMachine, caplog: pytest.LogCaptureFixture, address: int, size: int, reason: str
) -> None:
    with pytest.raises(machine_module._NoDirectRead, match=reason):
        machine_module._host_address(vm, address, size)
    if address < RAM_END:  # pmemsave reads ROM, and RAM up to its end
        with caplog.at_level(logging.INFO, logger="migtest.machine"):
            [view] = read_memories([vm], address, size)
        assert bytes(view) == bytes(dumped(vm, address, size))
        assert reason in caplog.text and "pmemsave" in caplog.text


def test_a_range_qemu_maps_in_two_places_is_dumped(
    vm: QEMUMachine, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """gpa2hva of the last byte must follow from the first's."""
    real = machine_module._gpa2hva
    start, end = PROFILE.test_range
    monkeypatch.setattr(
        machine_module,
        "_gpa2hva",
        lambda m, address: real(m, address) + (4096 if address == end - 1 else 0),
    )
    with pytest.raises(machine_module._NoDirectRead, match="not one mapping"):
        machine_module._host_address(vm, start, end - start)
    with caplog.at_level(logging.INFO, logger="migtest.machine"):
        [view] = read_memories([vm], start, end - start)
    assert "not one mapping" in caplog.text
    monkeypatch.setattr(machine_module, "_gpa2hva", real)
    assert same_bytes(view, direct(vm, start, end - start))


def test_a_qemu_without_gpa2hva_is_dumped(
    vm: QEMUMachine, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    real = vm.cmd

    def without(command: str, **arguments: Any) -> Any:
        if command == "human-monitor-command" and arguments["command_line"].startswith("gpa2hva"):
            return "unknown command: 'gpa2hva'\r\n"
        return real(command, **arguments)

    monkeypatch.setattr(vm, "cmd", without)
    start, end = PROFILE.test_range
    with caplog.at_level(logging.INFO, logger="migtest.machine"):
        [view] = read_memories([vm], start, end - start)
    assert "unknown command" in caplog.text
    assert same_bytes(view, dumped(vm, start, end - start))


@pytest.mark.parametrize("call", ["open", "preadv"])
@pytest.mark.parametrize("error", [errno.EPERM, errno.EACCES, errno.EIO])
def test_a_refused_proc_mem_falls_back_to_pmemsave(
    vm: QEMUMachine,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    call: str,
    error: int,
) -> None:
    """As under Yama scope 2, or for a page Linux will not hand out."""
    real = getattr(os, call)

    def refused(*args: Any, **kwargs: Any) -> Any:
        if call == "preadv" or str(args[0]).endswith("/mem"):
            raise OSError(error, os.strerror(error))
        return real(*args, **kwargs)

    start, end = PROFILE.test_range
    expected = dumped(vm, start, end - start)
    before = open_fds()
    monkeypatch.setattr(machine_module.os, call, refused)
    with caplog.at_level(logging.INFO, logger="migtest.machine"):
        views = read_memories([vm, vm], start, end - start)
        read_memories([vm, vm], start, end - start)
    assert all(same_bytes(view, expected) for view in views)
    assert caplog.text.count(os.strerror(error)) == 1, "said more than once, or never"
    del views
    assert open_fds() == before


def test_an_unexpected_error_is_raised_and_leaks_nothing(
    vm: QEMUMachine, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: Any) -> int:
        raise OSError(errno.ENOMEM, os.strerror(errno.ENOMEM))

    before = open_fds()
    monkeypatch.setattr(machine_module.os, "preadv", broken)
    with pytest.raises(OSError, match="Cannot allocate memory"):
        read_memories([vm, vm], *PROFILE.test_range)
    assert open_fds() == before


def test_reads_leak_no_descriptor(vm: QEMUMachine) -> None:
    before = open_fds()
    for start, end in RANGES:
        views = read_memories([vm, vm], start, end - start)
        del views
    read_memories([vm], BIOS, 4096)  # the pmemsave way
    assert open_fds() == before
    fd = os.open(f"/proc/{vm.pid}/mem", os.O_RDONLY)  # the count can fail
    try:
        assert open_fds() != before
    finally:
        os.close(fd)


FLAT = """FlatView #0
 AS "I/O", root: io
 Root memory region: io
  0000000000000000-000000000009ffff (prio 0, ram): other.ram
FlatView #1
 AS "memory", root: system
 AS "cpu-memory-0", root: system
 Root memory region: system
{pieces}
"""


@pytest.mark.parametrize(
    "pieces, verdict",
    [
        (["0-fffff (prio 0, ram): pc.ram"], None),
        (["0-7ffff (prio 0, ram): pc.ram", "80000-fffff (prio 0, ram): pc.ram @80000 KVM"], None),
        (["0-fffff (prio 0, ram): pc.ram @1000"], None),
        (
            ["0-3ffff (prio 0, ram): pc.ram", "40000-4ffff (prio 1, rom): overlay"],
            "0x40000 is rom (overlay), not RAM",
        ),
        (
            [
                "0-3ffff (prio 0, ram): pc.ram",
                "40000-4ffff (prio 1, i/o): window",
                "50000-fffff (prio 0, ram): pc.ram @50000",
            ],
            "not RAM",
        ),
        (
            ["0-7ffff (prio 0, ram): pc.ram", "80000-fffff (prio 0, ram): pc.ram @0"],
            "another offset",
        ),
        (
            ["0-7ffff (prio 0, ram): pc.ram", "80000-fffff (prio 0, ram): other.ram @80000"],
            "another offset",
        ),
        (["0-7ffff (prio 0, ram): pc.ram"], "nothing is mapped at 0x80000"),
        (["0-7ffff (prio 0, ram): pc.ram", "90000-fffff (prio 0, ram): pc.ram @90000"], "0x80000"),
    ],
)
def test_only_one_stretch_of_one_ram_region_is_read_directly(
    pieces: List[str], verdict: str
) -> None:
    text = FLAT.format(pieces="\r\n".join("  " + piece for piece in pieces))
    found = machine_module._one_ram_block(text, 0, 0x100000)
    if verdict is None:
        assert found is None
    else:
        assert found is not None and verdict in found
    # A range inside the first piece is fine whatever follows it.
    assert machine_module._one_ram_block(text, 0x1000, 0x1000) is None


def test_without_a_flat_view_of_memory_the_range_is_dumped() -> None:
    text = FLAT.replace('AS "memory"', 'AS "smm"').format(pieces="  0-fffff (prio 0, ram): pc.ram")
    assert "no flat view" in str(machine_module._one_ram_block(text, 0, 0x1000))


def frames_of(vm: QEMUMachine, address: int, size: int) -> Set[int]:
    """The page frames QEMU keeps a guest range in, from its pagemap."""
    host = machine_module._host_address(vm, address, size)
    with open(f"/proc/{vm.pid}/pagemap", "rb") as pagemap:
        pagemap.seek(host // mmap.PAGESIZE * 8)
        data = pagemap.read(size // mmap.PAGESIZE * 8)
    return {entry & machine_module._FRAME for (entry,) in struct.iter_unpack("<Q", data)}


def test_zero_pages_are_left_unread_and_read_as_zeros(vm: QEMUMachine) -> None:
    """What the comparison above covers: RAM that is partly Linux's zero pages."""
    zero = machine_module._zero_frames()
    if not zero:
        pytest.skip("page frames are hidden from us (no CAP_SYS_ADMIN)")
    start, end = PROFILE.ram_ranges[-1]
    host = machine_module._host_address(vm, start, end - start)
    direct(vm, start, end - start)  # QEMU maps a zero page where it is read
    stretches = machine_module._pages_to_read(vm.pid or 0, host, end - start, zero)
    unread = (end - start) - sum(stop - begin for begin, stop in stretches)
    assert unread > 0, "no zero page left unread: the skipping is not tested"
    assert frames_of(vm, start, end - start) & zero


def test_a_data_page_taken_for_a_zero_page_is_seen(vm: QEMUMachine) -> None:
    """The comparison with pmemsave fails if pages with data are left unread."""
    start, end = PROFILE.test_range
    size = end - start
    host = machine_module._host_address(vm, start, size)
    wrong = frozenset(frames_of(vm, start, size)) | machine_module._zero_frames()
    if wrong == {0}:
        pytest.skip("page frames are hidden from us (no CAP_SYS_ADMIN)")
    assert not same_bytes(
        machine_module._read_process(vm, host, size, wrong), dumped(vm, start, size)
    )


@pytest.mark.parametrize("host, size", [(0x1001, 0x2000), (0x1000, 0x1800)])
def test_a_range_of_partial_pages_is_read_whole(host: int, size: int) -> None:
    assert machine_module._pages_to_read(os.getpid(), host, size, frozenset({1})) == [(0, size)]
