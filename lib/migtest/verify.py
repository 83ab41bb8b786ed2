"""Whether a migrated guest is intact: the checks applied after a migration.

These read the guests through QMP and hand the bytes to :mod:`migtest.checks`.
Each raises :class:`~migtest.errors.CheckFailure` (a FAIL) when the guest is
wrong; a wait that expires while checking is a failure of the check too.
"""

from __future__ import annotations

import logging
from typing import Any, Collection, List, Optional, Sequence

from .arch import ArchProfile
from .checks import check_counter_pattern, check_statuses_after, compare_memory, ranges_around
from .endpoint import Endpoint
from .errors import CheckFailure, QMPError, StateError, WaitTimeout
from .machine import QEMUMachine, read_memories
from .pair import MigrationPair
from .status import Status
from .vcpu_state import HMP_COMMAND, Run, check_vcpu_states
from .wait import wait_for

#: Seconds a resumed guest gets to show it runs.
RUN_TIMEOUT = 30.0

_log = logging.getLogger("migtest.verify")


def is_paused(machine: QEMUMachine) -> bool:
    """Whether the guest's vCPUs are stopped."""
    return not machine.cmd("query-status")["running"]


def read_test_range(machine: QEMUMachine, profile: ArchProfile) -> memoryview:
    """A dump of the guest's counter range."""
    start, end = profile.test_range
    return machine.read_memory(start, end - start)


def require_paused(machine: QEMUMachine, what: str) -> None:
    """Refuse to check the memory of a guest that runs.

    QEMU's word (``query-status``) is taken: two dumps cannot tell a paused
    guest from a running one.  Under TCG, two pmemsaves in a row were seen
    identical while the guest printed three passes, presumably its console
    write waiting for the big lock pmemsave holds (README, "Findings").

    :param what: the check refused, for the message.
    """
    if not is_paused(machine):
        raise CheckFailure(f"{machine.name} runs: {what} only while it is paused")


def assert_guest_memory(machine: QEMUMachine, profile: ArchProfile) -> None:
    """The test range on the paused ``machine`` obeys the guest contract."""
    require_paused(machine, "its memory can be checked")
    check_counter_pattern(read_test_range(machine, profile), profile.test_range[0])


def assert_memory_identical(pair: MigrationPair) -> memoryview:
    """Guest RAM is the same, byte for byte, on both (paused) sides.

    Checking only the counters is not enough: a stream with flipped bits in
    page data can complete and leave every counter right.

    :return: the destination's test range, from the same dumps.
    """
    profile = pair.profile
    for side in (pair.src, pair.dst):
        require_paused(side.machine, "RAM can be compared")
    test_start, test_end = profile.test_range
    test_range = memoryview(b"")
    for start, end in profile.ram_ranges:
        source, destination = read_memories(
            [pair.src.machine, pair.dst.machine], start, end - start
        )
        compare_memory(source, destination, start, "source and destination RAM")
        if start <= test_start and test_end <= end:
            test_range = destination[test_start - start : test_end - start]
    return test_range


def assert_ram_outside_test_range_identical(pair: MigrationPair) -> None:
    """Guest RAM outside the test range is the same, byte for byte, on both (paused) sides.

    What can be proved of a destination whose guest ran before it could be
    compared (postcopy): the guest writes nothing outside its test range,
    so every byte there must still be the source's (measured after
    postcopy on every architecture: only counter bytes differ).  Inside
    it, only the counters moved on, which :func:`assert_guest_memory`
    checks.
    """
    for side in (pair.src, pair.dst):
        require_paused(side.machine, "RAM can be compared")
    for start, end in ranges_around(pair.profile.ram_ranges, pair.profile.test_range):
        source, destination = read_memories(
            [pair.src.machine, pair.dst.machine], start, end - start
        )
        compare_memory(
            source, destination, start, "source and destination RAM outside the test range"
        )


def assert_vcpus_identical(pair: MigrationPair) -> None:
    """Every vCPU of the paused destination shows the stopped source's state.

    Registers, control registers, FPU and vector state, as ``info
    registers -a`` shows them, before the destination ran an instruction.
    Differences :data:`~migtest.vcpu_state.KNOWN_DIFFERENCES` allows are
    logged with their reason; those that are known QEMU bugs are noted on
    the pair, and the test says so (a WARN naming the finding).

    :raise CheckFailure: a register differs, naming the vCPU, the register
        and both values.
    """
    assert_vcpus_as_snapshot(snapshot_vcpus(pair.src), pair)


