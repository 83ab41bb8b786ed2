"""The registry of known QEMU findings: it matches a failure, never a test.

The unit tests hold each finding against the words QEMU really printed
(copied from the runs README.rst reports) and against near misses; the
Avocado runs show, on real QEMU, each way a finding can end a test.
"""

from __future__ import annotations

import ast
import re
from dataclasses import replace
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import pytest
from test_strict import run_avocado

from migtest.errors import Unavailable
from migtest.findings import (
    FINDINGS,
    Finding,
    VersionRange,
    explain,
    not_reproduced,
    scope,
)
from migtest.versions import LABELS, binary_for

V7_2 = (7, 2, 22)
V10_0_2 = (10, 0, 2)
V10_0_13 = (10, 0, 13)
V11_1_2 = (11, 1, 2)
V11_1_3 = (11, 1, 3)

# What QEMU printed, word for word, in the runs behind README's findings.
SLB = "qemu-system-ppc64: error while loading state for instance 0x0 of device 'cpu'\n"
SLB += "qemu-system-ppc64: cpu/slb: incoming version_id 2 is too new for local version_id 1"
ICP = "qemu-system-ppc64: Unknown savevm section or instance 'icp/server' 0. Make sure ..."
RV_CPU_OLD = (
    "qemu-system-riscv64: cpu: incoming version_id 5 is too old for local minimum version_id  10"
)
RV_CPU_NEW = "qemu-system-riscv64: savevm: unsupported version 12 for 'cpu' v10"
RV_CPU_POSTCOPY = (
    "qemu-system-riscv64: loadvm failed during postcopy: -22: "
    "Failed to load vmstate version_id: 4, ret: -22"
)
LA_SIGFPE = "  src (QEMU 7.2.22, /usr/bin/qemu-system-loongarch64): exited with -8; statuses []"
LA_SIGFPE_LOST = "src: connection lost during 'query-migrate': ExecInterruptedError('Disconnected')"
RV_ACPI = 'qemu-system-riscv64: Unknown ramblock "/rom@etc/acpi/tables", cannot accept migration'
CPREG_LEN = (
    "qemu-system-aarch64: Invalid value 275 expecting positive value <= 258\n"
    "qemu-system-aarch64: Failed to load cpu:cpreg_vmstate_array_len"
)
CPREG_EPERM_POSTCOPY = (
    "qemu-system-aarch64: error while loading state for instance 0x0 of device 'cpu'\n"
    "qemu-system-aarch64: postcopy_ram_listen_thread: loadvm failed: -1\n"
    "qemu-system-aarch64: load of migration failed: Operation not permitted"
)
CPREG_EPERM_POSTCOPY_RAM = (
    "qemu-system-aarch64: error while loading state for instance 0x0 of device 'cpu'\n"
    "qemu-system-aarch64: error while loading state section id 2(ram)\n"
    "qemu-system-aarch64: postcopy_ram_listen_thread: loadvm failed: -1\n"
    "qemu-system-aarch64: load of migration failed: Operation not permitted"
)
CPREG_EPERM = (
    "qemu-system-aarch64: error while loading state for instance 0x0 of device 'cpu'\n"
    "qemu-system-aarch64: load of migration failed: Operation not permitted"
)
CPREG_UNKNOWN = (
    "qemu-system-aarch64: system register 0x1013c030 in the incoming stream but unknown "
    "on the destination"
)
ASSERTION = (
    "qemu-system-aarch64: ../../migration/vmstate.c:172: vmstate_load_state: "
    "Assertion `first_elem || !n_elems || !size' failed."
)

