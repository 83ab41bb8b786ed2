"""COLO: a primary that checkpoints its guest into a running secondary, and a failover.

COLO (COarse-grain LOck-stepping, ``x-colo``) is a migration that never
ends: the source, the *primary*, migrates its guest once, then keeps
checkpointing it into the destination, the *secondary*, whose own copy of
the guest runs between checkpoints.  When one side is lost, the other is
told (``x-colo-lost-heartbeat``) and carries the guest on alone.

What QEMU promises (``qapi/migration.json``): the migration status is
``colo`` on both sides while they replicate; a failover ends COLO on the
side asked, which then reports its migration ``completed``; the event
``COLO_EXIT`` says which mode ended and why (``request``: asked by the
user; ``error``: an internal error, such as a lost link), and
``query-colo-status`` says the mode now (``none``), the mode before
(``last-mode``, 4.0 on) and the reason.

The configuration is QEMU's own COLO qtest's (``tests/qtest/migration/
colo-tests.c``, 2025): no disks and no network to replicate, so no block
replication or colo-compare objects; ``x-colo`` and ``return-path`` on
both sides (QEMU 11.x refuses ``x-colo`` without ``return-path``),
optionally ``multifd``; a checkpoint every 300 ms; a secondary started
like any destination (``-incoming defer``) but running, and both sides
with ``-snapshot``: both QEMUs run the guest at once, and each must write
to its own overlay of the x86 boot disk.

These helpers talk to QEMU through an :class:`~migtest.endpoint.Endpoint`'s
machine for the two COLO commands the endpoint does not have.
"""

from __future__ import annotations

from typing import Any, Collection, Dict, List, Literal, Mapping, Sequence, Tuple, TypedDict, cast

from .arch import ArchProfile
from .endpoint import STATUS_TIMEOUT, Endpoint
from .errors import CheckFailure, Unavailable, WaitTimeout
from .pair import MigrationPair
from .qapi import Capability
from .status import Status
from .verify import assert_guest_memory, assert_guest_runs
from .wait import wait_for

#: What both QEMUs run with: each writes to its own overlay of a disk image
#: (x86's boot disk), since both run the guest at once.  QEMU's COLO qtest
#: does the same; without it the secondary cannot take the image's write
#: lock when it activates its disks ("Failed to get "write" lock").
SNAPSHOT = ("-snapshot",)
#: Milliseconds between two checkpoints (``x-checkpoint-delay``), as QEMU's
#: own COLO test: a few checkpoints within a second or two of TCG.
CHECKPOINT_DELAY = 300
#: Checkpoints the secondary must load before a failover: QEMU's test waits
#: for three.
CHECKPOINTS = 3
#: Multifd channels of a COLO over multifd, as QEMU's tests use.
MULTIFD_CHANNELS = 4
#: The QMP commands that exist only where QEMU was built with replication
#: (``'if': 'CONFIG_REPLICATION'`` in qapi/migration.json).  The ``x-colo``
#: capability itself is listed either way: such a QEMU refuses it only
#: when it is set ("QEMU compiled without replication module").
REPLICATION_COMMANDS = ("x-colo-lost-heartbeat", "query-colo-status")
#: Statuses after which a COLO can no longer be replicating.
NOT_REPLICATING: Tuple[Status, ...] = ("failed", "cancelled", "completed")

Role = Literal["primary", "secondary"]

#: The answer to ``query-colo-status``.
ColoStatus = TypedDict("ColoStatus", {"mode": str, "last-mode": str, "reason": str}, total=False)


def require_colo(side: Endpoint) -> None:
    """:raise Unavailable: ``side``'s QEMU cannot run COLO.

    Not expected (a CANCEL even in strict mode): replication is a build
    option, which a distribution may leave out.
    """
    side.require_capabilities(["x-colo", "return-path"])
    missing = replication_missing(side.supported_commands())
    if missing:
        raise Unavailable(
            f"{side.describe()}: built without replication (CONFIG_REPLICATION), which COLO "
            f"needs: it lacks {', '.join(missing)}",
            expected=False,
        )