def snapshot_vcpus(side: Endpoint) -> str:
    """The paused ``side``'s vCPU state, for :func:`assert_vcpus_as_snapshot`.

    For a QEMU that will be gone when its successor is checked (CPR).
    """
    require_paused(side.machine, "its vCPUs can be compared")
    return side.hmp(HMP_COMMAND)


def assert_vcpus_as_snapshot(snapshot: str, pair: MigrationPair) -> None:
    """The paused destination's vCPUs show the state ``snapshot`` holds (the source's).

    :raise CheckFailure: see :func:`assert_vcpus_identical`.
    """
    destination = snapshot_vcpus(pair.dst)
    run = Run(pair.profile.name, pair.params.accel, pair.src.version, pair.dst.version)
    result = check_vcpu_states(snapshot, destination, run)
    for line in [*result.known, *result.unshown]:
        _log.info("vCPU state not compared as equal: %s", line)
    for finding in result.findings:
        pair.note_finding(finding, "vCPU state", [line for line in result.known if finding in line])


def snapshot_ram(machine: QEMUMachine, profile: ArchProfile) -> List[memoryview]:
    """Dumps of every RAM range of the paused ``machine``, for :func:`assert_ram_as_snapshot`.

    For a QEMU that will be gone when its successor is checked (CPR: the
    old QEMU quits before the new one starts).
    """
    require_paused(machine, "its RAM can be kept for a later comparison")
    return [machine.read_memory(start, end - start) for start, end in profile.ram_ranges]


def assert_ram_as_snapshot(
    snapshot: Sequence[memoryview], machine: QEMUMachine, profile: ArchProfile, what: str
) -> memoryview:
    """The paused ``machine``'s RAM is, byte for byte, what ``snapshot`` holds.

    :param what: whose the snapshot is, for the message (``the old QEMU``).
    :return: the test range, from the same dumps.
    :raise CheckFailure: a byte differs.
    """
    require_paused(machine, "RAM can be compared")
    if len(snapshot) != len(profile.ram_ranges):
        raise StateError(
            f"a snapshot of {len(snapshot)} ranges for {len(profile.ram_ranges)} RAM ranges"
        )
    test_start, test_end = profile.test_range
    test_range: Optional[memoryview] = None
    for (start, end), before in zip(profile.ram_ranges, snapshot):
        now = machine.read_memory(start, end - start)
        compare_memory(before, now, start, f"RAM of {what} and of {machine.name}")
        if start <= test_start and test_end <= end:
            test_range = now[test_start - start : test_end - start]
    if test_range is None:
        raise StateError(f"{profile.name}: no RAM range holds the test range")
    return test_range


def assert_guest_runs(
    machine: QEMUMachine, profile: ArchProfile, timeout: float = RUN_TIMEOUT
) -> None:
    """The guest on ``machine`` makes progress: prints 'B' and counts on.

    :raise CheckFailure: no new 'B', or the first counter never changes,
        within ``timeout`` seconds each.
    """
    start = profile.test_range[0]
    printed = len(machine.console_text())
    first = machine.read_memory(start, 1)
    try:
        wait_for(
            lambda: ("B" in machine.console_text()[printed:], machine.console_text()[-20:]),
            what=f"a new 'B' on the {machine.name} console",
            timeout=timeout,
        )
        wait_for(
            lambda: (machine.read_memory(start, 1) != first, first.hex()),
            what=f"the counter at 0x{start:x} on {machine.name} to change",
            timeout=timeout,
        )
    except WaitTimeout as exc:
        if exc.cut_short:
            raise  # the test ran out of time: no verdict on the guest
        raise CheckFailure(f"the guest does not run on {machine.name}: {exc}") from exc


def assert_statuses_after(side: Endpoint, mark: Status, forbidden: Collection[Status]) -> None:
    """Once at ``mark``, ``side`` never went through ``forbidden`` and completed."""
    try:
        check_statuses_after(side.status_history(), mark, forbidden)
    except CheckFailure as exc:
        raise CheckFailure(f"{side.name}: {exc}") from None