CANCEL_STUCK = (
    "timed out after 120 s waiting for migration status cancelled on src; last seen: "
    "{'expected-downtime': 1, 'status': 'cancelling', 'setup-time': 2, 'total-time': 120024}"
)
ZLIB_LEVEL = (
    "src: parameters set to {'multifd-zlib-level': 2} but read back {'multifd-zlib-level': 1}"
)
# The HMP round trip (tests/migration/interface.py) on 7.2.22, word for word.
HMP_ZSTD_LEVEL = "multifd-zstd-level: set to 5, query-migrate-parameters reads 1"
# What our checks said of QEMU's answers, word for word, in those runs.
CANCEL_ACCEPTED = (
    "migrate_cancel was accepted in postcopy-active: source now cancelled, run state "
    "postmigrate; destination postcopy-paused"
)
DST_SEGV = (
    "  dst (QEMU 7.2.22, /usr/bin/qemu-system-x86_64): exited with -11; statuses ['setup', "
    "'active', 'postcopy-active', 'postcopy-paused', 'setup', 'postcopy-recover']; printed: "
    "qemu-system-x86_64: Detected IO failure for postcopy. Migration paused."
)
SRC_STUCK = (
    "not both in postcopy-paused: timed out after 120 s waiting for both sides in "
    "postcopy-paused; last seen: {'src': 'postcopy-recover', 'dst': 'postcopy-paused'}"
)
PEEK = (
    "  dst (QEMU 11.1.3, /x/qemu-system-x86_64): exited with 1; statuses ['setup', 'active', "
    "'postcopy-device', 'postcopy-active', 'postcopy-paused', 'failed']; printed: "
    "qemu-system-x86_64: Detected IO failure for postcopy. Migration paused. | "
    "qemu-system-x86_64: Failed to peek at channel"
)


def finding(finding_id: str) -> Finding:
    (found,) = [f for f in FINDINGS if f.id == finding_id]
    return found


@pytest.mark.parametrize(
    "spec, version, covered",
    [
        ("*", V7_2, True),
        ("10.0", V10_0_13, True),
        ("10.0", V11_1_2, False),
        ("10.0.2", V10_0_2, True),
        ("10.0.2", V10_0_13, False),
        (">=9.2", V10_0_2, True),
        (">=9.2", V7_2, False),
        ("<11.1", (11, 0, 9), True),
        ("<11.1", (11, 1, 0), False),
        ("<=10.0", (10, 0, 0), True),
        (">11", (11, 0, 1), True),
        (">11", (11, 0, 0), False),
        (">=9.2 <10.0.5", V10_0_2, True),
        (">=9.2 <10.0.5", V10_0_13, False),
        (">=9.2 <10.0.5", V7_2, False),
    ],
)
def test_version_ranges(spec: str, version: Tuple[int, ...], covered: bool) -> None:
    assert VersionRange(spec).covers(version) is covered


def test_a_bad_version_range_names_what_is_accepted() -> None:
    for bad in ("=>9.2", "", ">=9.2 x"):
        with pytest.raises(ValueError, match=rf"invalid QEMU version range '{bad}': accepted"):
            VersionRange(bad)


def test_a_scope_covers_a_version_migrating_to_itself_only_if_asked() -> None:
    anything = scope("x86_64 ppc64", "*", "*")
    assert anything.covers("ppc64", V7_2, V11_1_3)
    assert not anything.covers("ppc64", V11_1_3, V11_1_3)
    assert not anything.covers("s390x", V7_2, V11_1_3)
    assert scope("ppc64", "*", "*", across=False).covers("ppc64", V11_1_3, V11_1_3)


