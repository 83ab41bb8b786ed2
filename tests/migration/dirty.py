"""Dirty page tracking with KVM's dirty ring: migrating with it, and
limiting the guest's dirty rate with it, in and out of a migration."""

import re
from pathlib import Path
from typing import Any, ClassVar, Dict, List, NoReturn, Tuple

from migtest.arch import DIRTY_RING
from migtest.checks import (
    check_dirty_limit_released,
    check_dirty_limit_throttled,
    check_dirty_rates,
    check_switchover_budget,
    check_vcpu_dirty_limits,
)
from migtest.errors import CheckFailure, MigtestError, WaitTimeout
from migtest.pair import MigrationPair
from migtest.qapi import MigrationParameters
from migtest.scenarios import live_precopy
from migtest.test import MigrationTest
from migtest.wait import wait_for

#: The dirty limit the tests set, in MB/s: the least QEMU takes, far below
#: what the test guest writes (170-370 MiB/s untracked under this host's
#: software KVM).
LIMIT = 1
#: Measurements of one second each, at most, for a limit to hold or let go.
MEASUREMENTS = 10
#: Seconds a cancelled migration's dirty limit may take to be lifted.
LIFT_TIMEOUT = 10.0
#: Syncs of RAM after which a dirty limit that never throttled never will:
#: the migration's throttling starts after two syncs found too much dirty.
SYNCS = 10
#: QEMU's trace of each harvest of the source's dirty rings, with the number
#: of entries taken ("kvm_dirty_ring_reap reaped N pages", on its stderr):
#: the evidence of finding ``vcpu-dirty-limit-stalls-guest``.  KVM stops a
#: vCPU at the ring's soft limit, 64 entries short of full (less PML's 512
#: more on Intel), so a harvest of the whole ring shows a KVM that overfilled it.
REAP_TRACE = ("-trace", "kvm_dirty_ring_reap")
#: A line of that trace, with the entries taken.
HARVEST = re.compile(r"\bkvm_dirty_ring_reap reaped (\d+) pages")


def largest_harvest(output: str) -> str:
    """The most entries QEMU's trace (:data:`REAP_TRACE`) shows it harvested at once, in words."""
    taken = [int(count) for count in HARVEST.findall(output)]
    return f"{max(taken)} entries" if taken else "none traced"


def start_ring_pair(test: MigrationTest) -> MigrationPair:
    """Both sides of ``test``'s pair on KVM with the dirty ring; the guest running.

    The source traces its harvests of the ring (:data:`REAP_TRACE`).

    :raise Unavailable: the run is not on KVM, or KVM lacks the dirty ring.
    """
    suite = test.suite.with_accel_options("kvm", DIRTY_RING, "the KVM dirty ring")
    test.pair = MigrationPair(suite, Path(test.workdir))
    test.pair.start(src_args=REAP_TRACE)
    for side in (test.pair.src, test.pair.dst):
        side.require_dirty_ring()
    return test.pair


def assert_runs_again(test: MigrationTest, after: str) -> None:
    """The source's guest runs once ``after`` has let it go: prints 'B' and counts on.

    A dirty limit may hold a guest back, but nothing may stop it for good.
    The failure names what let it go, then the guest's own account (no new
    'B' on its console, or its first counter the same when read again),
    then the most QEMU harvested of the ring at once: the whole ring is a
    KVM that overfilled it.

    :raise CheckFailure: the guest does not run.
    """
    source = test.pair.src.machine
    try:
        test.assert_guest_runs(source)
    except CheckFailure as stuck:
        size = dict(DIRTY_RING)["dirty-ring-size"]
        raise CheckFailure(
            f"after {after}, {stuck}; the source's largest harvest of its {size}-entry "
            f"dirty ring: {largest_harvest(source.output)}"
        ) from stuck


def converged_early(test: MigrationTest, early: MigtestError) -> NoReturn:
    """Fail a migration that reached ``pre-switchover`` before its dirty limit throttled.

    It converged because the guest dirtied too little to hold it back.  A
    guest that stopped outright (finding ``vcpu-dirty-limit-stalls-guest``)
    must run again once the migration is cancelled: if it does not, the
    failure says so, from the guest; if it does, the early switchover
    (``early``) is the failure, as it was.

    :raise CheckFailure: the guest does not run after the cancel.
    :raise MigtestError: ``early``, the guest running again.
    """
    test.pair.src.cancel()
    test.pair.src.wait_for_cancelled()
    try:
        assert_runs_again(test, "migrate_cancel")
    except CheckFailure as stuck:
        raise CheckFailure(f"{early}; {stuck}") from early
    raise early