def replication_missing(commands: Collection[str]) -> List[str]:
    """The commands of :data:`REPLICATION_COMMANDS` that ``commands`` (a QEMU's) lack, sorted."""
    return sorted(set(REPLICATION_COMMANDS) - set(commands))


def colo_status(side: Endpoint) -> ColoStatus:
    """``side``'s ``query-colo-status``."""
    return cast(ColoStatus, side.machine.cmd("query-colo-status"))


def colo_exits(side: Endpoint) -> List[Dict[str, Any]]:
    """The data of every ``COLO_EXIT`` event ``side`` sent so far, oldest first."""
    return [dict(event.get("data", {})) for event in side.machine.events("COLO_EXIT")]


def start_colo(pair: MigrationPair, *, multifd: bool = False) -> None:
    """Make the pair's source a COLO primary of its destination, and wait until both replicate.

    The pair must have been started with a running destination and
    :data:`SNAPSHOT` on both sides.

    :raise Unavailable: either QEMU cannot run COLO (or multifd).
    :raise CheckFailure: the migration did not reach ``colo`` on both
        sides; the message quotes both.
    """
    for side in (pair.src, pair.dst):
        require_colo(side)
    capabilities: Dict[Capability, bool] = {"x-colo": True, "return-path": True}
    if multifd:
        capabilities["multifd"] = True
    pair.set_capabilities(capabilities)
    if multifd:
        pair.set_parameters({"multifd-channels": MULTIFD_CHANNELS})
    pair.src.set_parameters({"x-checkpoint-delay": CHECKPOINT_DELAY})
    pair.allow_convergence()
    pair.migrate("tcp")
    pair.wait_for_both("colo", fail_on=NOT_REPLICATING)


def wait_for_checkpoints(pair: MigrationPair, count: int = CHECKPOINTS) -> None:
    """Wait until the secondary has loaded ``count`` checkpoints after its first run.

    The secondary's guest starts running once the first migration is
    loaded (RESUME); each checkpoint stops it (STOP), loads the primary's
    state and runs it again (RESUME).

    :raise CheckFailure: either side left ``colo`` meanwhile, or a side's
        COLO state is not what replication means (see
        :func:`check_replicating`).
    """
    secondary = pair.dst.machine
    secondary.wait_event("RESUME", timeout=STATUS_TIMEOUT)
    for _ in range(count):
        secondary.wait_event("STOP", timeout=STATUS_TIMEOUT)
        secondary.wait_event("RESUME", timeout=STATUS_TIMEOUT)
    check_replicating(
        {side.name: side.info().get("status", "none") for side in (pair.src, pair.dst)},
        colo_status(pair.src),
        colo_status(pair.dst),
    )


def check_replicating(
    statuses: Mapping[str, str], primary: ColoStatus, secondary: ColoStatus
) -> None:
    """Both sides still replicate: migration status ``colo``, modes primary and secondary.

    :param statuses: each side's migration status, by side name.
    :raise CheckFailure: naming every difference.
    """
    problems = [
        f"{name}: migration status {status!r}, not 'colo' while replicating"
        for name, status in statuses.items()
        if status != "colo"
    ]
    for role, status in (("primary", primary), ("secondary", secondary)):
        if status.get("mode") != role or status.get("reason") != "none":
            problems.append(
                f"the {role}: query-colo-status {dict(status)}, not mode {role!r} "
                "with reason 'none' while replicating"
            )
    if problems:
        raise CheckFailure("COLO is not replicating: " + "; ".join(problems), problems)


def fail_over(side: Endpoint) -> None:
    """Tell ``side`` that its peer is lost (``x-colo-lost-heartbeat``) and wait for the failover.

    The side ends COLO: its migration ``completed``, a ``COLO_EXIT`` sent.

    :raise CheckFailure: its migration failed instead.
    :raise WaitTimeout: no ``completed`` or no ``COLO_EXIT`` in time.
    """
    side.machine.cmd("x-colo-lost-heartbeat")
    side.wait_for_status("completed", fail_on=("failed", "cancelled"))
    wait_for_colo_exit(side)


