"""The COLO checks (lib/migtest/colo.py) and COLO findings, on made-up answers.

Each check must fail on what a broken COLO would report: these are its
bad inputs, next to the good ones QEMU 11.1.3 gave (measured).
"""

from __future__ import annotations

from typing import Any, Dict, List

import pytest

from migtest.colo import (
    REPLICATION_COMMANDS,
    ColoStatus,
    check_replicating,
    failover_problems,
    replication_missing,
)
from migtest.errors import CheckFailure
from migtest.findings import explain
from migtest.test import explain_all

REPLICATING = {"src": "colo", "dst": "colo"}
PRIMARY: ColoStatus = {"mode": "primary", "last-mode": "none", "reason": "none"}
SECONDARY: ColoStatus = {"mode": "secondary", "last-mode": "none", "reason": "none"}


def test_replicating_passes_on_both_sides_in_colo() -> None:
    check_replicating(REPLICATING, PRIMARY, SECONDARY)


@pytest.mark.parametrize(
    ("statuses", "primary", "secondary", "named"),
    [
        ({"src": "completed", "dst": "colo"}, PRIMARY, SECONDARY, "src: migration status"),
        ({"src": "colo", "dst": "active"}, PRIMARY, SECONDARY, "dst: migration status"),
        (REPLICATING, {**PRIMARY, "mode": "none"}, SECONDARY, "the primary"),
        (REPLICATING, PRIMARY, {**SECONDARY, "mode": "primary"}, "the secondary"),
        (REPLICATING, PRIMARY, {**SECONDARY, "reason": "processing"}, "the secondary"),
    ],
)
def test_replicating_fails_naming_the_difference(
    statuses: Dict[str, str], primary: ColoStatus, secondary: ColoStatus, named: str
) -> None:
    with pytest.raises(CheckFailure, match=named):
        check_replicating(statuses, primary, secondary)


def test_two_differences_are_two_problems() -> None:
    with pytest.raises(CheckFailure) as failure:
        check_replicating({"src": "failed", "dst": "colo"}, PRIMARY, {**SECONDARY, "mode": "none"})
    assert len(failure.value.problems) == 2


def after_failover(role: str) -> ColoStatus:
    return {"mode": "none", "last-mode": role, "reason": "request"}


@pytest.mark.parametrize("role", ["primary", "secondary"])
def test_failover_as_qemu_11_1_reports_it_has_no_problem(role: Any) -> None:
    exits = [{"mode": role, "reason": "request"}]
    assert failover_problems(role, after_failover(role), exits, "request") == []


def test_failover_after_the_peer_died_expects_its_error_exit() -> None:
    exits = [{"mode": "secondary", "reason": "error"}]
    assert failover_problems("secondary", after_failover("secondary"), exits, "error") == []
    assert failover_problems("secondary", after_failover("secondary"), exits, "request")


@pytest.mark.parametrize(
    ("status", "exits", "named"),
    [
        # Still in COLO: the failover did not happen.
        (
            {"mode": "primary", "last-mode": "none", "reason": "none"},
            [{"mode": "primary", "reason": "request"}],
            "query-colo-status",
        ),
        (after_failover("secondary"), [{"mode": "primary", "reason": "request"}], "last-mode"),
        (
            {**after_failover("primary"), "reason": "error"},
            [{"mode": "primary", "reason": "request"}],
            "query-colo-status",
        ),
        (after_failover("primary"), [], "0 COLO_EXIT events"),
        (
            after_failover("primary"),
            [{"mode": "primary", "reason": "request"}] * 2,
            "2 COLO_EXIT events",
        ),
        (after_failover("primary"), [{"mode": "secondary", "reason": "request"}], "for mode"),
        (after_failover("primary"), [{"mode": "primary", "reason": "error"}], "reason 'error'"),
    ],
)
def test_failover_problems_name_what_is_wrong(
    status: ColoStatus, exits: List[Dict[str, str]], named: str
) -> None:
    problems = failover_problems("primary", status, exits, "request")
    assert problems and named in " ".join(problems)


def test_replication_missing_names_the_commands_a_build_without_it_lacks() -> None:
    assert replication_missing({"migrate", *REPLICATION_COMMANDS}) == []
    assert replication_missing({"migrate", "query-colo-status"}) == ["x-colo-lost-heartbeat"]
    assert replication_missing({"migrate"}) == sorted(REPLICATION_COMMANDS)


# -- findings ----------------------------------------------------------------

#: What a 7.2.22 pair said (measured): the source's return-path thread
#: failed at the secondary's first COLO message.
RP_MISREAD_72 = """not both in colo: src: migration failed
  src (QEMU 7.2.22, /usr/bin/qemu-system-x86_64): status failed; statuses ['setup', \
'active', 'failed']; printed: qemu-system-x86_64: RP: Received invalid message 0x0000 length 0x0000
  dst (QEMU 7.2.22, /usr/bin/qemu-system-x86_64): status colo; statuses ['setup', 'active', \
'colo']; printed: qemu-system-x86_64: Can't receive COLO message: Input/output error"""
#: And a 10.0.13 pair (error-desc given, no "RP: ").
RP_MISREAD_10 = """not both in colo: src: migration failed
  src (QEMU 10.0.13, /q/bin/qemu-system-x86_64): status failed (Received invalid message \
0x0000 length 0x0000); statuses ['setup', 'active', 'device', 'failed']; printed: \
qemu-system-x86_64: Received invalid message 0x0000 length 0x0000
  dst (QEMU 10.0.13, /q/bin/qemu-system-x86_64): status colo; statuses ['setup', 'active', \
'colo']; printed: qemu-system-x86_64: Can't receive COLO message: Input/output error"""


