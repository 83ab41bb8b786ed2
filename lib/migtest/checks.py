"""Pure checks of guest memory dumps against the guest contract.

The guest (see ``guests/README``) keeps one counter byte at the start of
every 4 KiB page of its test range, incremented in ascending page order, and
never writes anything else there.  A snapshot therefore shows all counters
equal but for one step down by one (mod 256) where the guest was, and zeros
everywhere else.  These functions take bytes and addresses, touch no QEMU,
and raise :class:`~migtest.errors.CheckFailure` naming the first wrong
addresses with what was expected and what was found.
"""

from __future__ import annotations

import re
from typing import (
    Any,
    Collection,
    Dict,
    Iterator,
    List,
    Literal,
    Mapping,
    Optional,
    Sequence,
    Tuple,
    Union,
)

from .errors import CheckFailure
from .status import Status

PAGE_SIZE = 4096

#: A memory dump: bytes, or a view of a mapped dump (not copied into Python).
Dump = Union[bytes, bytearray, memoryview]

#: Pages checked at once for stray bytes: 256 KiB, a size most L2 caches hold.
CHUNK_PAGES = 64

#: Page data a migration of shared RAM may send: the firmware and ROMs the
#: machines keep in RAM of their own (200 KiB on x86_64 at most, measured).
SHARED_RAM_SENT_LIMIT = 1 << 20

#: How many wrong places a failure message lists at most.
MAX_REPORTED = 8

_NONZERO = re.compile(rb"[^\x00]")


def _describe(mismatches: List[Tuple[int, int, int]], total: str) -> str:
    lines = [
        f"  0x{addr:x}: expected 0x{want:02x}, found 0x{got:02x}" for addr, want, got in mismatches
    ]
    return "\n".join([*lines, f"  ({total})"])


def same_bytes(a: Dump, b: Dump) -> bool:
    """Whether two dumps hold the same bytes, at memory speed.

    Views compare item by item, which for single bytes is 20 times slower
    than ``bytes`` (a memcmp); as 8-byte items they come within a few times
    of it without copying anything.
    """
    if len(a) != len(b):
        return False
    if len(a) % 8:
        return bytes(a) == bytes(b)
    return memoryview(a).cast("Q") == memoryview(b).cast("Q")


def check_counter_pattern(dump: Dump, base: int) -> None:
    """Check a dump of the test range against the guest contract.

    :param dump: the test range, starting at a page boundary.
    :param base: the guest physical address of ``dump[0]``, for messages.
    :raise CheckFailure: a stray non-zero byte, a counter out of sequence,
        more than one step, or a range that is all zeros (the guest never
        ran, or its memory was lost).  All zeros is also what a guest shows
        stopped exactly between two passes after 256*k passes: a chance of
        about one in six million per dump, taken for a clearer verdict on
        lost memory.
    """
    if len(dump) % PAGE_SIZE or not dump:
        raise CheckFailure(f"dump of {len(dump)} bytes is not a whole number of pages")
    counters = bytes(memoryview(dump)[::PAGE_SIZE])
    _check_only_counters_written(dump, counters, base)
    if not any(counters):
        raise CheckFailure(
            f"every counter byte in [0x{base:x}, 0x{base + len(dump):x}) is zero: "
            "the guest never ran there, or its memory was lost"
        )
    bad: List[Tuple[int, int, int]] = []
    steps = 0
    for page in range(1, len(counters)):
        previous, current = counters[page - 1], counters[page]
        if current == previous:
            continue
        if current == (previous - 1) % 256 and steps == 0:
            steps = 1
            continue
        # The expected value: no further step once one was taken.
        bad.append((base + page * PAGE_SIZE, previous, current))
        if len(bad) >= MAX_REPORTED:
            break
    if bad:
        raise CheckFailure(
            "guest counters are out of sequence (each page's counter must equal the "
            "previous page's, but for one step down by 1):\n"
            + _describe(bad, f"first {len(bad)} shown")
        )