class DirtyRing(MigrationTest):
    """KVM's dirty ring (``-accel kvm,dirty-ring-size=4096``).

    With the ring, KVM logs each vCPU's dirty pages in a ring instead of a
    bitmap; QEMU promises the same migration over it, and a dirty rate per
    vCPU (``calc-dirty-rate`` mode ``dirty-ring``), which it refuses
    without the ring.  A KVM without the ring (no
    ``KVM_CAP_DIRTY_LOG_RING``) makes QEMU warn and use the bitmap: a
    CANCEL naming it, as is TCG, which has no dirty ring.

    :avocado: enable
    :avocado: tags=migration,dirty,precopy,unix
    :avocado: tags=arch:x86_64
    """

    def measure_until(self, limited: bool) -> List[int]:
        """Measure the dirty rate until it is at most :data:`LIMIT` (above, if not ``limited``)."""
        rates: List[int] = []
        for _ in range(MEASUREMENTS):
            rates.append(int(self.pair.src.measure_dirty_rate("dirty-ring")["dirty-rate"]))
            if (rates[-1] <= LIMIT) == limited:
                break
        self.log.info("dirty rates (MB/s, %s): %s", "limited" if limited else "free", rates)
        return rates

    def test_live_precopy(self) -> None:
        """A live precopy that needs a second pass, tracked by the ring, delivers the guest."""
        pair = start_ring_pair(self)
        rate = pair.src.measure_dirty_rate("dirty-ring")
        self.assertGreater(rate["dirty-rate"], 0, f"the ring saw no dirty page: {rate}")
        live_precopy(pair, "unix")
        self.verify_migration()

    def test_vcpu_dirty_limit(self) -> None:
        """set-vcpu-dirty-limit holds the guest to the limit; cancel-vcpu-dirty-limit frees it."""
        pair = start_ring_pair(self)
        self.assertGreater(
            self.measure_until(limited=False)[-1], LIMIT, "the guest dirties nothing"
        )
        pair.src.set_vcpu_dirty_limit(LIMIT)
        check_vcpu_dirty_limits(pair.src.vcpu_dirty_limits(), LIMIT)
        check_dirty_rates(self.measure_until(limited=True), LIMIT, limited=True)
        pair.src.cancel_vcpu_dirty_limit()
        self.assertEqual(pair.src.vcpu_dirty_limits(), [], "limits left after the cancel")
        assert_runs_again(self, "cancel-vcpu-dirty-limit")
        check_dirty_rates(self.measure_until(limited=False), LIMIT, limited=False)


class DirtyLimit(MigrationTest):
    """The ``dirty-limit`` capability (QEMU 8.1 on): a migration throttles
    each vCPU to ``vcpu-dirty-limit`` MB/s with the dirty ring.

    QEMU promises: while it throttles, ``query-migrate`` reports a throttle
    time per round above 0 and ``query-vcpu-dirty-limit`` the limit; once
    the migration is cancelled, the throttle is lifted (time 0); and a
    switchover begins only when what remains fits the downtime limit.

    :avocado: enable
    :avocado: tags=migration,dirty,dirty-limit,precopy,unix
    :avocado: tags=arch:x86_64
    """

    #: Held back far below what the guest writes (170-370 MiB/s untracked
    #: here), so that the migration throttles.
    HOLD: ClassVar[MigrationParameters] = {"downtime-limit": 1, "max-bandwidth": 30_000_000}
    #: Limits the throttled guest meets: its few dirty pages fit 300 ms.
    FITTING: ClassVar[MigrationParameters] = {"downtime-limit": 300, "max-bandwidth": 100_000_000}

    def answers_after_cancel(self) -> List[List[Dict[str, Any]]]:
        """``query-vcpu-dirty-limit``'s answers after a cancel, until one lists no vCPU.

        Within a deadline; the check judges what was seen.
        """
        seen: List[List[Dict[str, Any]]] = []

        def check() -> Tuple[bool, List[List[Dict[str, Any]]]]:
            seen.append(list(self.pair.src.vcpu_dirty_limits()))
            return not seen[-1], seen

        try:
            wait_for(check, what="no vCPU dirty limit left (answers seen)", timeout=LIFT_TIMEOUT)
        except WaitTimeout as late:
            if late.cut_short:
                raise
        return seen

    def check_throttled(self) -> None:
        """Check the migration's dirty limit throttles the guest within :data:`SYNCS` syncs.

        :raise CheckFailure: it did not; or the migration reached
            ``pre-switchover`` first and the guest, the migration cancelled,
            does not run (:func:`converged_early`).
        :raise MigtestError: it reached ``pre-switchover`` first, the guest running.
        """
        try:
            check_dirty_limit_throttled(self.pair.src.watch_dirty_limit(SYNCS))
        except MigtestError as early:
            if isinstance(early, CheckFailure) or self.pair.src.info()["status"] != (
                "pre-switchover"
            ):
                raise
            converged_early(self, early)

    def test_dirty_limit(self) -> None:
        """Throttled while migrating, released by a cancel, then to a switchover that fits."""
        pair = start_ring_pair(self)
        pair.src.require_capabilities(["dirty-limit"])
        pair.src.set_capabilities({"dirty-limit": True, "pause-before-switchover": True})
        pair.src.set_parameters({"x-vcpu-dirty-limit-period": 1000, "vcpu-dirty-limit": LIMIT})
        pair.src.set_parameters(self.HOLD)
        pair.migrate("unix")
        self.check_throttled()
        pair.src.cancel()
        pair.src.wait_for_cancelled()
        check_dirty_limit_released(self.answers_after_cancel())
        pair.replace_destination()
        pair.migrate("unix")
        self.check_throttled()
        check_vcpu_dirty_limits(pair.src.vcpu_dirty_limits(), LIMIT)
        pair.src.set_parameters(self.FITTING)
        info = pair.src.wait_for_status("pre-switchover", fail_on=("failed", "completed"))
        check_switchover_budget(info, pair.src.parameters())
        pair.src.continue_switchover()
        pair.wait_for_completion()
        self.verify_migration()