@pytest.mark.parametrize(
    "arch, src, dst, said, finding_id",
    [
        ("ppc64", V11_1_3, V7_2, SLB, "ppc64-slb-version"),
        ("ppc64", V10_0_13, V10_0_2, ICP, "ppc64-icp-server-10.0.2"),
        ("ppc64", V7_2, V10_0_2, ICP, "ppc64-icp-server-10.0.2"),
        ("aarch64", V11_1_3, V7_2, CPREG_LEN, "aarch64-cpregs"),
        ("aarch64", V7_2, V11_1_3, CPREG_UNKNOWN, "aarch64-cpregs"),
        ("aarch64", V7_2, V10_0_13, CPREG_EPERM, "aarch64-cpregs"),
        ("aarch64", V10_0_2, V10_0_13, CPREG_EPERM_POSTCOPY, "aarch64-cpregs"),
        ("aarch64", V7_2, V10_0_13, CPREG_EPERM_POSTCOPY_RAM, "aarch64-cpregs"),
        ("aarch64", V11_1_2, V10_0_13, ASSERTION, "aarch64-vmstate-assert"),
        ("s390x", V7_2, V7_2, ZLIB_LEVEL, "multifd-level-ignored"),
        ("x86_64", V11_1_3, V7_2, ZLIB_LEVEL.replace("src", "dst"), "multifd-level-ignored"),
        ("ppc64", V7_2, V7_2, HMP_ZSTD_LEVEL, "multifd-level-ignored"),
        ("x86_64", V7_2, V7_2, CANCEL_ACCEPTED, "postcopy-cancel-accepted"),
        ("s390x", V7_2, V7_2, CANCEL_STUCK, "multifd-cancel-stuck"),
        ("aarch64", V7_2, V10_0_13, CANCEL_ACCEPTED, "postcopy-cancel-accepted"),
        ("x86_64", V10_0_13, V7_2, DST_SEGV, "postcopy-recovery-dst-crash"),
        ("ppc64", V7_2, V7_2, DST_SEGV, "postcopy-recovery-dst-crash"),
        ("x86_64", V7_2, V10_0_13, SRC_STUCK, "postcopy-recovery-src-stuck"),
        ("s390x", V10_0_13, V11_1_3, PEEK, "silent-recovery-link-dst-exits"),
        ("x86_64", V11_1_2, V11_1_2, PEEK, "silent-recovery-link-dst-exits"),
        ("riscv64", V7_2, V10_0_13, RV_CPU_OLD, "riscv64-cpu-version"),
        ("riscv64", V11_1_3, V10_0_13, RV_CPU_NEW, "riscv64-cpu-version"),
        ("riscv64", V7_2, V11_1_3, RV_CPU_POSTCOPY, "riscv64-cpu-version"),
        ("riscv64", V10_0_13, V7_2, RV_ACPI, "riscv64-acpi-ramblock"),
        ("loongarch64", V7_2, V7_2, LA_SIGFPE, "loongarch64-ram-sigfpe"),
        ("loongarch64", V7_2, V7_2, LA_SIGFPE_LOST, "loongarch64-ram-sigfpe"),
    ],
)
def test_each_finding_explains_what_qemu_said(
    arch: str, src: Tuple[int, ...], dst: Tuple[int, ...], said: str, finding_id: str
) -> None:
    text = f"the migration failed: src: status failed\n{said}\nmore output"
    hit = explain(arch, src, dst, text)
    assert hit is not None and hit.finding.id == finding_id
    assert hit.line in said
    assert finding_id in str(hit) and hit.line in str(hit)


@pytest.mark.parametrize(
    "arch, src, dst, said",
    [
        # The same words elsewhere: another architecture, other versions.
        ("x86_64", V11_1_3, V7_2, SLB),
        ("ppc64", V7_2, V11_1_3, SLB),
        ("ppc64", V10_0_13, V10_0_13, ICP),
        ("ppc64", V10_0_2, V10_0_13, ICP),
        ("ppc64", (9, 2, 0), V10_0_2, ICP),
        ("aarch64", V11_1_2, V11_1_3, CPREG_UNKNOWN),
        ("aarch64", V7_2, V10_0_13, ASSERTION),
        ("x86_64", V10_0_13, V10_0_13, ZLIB_LEVEL),
        ("x86_64", V7_2, V7_2, HMP_ZSTD_LEVEL.replace("reads 1", "reads 10")),
        ("x86_64", V10_0_13, V10_0_13, HMP_ZSTD_LEVEL),
        ("x86_64", V10_0_13, V7_2, CANCEL_ACCEPTED),
        ("x86_64", V7_2, V10_0_13, DST_SEGV),
        ("x86_64", V10_0_13, V7_2, SRC_STUCK),
        ("x86_64", V11_1_3, V10_0_13, PEEK),
        ("s390x", V10_0_13, V10_0_13, CANCEL_STUCK),
        ("s390x", V7_2, V7_2, CANCEL_STUCK.replace("'cancelling'", "'active'")),
        # riscv64 within one release series, or the words on another arch.
        ("riscv64", V11_1_2, V11_1_3, RV_CPU_OLD),
        ("riscv64", V10_0_2, V10_0_13, RV_CPU_POSTCOPY),
        ("aarch64", V7_2, V10_0_13, RV_CPU_OLD),
        ("riscv64", V7_2, V10_0_13, RV_ACPI),
        # A source of 8.0 on, or another architecture's.
        ("loongarch64", V10_0_13, V7_2, LA_SIGFPE),
        ("x86_64", V7_2, V7_2, LA_SIGFPE_LOST),
        # A crash or an early close outside a postcopy recovery: not these.
        ("x86_64", V7_2, V7_2, DST_SEGV.replace("'postcopy-recover'", "'active'")),
        ("x86_64", V11_1_3, V11_1_3, "qemu-system-x86_64: Failed to peek at channel"),
        ("x86_64", V11_1_3, V11_1_3, PEEK.replace("'postcopy-paused', ", "")),
        # The source died, not the destination: not a destination's crash.
        ("x86_64", V7_2, V7_2, DST_SEGV.replace("dst (", "src (")),
        # In scope, but QEMU said something else: not this finding.
        ("ppc64", V11_1_3, V7_2, "Unable to write to socket: Broken pipe"),
        ("aarch64", V7_2, V11_1_3, "guest memory differs at 0x4000"),
        # QEMU's generic words, which a corrupted stream can produce too.
        ("aarch64", V7_2, V10_0_13, "Invalid value 275 expecting positive value <= 258"),
        ("aarch64", V7_2, V10_0_13, "load of migration failed: Operation not permitted"),
    ],
)
def test_nothing_else_is_explained(
    arch: str, src: Tuple[int, ...], dst: Tuple[int, ...], said: str
) -> None:
    assert explain(arch, src, dst, said) is None