def _check_only_counters_written(dump: Dump, counters: bytes, base: int) -> None:
    """Everything but the counter bytes must still be zero.

    Compared a chunk at a time against an image of what the chunk must
    hold: one small buffer, reused while it stays in the CPU's cache, is
    several times faster than an image of the whole dump.
    """
    view = memoryview(dump)
    image = bytearray(CHUNK_PAGES * PAGE_SIZE)
    for start in range(0, len(view), len(image)):
        chunk = view[start : start + len(image)]
        if len(chunk) < len(image):
            image = bytearray(len(chunk))
        first = start // PAGE_SIZE
        image[::PAGE_SIZE] = counters[first : first + len(chunk) // PAGE_SIZE]
        if not same_bytes(image, chunk):
            break
    else:
        return
    rest = bytearray(dump)
    rest[::PAGE_SIZE] = bytes(len(counters))
    bad: List[Tuple[int, int, int]] = []
    for match in _NONZERO.finditer(rest):
        offset = match.start()
        bad.append((base + offset, 0, rest[offset]))
        if len(bad) >= MAX_REPORTED:
            break
    if bad:
        raise CheckFailure(
            "bytes the guest never writes are not zero (page data was corrupted):\n"
            + _describe(bad, f"first {len(bad)} shown")
        )


def compare_memory(expected: Dump, found: Dump, base: int, what: str) -> None:
    """Check two dumps of the same guest memory are identical, byte for byte.

    :param what: what the two dumps are, e.g. ``source and destination RAM``.
    :raise CheckFailure: naming the first differing addresses.
    """
    if len(expected) != len(found):
        raise CheckFailure(f"{what}: dumps differ in size ({len(expected)} vs {len(found)} bytes)")
    if same_bytes(expected, found):
        return
    bad: List[Tuple[int, int, int]] = []
    differing_pages = 0
    for page in _differing_pages(memoryview(expected), memoryview(found)):
        differing_pages += 1
        if len(bad) < MAX_REPORTED:
            want, got = expected[page : page + PAGE_SIZE], found[page : page + PAGE_SIZE]
            bad += [(base + page + i, a, b) for i, (a, b) in enumerate(zip(want, got)) if a != b]
    bad = bad[:MAX_REPORTED]
    raise CheckFailure(
        f"{what} differ:\n"
        + _describe(bad, f"first {len(bad)} shown; {differing_pages} pages differ")
    )


def ranges_around(
    ranges: Sequence[Tuple[int, int]], hole: Tuple[int, int]
) -> List[Tuple[int, int]]:
    """The parts of ``ranges`` (``[start, end)`` each) outside ``hole``, in order."""
    parts = []
    for start, end in ranges:
        parts += [(start, min(end, hole[0])), (max(start, hole[1]), end)]
    return [(start, end) for start, end in parts if start < end]


def _differing_pages(a: memoryview, b: memoryview) -> Iterator[int]:
    """The offsets of the pages where ``a`` and ``b`` differ.

    A corrupted migration can leave thousands: chunks are compared first,
    and only the pages of differing chunks one by one.
    """
    step = CHUNK_PAGES * PAGE_SIZE
    for chunk in range(0, len(a), step):
        if same_bytes(a[chunk : chunk + step], b[chunk : chunk + step]):
            continue
        for page in range(chunk, min(chunk + step, len(a)), PAGE_SIZE):
            if not same_bytes(a[page : page + PAGE_SIZE], b[page : page + PAGE_SIZE]):
                yield page


def check_statuses_after(
    history: Sequence[str],
    mark: Status,
    forbidden: Collection[Status],
    final: Status = "completed",
) -> None:
    """Check the statuses a migration went through once it reached ``mark``.

    :param history: the statuses in order, as MIGRATION events announced them.
    :param forbidden: statuses that must not come between ``mark`` and the end.
    :param final: the status the migration must end in, and only end in.
    :raise CheckFailure: ``mark`` never came, a forbidden status (or
        ``final``) came after it before the end, or the end is not ``final``.
    """
    if mark not in history:
        raise CheckFailure(f"the migration never reached '{mark}': {list(history)}")
    after = list(history[history.index(mark) :])
    wrong = [status for status in after[:-1] if status in {*forbidden, final}]
    if wrong or after[-1] != final:
        raise CheckFailure(
            f"after '{mark}' the migration must not pass through "
            f"{', '.join(sorted({*forbidden, final}))} before ending '{final}', "
            f"but went {' -> '.join(after)}"
        )


def check_switchover_budget(info: Mapping[str, Any], parameters: Mapping[str, Any]) -> None:
    """Check QEMU began the switchover only once what remained fit the downtime limit.

    QEMU's rule: switch over once the RAM left to send could go within
    ``downtime-limit`` milliseconds at the bandwidth it measured, the
    ``ram.mbps`` it reports (or ``avail-switchover-bandwidth``, when set).
    Read at ``pre-switchover``, the guest is stopped and nothing has been
    sent since that decision, so ``ram.remaining`` is what it decided on.

    :param info: ``query-migrate`` at ``pre-switchover``.
    :param parameters: ``query-migrate-parameters`` at the same time.
    :raise CheckFailure: more remained than the limit allows.
    """
    remaining = int(info["ram"]["remaining"])
    limit_ms = int(parameters["downtime-limit"])
    declared = int(parameters.get("avail-switchover-bandwidth", 0) or 0)
    bandwidth = f"{declared} B/s (avail-switchover-bandwidth)"
    bytes_per_ms = declared / 1000
    if not declared:
        mbps = float(info["ram"]["mbps"])
        bandwidth = f"{mbps:g} Mbit/s (measured)"
        bytes_per_ms = mbps * 1e6 / 8 / 1000
    threshold = bytes_per_ms * limit_ms
    # QEMU computes the threshold from the same figures, truncated to bytes.
    if remaining > threshold + 1:
        raise CheckFailure(
            f"the switchover began with {remaining} bytes of RAM left, more than the "
            f"{threshold:.0f} bytes that go in the {limit_ms} ms downtime limit at {bandwidth}"
        )


def check_shared_ram_not_sent(ram: Mapping[str, Any], shared_bytes: int) -> None:
    """Check that a migration with ``x-ignore-shared`` left the shared RAM out.

    Two figures of ``query-migrate``'s ``ram`` say so, in every QEMU
    version: ``total``, the RAM QEMU migrates, must not include the shared
    block; and ``normal-bytes``, the page data sent, must stay under 1 MiB:
    every page of the guest's test range holds a counter, so sending the
    shared RAM means sending ~99 MiB of non-zero pages.  ``transferred`` is
    no measure: from QEMU 8.1 on it counts every byte of the stream, device
    state included (4.3 MB for ppc64's hash page table), not just RAM.

    :param ram: the ``ram`` member of the source's final ``query-migrate``.
    :param shared_bytes: the size of the RAM both sides map.
    :raise CheckFailure: either figure shows the shared RAM was sent.
    """
    total, sent = int(ram["total"]), int(ram["normal-bytes"])
    if total >= shared_bytes:
        raise CheckFailure(
            f"QEMU migrates {total} bytes of RAM, the {shared_bytes} bytes of shared RAM "
            "included: x-ignore-shared did not leave it out"
        )
    if sent >= SHARED_RAM_SENT_LIMIT:
        raise CheckFailure(
            f"{sent} bytes of page data were sent (normal-bytes), not under "
            f"{SHARED_RAM_SENT_LIMIT}: the shared RAM was sent"
        )


def check_pushed_to_paused(ram: Mapping[str, Any]) -> None:
    """Check that a postcopy into a paused destination pushed pages and none was asked for.

    A destination whose guest never runs never faults on a missing page,
    so the source must report no page request (``postcopy-requests``),
    and pages sent after the switch to postcopy (``postcopy-bytes``): else
    the migration was no postcopy into a paused guest.

    :param ram: the ``ram`` member of the source's final ``query-migrate``.
    :raise CheckFailure: a page was requested, or none was pushed.
    """
    requests, pushed = int(ram["postcopy-requests"]), int(ram["postcopy-bytes"])
    if requests:
        raise CheckFailure(f"the paused destination asked for {requests} pages (postcopy-requests)")
    if not pushed:
        raise CheckFailure("no byte was sent in postcopy (postcopy-bytes 0)")


def check_throttle_steps(seen: Sequence[int], initial: int, increment: int, maximum: int) -> None:
    """Check auto-converge's throttle percentages, in the order they were seen.

    QEMU's rule: the first throttle is ``cpu-throttle-initial``; each later
    one adds ``cpu-throttle-increment``, capped at ``max-cpu-throttle``.
    Polling may miss a step, so a step of several increments passes, but
    every percentage must be on that grid, rising, and none above the cap.

    :raise CheckFailure: the first percentage is not ``initial``, or one is
        off the grid, falls, or passes ``maximum``.
    """
    grid = {min(initial + k * increment, maximum) for k in range(len(seen) + 100)}
    problems = []
    if not seen or seen[0] != initial:
        problems.append(f"the first is not cpu-throttle-initial ({initial})")
    problems += [f"{p} is above max-cpu-throttle ({maximum})" for p in seen if p > maximum]
    problems += [
        f"{p} is not initial + k * increment, nor the maximum" for p in seen if p not in grid
    ]
    problems += [f"{b} follows {a}: throttling fell" for a, b in zip(seen, seen[1:]) if b <= a]
    if problems:
        raise CheckFailure(f"throttle percentages {list(seen)}: " + "; ".join(problems))


def check_multifd_used(
    ram: Mapping[str, Any], carried: Literal["all", "compressed", "some"] = "all"
) -> None:
    """Check that multifd channels, not the main one, carried the pages.

    A migration that fell back to the main channel would pass every check
    of the guest, so the source's counters must say it: ``multifd-bytes``
    (what went over the multifd channels, packet headers included) is
    non-zero, and

    - ``all``: covers ``normal-bytes`` (the pages sent as data);
    - ``compressed``: is smaller than it: our guest's pages hold one
      counter byte each, which any compression shrinks;
    - ``some``: nothing more (postcopy sends its pages another way).

    :param ram: the ``ram`` member of the source's final ``query-migrate``.
    :raise CheckFailure: the counters show the pages went another way.
    """
    if carried not in ("all", "compressed", "some"):
        raise ValueError(f"carried must be all, compressed or some, not {carried!r}")
    multifd, pages = int(ram.get("multifd-bytes", 0)), int(ram["normal-bytes"])
    if multifd == 0:
        raise CheckFailure(f"no byte went over the multifd channels ({pages} bytes of pages sent)")
    if carried == "all" and multifd < pages:
        raise CheckFailure(
            f"only {multifd} bytes went over the multifd channels for {pages} bytes of pages: "
            "some were sent another way"
        )
    if carried == "compressed" and multifd >= pages:
        raise CheckFailure(
            f"{multifd} bytes went over the multifd channels for {pages} bytes of pages: "
            "they were not compressed"
        )


def check_zero_pages(ram: Mapping[str, Any], detected: bool) -> None:
    """Check whether zero pages were found as such (``duplicate``), as asked.

    Our guest leaves most of RAM outside its test range zero: with
    detection (``legacy`` or ``multifd``) those pages are counted as
    ``duplicate`` and not sent; with ``none`` they go as data, and none is
    counted.
    """
    zero = int(ram.get("duplicate", 0))
    if detected and zero == 0:
        raise CheckFailure("zero-page detection was on, but no zero page was found")
    if not detected and zero:
        raise CheckFailure(f"zero-page detection was off, but {zero} zero pages were found")


def check_dirty_limit_throttled(times: Sequence[int]) -> None:
    """Check the dirty limit throttled the guest during a migration that needed it.

    QEMU's rule (capability ``dirty-limit``): once the migration throttles,
    each vCPU is held to ``vcpu-dirty-limit``, and ``query-migrate``
    reports the time a vCPU is held per round
    (``dirty-limit-throttle-time-per-round``), above 0 while it is.

    :param times: the throttle times seen, in order.
    :raise CheckFailure: none was above 0.
    """
    if not any(t > 0 for t in times):
        raise CheckFailure(
            f"dirty-limit-throttle-time-per-round stayed 0 in {len(times)} readings: "
            "the dirty limit never throttled the guest"
        )


def check_dirty_limit_released(answers: Sequence[Sequence[Mapping[str, Any]]]) -> None:
    """Check the dirty limit let the guest go once its migration was cancelled.

    A cancelled migration reports no throttle time at all, so the word is
    ``query-vcpu-dirty-limit``'s: QEMU lifts a migration's limits when it
    is cancelled, and then no vCPU is listed.

    :param answers: its answers after the cancel, in order.
    :raise CheckFailure: the last still listed a limited vCPU (or none was read).
    """
    if not answers or answers[-1]:
        last = list(answers[-1]) if answers else "no answer"
        raise CheckFailure(
            f"query-vcpu-dirty-limit after the cancel: {last}: the guest is still limited"
        )


def check_vcpu_dirty_limits(limits: Sequence[Mapping[str, Any]], expected: int) -> None:
    """Check ``query-vcpu-dirty-limit`` reports ``expected`` MB/s for every vCPU.

    :raise CheckFailure: no vCPU is limited, or one has another limit.
    """
    wrong = [limit for limit in limits if limit.get("limit-rate") != expected]
    if not limits or wrong:
        raise CheckFailure(
            f"query-vcpu-dirty-limit: {list(limits)}; expected every vCPU at {expected} MB/s"
        )


def check_dirty_rates(rates: Sequence[int], limit: int, limited: bool) -> None:
    """Check the guest's measured dirty rates against a vCPU dirty limit.

    Each measurement is of one second; the limit takes a moment to hold
    and to let go, so the last measurement decides.

    :param rates: the rates measured, in MB/s, in order.
    :param limited: whether the limit is in force (the last rate must be
        at most ``limit``) or was cancelled (it must be above).
    :raise CheckFailure: it is not.
    """
    if not rates:
        raise CheckFailure("no dirty rate was measured")
    last = rates[-1]
    if limited and last > limit:
        raise CheckFailure(
            f"dirty rates {list(rates)} MB/s never came down to the {limit} MB/s limit"
        )
    if not limited and last <= limit:
        raise CheckFailure(
            f"dirty rates {list(rates)} MB/s stayed at most {limit} MB/s after the limit "
            "was cancelled"
        )


def parse_hmp_parameters(text: str) -> Dict[str, str]:
    """``info migrate_parameters`` as ``{name: value}``, units left on the value."""
    shown: Dict[str, str] = {}
    for line in text.splitlines():
        name, colon, value = line.partition(": ")
        if colon:
            shown[name.strip()] = value.strip()
    return shown


def hmp_shows(shown: str, value: Any) -> bool:
    """Whether HMP's text ``shown`` (``250 ms``, ``on``, ``'creds0'``) is ``value``."""
    if isinstance(value, bool):
        return shown == ("on" if value else "off")
    if isinstance(value, int):
        return shown.split(" ")[0] == str(value)
    if isinstance(value, list):
        return shown == " ".join(map(str, value))
    return shown.strip("'") == str(value)


def round_trip_problem(
    name: str, wanted: Any, said: str, queried: Any, shown: Optional[str]
) -> Optional[str]:
    """What went wrong setting parameter ``name`` through HMP, or ``None``.

    :param wanted: the value the HMP text stands for.
    :param said: what ``migrate_set_parameter`` printed (nothing, if it took it).
    :param queried: the value ``query-migrate-parameters`` reads back.
    :param shown: what ``info migrate_parameters`` shows; ``None`` when the
        parameter is one HMP does not show.
    """
    if said.strip():
        return f"{name}: HMP refused it: {said.strip()}"
    if queried != wanted:
        return f"{name}: set to {wanted!r}, query-migrate-parameters reads {queried!r}"
    if shown is not None and not hmp_shows(shown, wanted):
        return f"{name}: set to {wanted!r}, info migrate_parameters shows {shown!r}"
    return None


def check_accounted(known: Collection[str], *accounts: Collection[str]) -> None:
    """Check that every name in ``known`` is in one of ``accounts``.

    :raise CheckFailure: naming those that are in none: a new QEMU version's,
        which no test deals with yet.
    """
    missing = sorted(set(known).difference(*accounts))
    if missing:
        raise CheckFailure(f"not accounted for: {', '.join(missing)}")