def wait_for_colo_exit(side: Endpoint, timeout: float = STATUS_TIMEOUT) -> Dict[str, Any]:
    """Wait until ``side`` has sent a ``COLO_EXIT``; the data of the first.

    :raise WaitTimeout: none within ``timeout``; the message shows its events.
    """

    def check() -> Tuple[bool, Any]:
        exits = colo_exits(side)
        if exits:
            return True, exits[0]
        return False, [event["event"] for event in side.machine.events()[-5:]]

    first: Dict[str, Any] = wait_for(
        check, what=f"a COLO_EXIT event on {side.name} (latest events shown)", timeout=timeout
    )
    return first


def wait_until_running(side: Endpoint, timeout: float = STATUS_TIMEOUT) -> None:
    """Wait until ``side``'s guest runs: the survivor of a failover resumes it.

    :raise CheckFailure: it did not within ``timeout`` (run state shown).
    """

    def check() -> Tuple[bool, str]:
        state = side.run_state()
        return state == "running", state

    try:
        wait_for(check, what=f"{side.name}'s guest to run (run state shown)", timeout=timeout)
    except WaitTimeout as late:
        if late.cut_short:
            raise  # the test ran out of time: no verdict on QEMU
        raise CheckFailure(
            f"{side.name}: the guest does not run after the failover: {late}"
        ) from late


def verify_survivor(side: Endpoint, role: Role, profile: ArchProfile, exit_reason: str) -> None:
    """Everything that must hold of the side that took over, after :func:`fail_over`.

    - ``query-colo-status``: mode ``none``, last mode ``role``, reason
      ``request``; one ``COLO_EXIT``, for mode ``role``, with
      ``exit_reason`` (see :func:`failover_problems`).
    - Its guest runs: prints and counts on; stopped, its counters obey
      the guest contract (a guest resumed from a torn checkpoint, or with
      a wrong vCPU state, breaks it).

    The guest is checked first: a difference in what QEMU reports (a
    known finding, maybe) must not keep the guest unchecked.

    :raise CheckFailure: each difference listed on its own.
    """
    problems = failover_problems(role, colo_status(side), colo_exits(side), exit_reason)
    wait_until_running(side)
    assert_guest_runs(side.machine, profile)
    side.stop()
    assert_guest_memory(side.machine, profile)
    if problems:
        raise CheckFailure(
            f"{side.describe()}: " + "; ".join(problems), [f"{side.name}: {p}" for p in problems]
        )


def failover_problems(
    role: Role,
    status: ColoStatus,
    exits: Sequence[Mapping[str, Any]],
    exit_reason: str,
) -> List[str]:
    """What is wrong with the survivor of a failover, in words; empty if nothing.

    :param role: what the survivor was: ``primary`` or ``secondary``.
    :param status: its ``query-colo-status`` after the failover.
    :param exits: the data of every ``COLO_EXIT`` it sent, oldest first.
    :param exit_reason: the reason its one ``COLO_EXIT`` must give:
        ``request`` when the failover ended a healthy COLO, ``error``
        when the peer had died and the link broke first.
    """
    problems: List[str] = []
    wanted = {"mode": "none", "last-mode": role, "reason": "request"}
    if dict(status) != wanted:
        problems.append(
            f"query-colo-status {dict(status)} after the failover of the {role}, not {wanted}"
        )
    if len(exits) != 1:
        problems.append(f"{len(exits)} COLO_EXIT events, not one: {list(exits)}")
    elif exits[0].get("mode") != role:
        problems.append(f"COLO_EXIT for mode {exits[0].get('mode')!r}, not {role!r}: {exits[0]}")
    elif exits[0].get("reason") != exit_reason:
        problems.append(
            f"COLO_EXIT reason {exits[0].get('reason')!r}, not {exit_reason!r}, for the "
            f"{role}'s failover (query-colo-status: reason {status.get('reason')!r})"
        )
    return problems