def missed(
    arch: str,
    src: Tuple[int, ...],
    dst: Tuple[int, ...],
    test: str = "Precopy.test_unix",
    accel: str = "tcg",
    completed: bool = True,
    shown: Sequence[str] = (),
) -> List[str]:
    """The ids of the findings a test that passed there is flagged for."""
    misses = not_reproduced(test, accel, arch, src, dst, completed=completed, shown=shown)
    return [miss.finding.id for miss in misses]


def test_the_pairs_where_no_migration_can_complete() -> None:
    assert missed("ppc64", V11_1_2, V7_2) == ["ppc64-slb-version"]
    assert missed("aarch64", V11_1_3, V10_0_2) == ["aarch64-cpregs", "aarch64-vmstate-assert"]
    assert missed("aarch64", V11_1_2, V11_1_3) == []
    assert missed("x86_64", V7_2, V11_1_3) == []
    # A test in which no migration completed says nothing of them.
    assert missed("ppc64", V11_1_2, V7_2, completed=False) == []


def test_findings_have_unique_ids_and_say_where_they_are_told() -> None:
    ids = [f.id for f in FINDINGS]
    assert len(ids) == len(set(ids))
    readme = (Path(__file__).parent.parent / "README.rst").read_text()
    for f in FINDINGS:
        assert re.fullmatch(r"[a-z0-9.-]+", f.id), f.id
        assert f"``{f.id}``" in readme, f"README.rst does not tell finding {f.id}"


# -- which tests must hit a finding ----------------------------------------------------

TESTS = Path(__file__).parent.parent / "tests" / "migration"


def suite_test_ids(directory: Path = TESTS) -> Dict[str, List[str]]:
    """Each ``Class.method`` test of the suite, with the files that define it."""
    ids: Dict[str, List[str]] = {}
    for path in sorted(directory.glob("*.py")):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.ClassDef):
                for item in node.body:
                    if isinstance(item, ast.FunctionDef) and item.name.startswith("test"):
                        ids.setdefault(f"{node.name}.{item.name}", []).append(path.name)
    return ids


def unmatched(patterns: Sequence[str], ids: Sequence[str]) -> List[str]:
    """The patterns of ``reproduced_by`` that name no test in ``ids``."""
    return [p for p in patterns if not any(fnmatchcase(test, p) for test in ids)]


def test_every_test_a_finding_names_exists() -> None:
    ids = suite_test_ids()
    assert "Postcopy.test_recovery" in ids and "Colo.test_primary_failover" in ids
    named = [pattern for f in FINDINGS for pattern in f.reproduced_by]
    assert named, "no finding names a test"
    assert unmatched(named, list(ids)) == []
    # A test id names one test: no two files define the same class and method.
    assert {test: files for test, files in ids.items() if len(files) > 1} == {}


def test_a_test_named_wrongly_is_caught(tmp_path: Path) -> None:
    ids = list(suite_test_ids())
    assert unmatched(["Precopy.test_unix", "Precopy.test_unixx", "Nothing.*"], ids) == [
        "Precopy.test_unixx",
        "Nothing.*",
    ]
    (tmp_path / "a.py").write_text("class A:\n    def test_x(self): ...\n")
    (tmp_path / "b.py").write_text("class A:\n    def test_x(self): ...\n    def help(self): ...\n")
    assert suite_test_ids(tmp_path) == {"A.test_x": ["a.py", "b.py"]}