def assert_command_fails(
    machine: QEMUMachine, message: str, command: str, **arguments: Any
) -> QMPError:
    """``command`` must fail on ``machine`` with an error containing ``message``."""
    try:
        machine.cmd(command, **arguments)
    except QMPError as exc:
        if message not in exc.desc:
            raise CheckFailure(f"'{command}' failed with {exc.desc!r}, not {message!r}") from exc
        return exc
    raise CheckFailure(f"'{command}' {arguments} succeeded on {machine.name}; expected: {message}")


def verify_migration(pair: MigrationPair) -> None:
    """Everything that must hold after a successful migration.

    - If the destination is still paused, its vCPUs show the source's
      state, and its RAM equals the source's (unless both map the same
      RAM: that would compare it with itself).
    - The destination's test range obeys the guest contract.
    - Resumed, the destination guest runs.
    - Stopped again, its memory still obeys the contract: a guest resumed
      with a wrong vCPU state (where it was in its pass) breaks the pattern.
    - If the destination ran before it could be compared (postcopy), its
      RAM outside the test range is the stopped source's, byte for byte.
    """
    profile, dst = pair.profile, pair.dst.machine
    compared = is_paused(dst)
    if compared:
        assert_vcpus_identical(pair)
        if pair.shares_memory:
            assert_guest_memory(dst, profile)
        else:
            check_counter_pattern(assert_memory_identical(pair), profile.test_range[0])
        pair.dst.cont()
        dst.wait_event("RESUME", timeout=RUN_TIMEOUT)
    else:
        _log.debug("destination already runs: only RAM outside the test range is compared")
    assert_guest_runs(dst, profile)
    pair.dst.stop()
    assert_guest_memory(dst, profile)
    if not compared and not pair.shares_memory:
        assert_ram_outside_test_range_identical(pair)


def assert_run_state(side: Endpoint, state: str, why: str) -> None:
    """``side``'s guest is in run state ``state`` (``query-status``).

    :param why: what QEMU promises, for the message.
    """
    actual = side.run_state()
    if actual != state:
        raise CheckFailure(f"{side.name}: run state {actual!r}, not {state!r}: {why}")


def assert_never_resumed(side: Endpoint) -> None:
    """``side``'s guest, started paused, is paused and never ran (no RESUME event).

    :raise CheckFailure: it runs, or ran: its RAM and vCPUs can no longer
        be compared with the source's.
    """
    resumed = side.machine.events("RESUME")
    assert_run_state(side, "paused", "started paused, it was never told to run")
    if resumed:
        raise CheckFailure(f"{side.name}: started paused, it resumed {len(resumed)} time(s)")


def assert_woken_guest_runs(side: Endpoint, profile: ArchProfile) -> None:
    """Woken (``system_wakeup``), the suspended guest on ``side`` counts on.

    It counts on from where it stopped: it resumes, where a boot would
    print 'A' again and zero its range.  Stopped again, its range still
    obeys the guest contract.

    :raise CheckFailure: it does not run, or booted again.
    """
    machine = side.machine
    printed = len(machine.console_text())
    side.wakeup()
    assert_guest_runs(machine, profile)
    again = machine.console_text()[printed:]
    if "A" in again:
        raise CheckFailure(
            f"the guest on {side.name} booted again instead of resuming: "
            f"it printed {again[:40]!r} after system_wakeup"
        )
    side.stop()
    assert_guest_memory(machine, profile)


def verify_suspended_migration(pair: MigrationPair) -> None:
    """Everything that must hold after migrating a guest that suspended itself.

    - The destination is suspended: QEMU keeps a suspended guest suspended
      across a migration ("migration: preserve suspended runstate", 9.0).
    - Both sides stopped, the vCPUs show the same state, guest RAM is the
      same byte for byte, and the range obeys the guest contract.
    - Woken, the guest counts on where it stopped (no new boot).
    """
    assert_run_state(pair.dst, "suspended", "a guest migrated while suspended must stay suspended")
    assert_vcpus_identical(pair)
    check_counter_pattern(assert_memory_identical(pair), pair.profile.test_range[0])
    assert_woken_guest_runs(pair.dst, pair.profile)