def test_return_path_misread_is_known_before_11_1() -> None:
    hit = explain("x86_64", (7, 2, 22), (7, 2, 22), RP_MISREAD_72)
    assert hit is not None and hit.finding.id == "colo-return-path-reader"
    hit = explain("s390x", (10, 0, 13), (10, 0, 13), RP_MISREAD_10)
    assert hit is not None and hit.finding.id == "colo-return-path-reader"


def test_return_path_misread_is_not_excused_from_11_1_on() -> None:
    assert explain("x86_64", (11, 1, 3), (11, 1, 3), RP_MISREAD_10) is None


@pytest.mark.parametrize(
    "near_miss",
    [
        # The secondary never got to COLO: not the misread COLO message.
        RP_MISREAD_72.replace("status colo;", "status active;"),
        # Another message on the return path.
        RP_MISREAD_72.replace("0x0000 length 0x0000", "0x0005 length 0x0008"),
        # The destination failing, not the source.
        RP_MISREAD_72.replace("src (QEMU", "dst2 (QEMU"),
    ],
)
def test_return_path_misread_near_misses_stay_failures(near_miss: str) -> None:
    assert explain("x86_64", (7, 2, 22), (7, 2, 22), near_miss) is None


RACE = (
    "dst: COLO_EXIT reason 'error', not 'request', for the secondary's failover "
    "(query-colo-status: reason 'request')"
)


def test_exit_reason_race_is_known() -> None:
    hit = explain("aarch64", (11, 1, 3), (11, 1, 3), RACE)
    assert hit is not None and hit.finding.id == "colo-exit-reason-race"


@pytest.mark.parametrize(
    "near_miss",
    [
        # QEMU itself says the failover was no request: not the race.
        RACE.replace("reason 'request')", "reason 'error')"),
        RACE.replace("reason 'error', not", "reason 'none', not"),
        # After a dead peer, the exit must be an error; a request is wrong.
        "dst: COLO_EXIT reason 'request', not 'error', for the secondary's failover "
        "(query-colo-status: reason 'request')",
    ],
)
def test_exit_reason_race_near_misses_stay_failures(near_miss: str) -> None:
    assert explain("x86_64", (11, 1, 3), (11, 1, 3), near_miss) is None


def test_the_race_does_not_excuse_another_problem_beside_it() -> None:
    other = "dst: query-colo-status {'mode': 'secondary'} after the failover of the secondary"
    failure = CheckFailure("two problems", [RACE, other])
    where = ("x86_64", (11, 1, 3), (11, 1, 3))
    assert explain_all(where, failure, ["", ""]) is None
    assert explain_all(where, CheckFailure("one", [RACE]), ["", ""]) is not None


#: 10.0.13 -> 11.1.3 (measured): the secondary refuses the primary's ENABLE_COLO.
ENABLE_REFUSED = """not both in colo: dst: connection lost during 'query-migrate'
  src (QEMU 10.0.13, /q/qemu-system-x86_64): status failed (Sibling indicated error 1); \
statuses ['setup', 'active', 'failed']; printed: qemu-system-x86_64: Sibling indicated error 1
  dst (QEMU 11.1.3, /q/qemu-system-x86_64): exited with 1; statuses ['setup', 'active', \
'failed']; printed: qemu-system-x86_64: load of migration failed: Invalid argument: MIG_CMD \
0x8 deprecated (len 0x0)"""
#: 11.1.3 -> 10.0.13 (measured): the old secondary completes a plain migration.
ENABLE_MISSED = """not both in colo: dst: migration completed
  src (QEMU 11.1.3, /q/qemu-system-x86_64): status colo; statuses ['setup', 'active', \
'device', 'colo']; printed: qemu-system-x86_64: Can't receive COLO message: Input/output error
  dst (QEMU 10.0.13, /q/qemu-system-x86_64): status completed; statuses ['setup', 'active', \
'completed']; printed: nothing"""


def test_colo_between_11_1_and_older_is_known_both_ways() -> None:
    hit = explain("x86_64", (10, 0, 13), (11, 1, 3), ENABLE_REFUSED)
    assert hit is not None and hit.finding.id == "colo-enable-command-dropped"
    hit = explain("ppc64", (11, 1, 3), (10, 0, 13), ENABLE_MISSED)
    assert hit is not None and hit.finding.id == "colo-enable-command-dropped"


def test_colo_enable_finding_needs_two_series() -> None:
    assert explain("x86_64", (11, 1, 3), (11, 1, 3), ENABLE_MISSED) is None
    assert explain("x86_64", (11, 1, 2), (11, 1, 3), ENABLE_MISSED) is None
    # Another way of not reaching colo is no excuse.
    other = ENABLE_MISSED.replace("dst: migration completed", "dst: migration failed")
    assert explain("x86_64", (11, 1, 3), (10, 0, 13), other) is None