def test_each_finding_says_one_way_which_runs_must_hit_it() -> None:
    base = finding("postcopy-cancel-accepted")
    for bad in (
        {"reproduced_by": ()},
        {"every_migration": True},
        {"not_flagged": "a race"},
        {"reproduced_by": (), "every_migration": True, "not_flagged": "a race"},
    ):
        with pytest.raises(ValueError, match="finding postcopy-cancel-accepted: say which runs"):
            replace(base, **bad)
    assert replace(base, reproduced_by=(), not_flagged="a race").not_flagged == "a race"


def test_the_findings_no_test_hits_every_time_say_why() -> None:
    unflagged = {f.id: f.not_flagged for f in FINDINGS if f.not_flagged}
    assert sorted(unflagged) == [
        "colo-exit-reason-race",
        "multifd-cancel-stuck",
        "s390x-tcg-condition-code",
        "vcpu-dirty-limit-stalls-guest",
    ]
    assert "1 failover in 5" in unflagged["colo-exit-reason-race"]


def made_up(**fields: object) -> Finding:
    """A finding of x86_64 from QEMU 7.2 to 10.0, which Postcopy's tests hit every time."""
    defaults: Dict[str, object] = dict(
        id="made-up",
        title="made up",
        kind="QEMU bug",
        scopes=(scope("x86_64 s390x", "7.2", "10.0"),),
        shows=re.compile("never printed"),
        every_migration=False,
        reported="here",
        reproduced_by=("Postcopy.*", "Cancel.test_in_postcopy"),
    )
    return Finding(**{**defaults, **fields})  # type: ignore[arg-type]


def flagged(
    made: Finding,
    test: str = "Postcopy.test_recovery",
    accel: str = "tcg",
    arch: str = "x86_64",
    src: Tuple[int, ...] = V7_2,
    dst: Tuple[int, ...] = V10_0_13,
    shown: Sequence[str] = (),
    completed: bool = True,
) -> List[str]:
    misses = not_reproduced(
        test, accel, arch, src, dst, completed=completed, shown=shown, findings=[made]
    )
    return [str(miss) for miss in misses]


def test_a_test_that_must_hit_a_finding_and_passed_is_flagged() -> None:
    (warning,) = flagged(made_up())
    assert warning == (
        "known QEMU finding made-up did not reproduce: Postcopy.test_recovery, which hits it "
        "every time from QEMU 7.2.22 to 10.0.13 on x86_64 under tcg, passed; if QEMU fixed "
        "it, narrow its scope in lib/migtest/findings.py"
    )
    assert flagged(made_up(), test="Cancel.test_in_postcopy", arch="s390x", completed=False)
    assert flagged(made_up(reproduced_under=frozenset({"kvm"})), accel="kvm")


@pytest.mark.parametrize(
    "made, run",
    [
        # The finding showed (a check allowed it and noted it): it reproduced.
        (made_up(), {"shown": ["made-up"]}),
        # Another test, even one of a name alike.
        (made_up(), {"test": "Cancel.test_in_postcopy_paused"}),
        (made_up(), {"test": "PostcopyPreempt.test_preempt"}),
        # Out of its scope: another architecture, either version, or a version with itself.
        (made_up(), {"arch": "ppc64"}),
        (made_up(), {"src": V11_1_3}),
        (made_up(), {"dst": V11_1_3}),
        (made_up(scopes=(scope("x86_64", "*", "*"),)), {"src": V7_2, "dst": V7_2}),
        # Under an accelerator its tests were not measured under.
        (made_up(reproduced_under=frozenset({"tcg"})), {"accel": "kvm"}),
        # A finding seen only at times names no test and is never flagged.
        (made_up(reproduced_by=(), not_flagged="a race"), {}),
        # One of every migration is flagged only if a migration completed.
        (made_up(reproduced_by=(), every_migration=True), {"completed": False}),
    ],
)
def test_a_pass_is_not_flagged_where_the_finding_need_not_show(
    made: Finding, run: Dict[str, object]
) -> None:
    assert flagged(made, **run) == []  # type: ignore[arg-type]


def test_every_migration_and_named_tests_are_flagged_the_same_way() -> None:
    (warning,) = flagged(made_up(reproduced_by=(), every_migration=True), test="Anything.test")
    assert warning.startswith("known QEMU finding made-up did not reproduce: a migration from ")
    assert warning.endswith("narrow its scope in lib/migtest/findings.py")


# -- on real QEMU ------------------------------------------------------------------


def installed(label: str, arch: str) -> str:
    try:
        return binary_for(label, arch)
    except Unavailable as exc:
        pytest.skip(str(exc))


def test_a_real_finding_ends_the_test_in_cancel_even_in_strict_mode(tmp_path: Path) -> None:
    """ppc64 from the newest QEMU to 7.2: QEMU's cpu/slb bug, named."""
    oldest, newest = LABELS[0], LABELS[-1]
    installed(oldest, "ppc64"), installed(newest, "ppc64")
    result = run_avocado(
        tmp_path, "tests/migration/precopy.py:Precopy.test_unix",
        "-p", "arch=ppc64", "-p", "accel=tcg",
        "-p", f"qemu_version_src={newest}", "-p", f"qemu_version_dst={oldest}", strict=True,
    )  # fmt: skip
    (test,) = result["tests"]
    assert test["status"] == "CANCEL", test["fail_reason"]
    assert "known QEMU finding ppc64-slb-version (QEMU bug)" in test["fail_reason"]
    assert "is too new for local version_id" in test["fail_reason"]
    assert re.search(r"; QEMU 11\.1\.\d+ -> 7\.2\.\d+, ppc64$", test["fail_reason"])
    assert result["exit_code"] == 0


def test_made_up_findings_pass_flag_cancel_or_fail(tmp_path: Path) -> None:
    oldest, newest = LABELS[0], LABELS[-1]
    installed(oldest, "x86_64"), installed(newest, "x86_64")
    result = run_avocado(
        tmp_path, "selftests/avocado/made_up_findings.py",
        "-p", "arch=x86_64", "-p", "accel=tcg",
        "-p", f"qemu_version_src={oldest}", "-p", f"qemu_version_dst={newest}", strict=True,
    )  # fmt: skip
    tests = {t["name"].split(".")[-1]: t for t in result["tests"]}
    completes = tests["test_completes"]
    assert completes["status"] == "WARN"
    log = Path(completes["logfile"]).read_text()
    assert "known QEMU finding made-up-never-completes did not reproduce" in log
    # Named as a test that hits it every time here: flagged the same way.
    assert re.search(
        r"WARNI?N?G?\s*\| known QEMU finding made-up-named-test did not reproduce: "
        r"MadeUpFindings\.test_completes, which hits it every time from QEMU 7\.2\.\d+ to "
        r"11\.1\.\d+ on x86_64 under tcg, passed",
        log,
    ), log
    # Another architecture's, another accelerator's, another test's: not flagged.
    for other in ("made-up-other-arch", "made-up-under-kvm", "made-up-other-test"):
        assert other not in log
    killed = tests["test_destination_killed"]
    assert killed["status"] == "CANCEL", killed["fail_reason"]
    assert "known QEMU finding made-up-killed-destination" in killed["fail_reason"]
    assert "did not reproduce" not in Path(killed["logfile"]).read_text()
    unexplained = tests["test_unexplained_failure"]
    assert unexplained["status"] == "FAIL"
    assert unexplained["fail_reason"] == "a failure no finding explains"
    assert "did not reproduce" not in Path(unexplained["logfile"]).read_text()


def test_a_finding_explains_a_check_only_if_it_explains_every_problem() -> None:
    """One known problem must not hide a new one listed next to it."""
    from migtest.errors import CheckFailure
    from migtest.test import explain_all

    known = "multifd-zlib-level: set to 5, query-migrate-parameters reads 1"
    new = "downtime-limit: set to 250, query-migrate-parameters reads 300"
    where = ("x86_64", (7, 2, 22), (7, 2, 22))
    alone = explain_all(where, CheckFailure(known, [known]), ["", ""])
    assert alone is not None and alone.finding.id == "multifd-level-ignored"
    both = CheckFailure(f"{known}\n{new}", [known, new])
    assert explain_all(where, both, ["", ""]) is None
    # The same text without its problems listed is weighed whole, as before.
    assert explain_all(where, CheckFailure(f"{known}\n{new}"), ["", ""]) is not None
    # Out of the finding's scope (9.0 on), even the known problem is a failure.
    assert (
        explain_all(("x86_64", (10, 0, 13), (10, 0, 13)), CheckFailure(known, [known]), []) is None
    )


# The dirty-ring stall on this host's KVM (tests/migration/dirty.py), word for word from a
# strict run on 11.1.3: the tests' account, then the source's trace of its harvests.
RING_STALL_WAIT = (
    "the guest does not run on src: timed out after 30 s waiting for a new 'B' on the src "
    "console; last seen: 'AB'; the source's largest harvest of its 4096-entry dirty ring: "
    "4096 entries"
)
RING_STALL_LIMIT = f"after cancel-vcpu-dirty-limit, {RING_STALL_WAIT}"
RING_STALL_EARLY = "src: migration reached 'pre-switchover' before the dirty limit to throttle"
RING_STALL_MIGRATION = f"{RING_STALL_EARLY}; after migrate_cancel, {RING_STALL_WAIT}"
RING_WHOLE = "kvm_dirty_ring_reap reaped 4096 pages (took 119 us)"


def ring_stall(failure: str, src_output: str) -> str:
    """A failure and both sides' output, as MigrationTest weighs them."""
    return "\n".join(
        [failure, f"{src_output}\nkvm_dirty_ring_reap reaped 43 pages (took 10 us)", ""]
    )


@pytest.mark.parametrize("version", [V7_2, V10_0_13, V11_1_3])
@pytest.mark.parametrize("failure", [RING_STALL_LIMIT, RING_STALL_MIGRATION])
def test_the_dirty_ring_stall_is_explained_by_the_guest_and_the_whole_ring(
    failure: str, version: Tuple[int, ...]
) -> None:
    hit = explain("x86_64", version, version, ring_stall(failure, RING_WHOLE))
    assert hit is not None and hit.finding.id == "vcpu-dirty-limit-stalls-guest"
    assert hit.line == failure
    assert hit.finding.kind == "KVM bug"


@pytest.mark.parametrize(
    "arch, failure, src_output",
    [
        # The guest stalled, but QEMU never harvested a whole ring: not this KVM's overfill.
        ("x86_64", RING_STALL_LIMIT, ""),
        ("x86_64", RING_STALL_LIMIT, "kvm_dirty_ring_reap reaped 4032 pages (took 90 us)"),
        ("x86_64", RING_STALL_MIGRATION, "kvm_dirty_ring_reap reaped 14096 pages (took 90 us)"),
        ("x86_64", RING_STALL_MIGRATION, "kvm_dirty_ring_reap reaped 40960 pages (took 9 us)"),
        # A whole ring harvested, but the guest ran on: the early switchover stays a failure.
        ("x86_64", RING_STALL_EARLY, RING_WHOLE),
        # QEMU's measured rates alone, as the test once judged: not the guest's own account.
        (
            "x86_64",
            "dirty rates [0, 0, 0] MB/s stayed at most 1 MB/s after the limit was cancelled",
            RING_WHOLE,
        ),
        # A wait cut short by the test's timeout is no verdict on the guest.
        (
            "x86_64",
            RING_STALL_LIMIT.replace("30 s waiting", "7 s (cut short: the test's timeout) waiting"),
            RING_WHOLE,
        ),
        # Printing 'B' but not counting, the destination's guest, another cause of the wait.
        (
            "x86_64",
            RING_STALL_LIMIT.replace("a new 'B' on the src console", "the counter at 0x100000"),
            RING_WHOLE,
        ),
        ("x86_64", RING_STALL_LIMIT.replace("on src", "on dst"), RING_WHOLE),
        (
            "x86_64",
            RING_STALL_LIMIT.replace("after cancel-vcpu", "after a cancel-vcpu"),
            RING_WHOLE,
        ),
        # The same words on another architecture.
        ("aarch64", RING_STALL_LIMIT, RING_WHOLE),
    ],
)
def test_the_dirty_ring_stall_is_not_its_near_misses(
    arch: str, failure: str, src_output: str
) -> None:
    assert explain(arch, V10_0_13, V10_0_13, ring_stall(failure, src_output)) is None
