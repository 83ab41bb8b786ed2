"""The vCPU state comparison: parsing real ``info registers -a`` output of every
architecture and version we run, the differences it lets pass (each with its
reason), and the ones it must fail on; then once against real QEMU."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Dict, Iterator, Set, Tuple

import pytest

from migtest.errors import CheckFailure
from migtest.pair import MigrationPair
from migtest.params import SuiteParams
from migtest.vcpu_state import (
    KNOWN_DIFFERENCES,
    Run,
    check_vcpu_states,
    layout_for,
    parse_registers,
)
from migtest.verify import (
    assert_guest_runs,
    assert_vcpus_as_snapshot,
    assert_vcpus_identical,
    snapshot_vcpus,
    verify_migration,
)

#: Dumps saved from real migrations, the source stopped and the destination
#: paused after a live precopy:
#: ``<arch>-<version>[-to-<version>]-<accel>[-smp2]-<src|dst>.txt``.
DATA = Path(__file__).parent / "data" / "vcpu"

VERSIONS: Dict[str, Tuple[int, ...]] = {
    "7.2": (7, 2, 22),
    "10.0.13": (10, 0, 13),
    "11.1.3": (11, 1, 3),
}

_STEM = re.compile(r"(?P<arch>[^-]+)-(?P<src>[\d.]+)(?:-to-(?P<dst>[\d.]+))?-(?P<accel>tcg|kvm)")

#: Every saved source/destination pair, by the common start of their names.
PAIRS = sorted(path.name[: -len("-src.txt")] for path in DATA.glob("*-src.txt"))


def run_of(stem: str, accel: str = "") -> Run:
    """The run a saved dump's name describes (under another ``accel`` if given)."""
    parts = _STEM.match(stem)
    assert parts, stem
    src = parts["src"]
    return Run(parts["arch"], accel or parts["accel"], VERSIONS[src], VERSIONS[parts["dst"] or src])


def read(stem: str, side: str) -> str:
    return (DATA / f"{stem}-{side}.txt").read_text()


# -- parsing ------------------------------------------------------------------

#: Registers each architecture's dump must yield, with their values in the
#: saved source dumps of QEMU 11.1.3 (x86_64: 7.2 two vCPUs).
EXPECTED = {
    "x86_64-7.2-tcg-smp2": {
        "EIP": ("00007c66",),
        "CS": ("0008", "00000000", "ffffffff", "00cf9a00"),
        "CS.DPL": ("0", "CS32", "[-R-]"),
        "XMM07": ("0000000000000000", "0000000000000000"),
        "FSW": ("0000", "[ST=0]"),
    },
    "aarch64-11.1.3-tcg": {
        "PC": ("000000004008007c",),
        "X30": ("0000000000000000",),
        "PSTATE": ("00000000800003c5", "N---", "EL1h", "FPU", "disabled"),
    },
    "s390x-11.1.3-tcg": {
        "PSW.mask": ("0000100180000000",),
        "PSW.addr": ("0000000007d00042",),
        "PSW.cc": ("CC_OP_LTUGTU_64",),
        "V31": ("00000000000000000000000000000000",),
        "C14": ("00000000c2000000",),
    },
    "ppc64-11.1.3-tcg": {
        "NIP": ("0000000007000028",),
        "XER": ("0000000000000000",),
        "GPR31": ("000000000000ff60",),
        "FPR05": ("0000000000000000",),
        "MSR": ("0000000000003000",),
        "iidx": ("3",),
        "RES": ("ffffffffffffffff",),
        "RES.length": ("000",),
        "LPCR": ("000000000003f008",),
    },
    "riscv64-11.1.3-tcg": {
        "priv": ("M",),
        "pc": ("0000000080000048",),
        "mstatus": ("0000000a00000000",),
        "x31/t6": ("0000000000000020",),
        "f31/ft11": ("0000000000000000",),
        "mcycle": ("00003d0668a8705a",),
    },
}


@pytest.mark.parametrize("stem", sorted(EXPECTED))
def test_registers_are_named_as_qemu_prints_them(stem: str) -> None:
    arch = stem.split("-")[0]
    source = parse_registers(read(stem, "src"), layout_for(arch))
    for name, values in EXPECTED[stem].items():
        assert source[0][name] == values, name


def test_every_vcpu_is_read() -> None:
    for stem in ("x86_64-7.2-tcg-smp2", "ppc64-10.0.13-tcg-smp2", "s390x-11.1.3-tcg-smp2"):
        arch = stem.split("-")[0]
        vcpus = parse_registers(read(stem, "src"), layout_for(arch))
        assert sorted(vcpus) == [0, 1], stem
        assert vcpus[0].keys() == vcpus[1].keys(), stem


def test_ppc64_rows_of_registers_are_numbered() -> None:
    registers = parse_registers(read("ppc64-7.2-tcg", "src"), layout_for("ppc64"))[0]
    assert [f"GPR{n:02d}" for n in range(32)] == [r for r in registers if r.startswith("GPR")]


def test_loongarch64_dump_is_read() -> None:
    """Its migration fails on 7.2 (finding loongarch64-ram-sigfpe): a stopped guest's dump."""
    registers = parse_registers(read("loongarch64-7.2-tcg", "stopped"), layout_for("loongarch64"))
    assert registers[0]["PC"] == ("000000001c000040",)
    assert registers[0]["r23"] == ("000000001fe001e0",)
    assert registers[0]["CRMD"] == ("00000000000000a8",)


@pytest.mark.parametrize(
    "text", ["", "Error: no CPU", "EAX=0 EBX=1", "\nCPU#0\n 0000 EAX=1\n"], ids=repr
)
def test_text_that_shows_no_registers_fails(text: str) -> None:
    with pytest.raises(CheckFailure):
        parse_registers(text, layout_for("x86_64"))


# -- what a real migration shows ----------------------------------------------


def expected_notes(stem: str) -> Tuple[Set[str], Set[str]]:
    """The registers each saved migration lets differ, and those one side only shows."""
    run = run_of(stem)
    if run.arch == "s390x":
        return {"PSW.cc", "PSW.mask"}, {"FPC"} if run.src_version < (
            10,
        ) <= run.dst_version else set()
    if run.arch == "ppc64" and run.src_version < (8, 2) <= run.dst_version:
        shown_later = {"RES.length", *(["TB_OFFSET"] if run.dst_version >= (11,) else [])}
        return {"MSR", "HF", "DECR"}, shown_later
    if run.arch == "ppc64" and run.dst_version >= (9,):
        return {"MSR"}, set()
    if run.arch == "riscv64" and run.dst_version >= (11,):
        return {"cycle", "instret", "mcycle", "minstret"}, set()
    return set(), set()


@pytest.mark.parametrize("stem", PAIRS)
def test_real_migrations_pass_with_their_known_differences(stem: str) -> None:
    result = check_vcpu_states(read(stem, "src"), read(stem, "dst"), run_of(stem))
    noted = {re.match(r"CPU#\d+ (\S+):", line)[1] for line in result.known}  # type: ignore[index]
    unshown = {re.match(r"CPU#\d+ (\S+):", line)[1] for line in result.unshown}  # type: ignore[index]
    assert (noted, unshown) == expected_notes(stem)


def test_every_known_difference_gives_a_reason() -> None:
    for entry in KNOWN_DIFFERENCES:
        assert len(entry.why) > 40, entry
        assert entry.kind != "bits" or entry.bits, entry
        assert entry.kind != "bits" or entry.finding, (
            f"a bug confined to bits is a finding: {entry}"
        )


# -- what it must fail on -------------------------------------------------------

#: A register of each architecture, and its line in the saved destination dump.
ONE_REGISTER = {
    "x86_64-11.1.3-tcg": ("EAX", "EAX=00004242", "EAX=00004243"),
    "x86_64-7.2-kvm": ("CR0", "CR0=00000011", "CR0=80000011"),
    "aarch64-11.1.3-tcg": ("X02", "X02=0000000040100000", "X02=0000000040101000"),
    "s390x-11.1.3-tcg": ("C00", "C00=00000000000000e0", "C00=00000000000000e1"),
    "ppc64-11.1.3-tcg": ("GPR14", "0000000000227000", "0000000000228000"),
    "riscv64-11.1.3-tcg": (
        "satp",
        "satp          0000000000000000",
        "satp          8000000000000001",
    ),
    "riscv64-7.2-tcg": ("f31/ft11", "f31/ft11 0000000000000000", "f31/ft11 3ff0000000000000"),
}


@pytest.mark.parametrize("stem", sorted(ONE_REGISTER))
def test_one_differing_register_fails_naming_cpu_register_and_values(stem: str) -> None:
    register, before, after = ONE_REGISTER[stem]
    destination = read(stem, "dst")
    assert destination.count(before) == 1, "the fixture line to change"
    with pytest.raises(CheckFailure) as failed:
        check_vcpu_states(read(stem, "src"), destination.replace(before, after), run_of(stem))
    message = str(failed.value)
    old, new = before.split()[-1].split("=")[-1], after.split()[-1].split("=")[-1]
    assert f"CPU#0 {register}: {old} on the source, {new} on the destination" in message
    assert "(1 of 1 differences shown)" in message


def test_second_vcpu_differing_is_named() -> None:
    source = read("x86_64-7.2-tcg-smp2", "src")
    first, second = source.split("CPU#1")
    destination = first + "CPU#1" + second.replace("EIP=000fd09a", "EIP=000fd09e")
    with pytest.raises(CheckFailure, match="CPU#1 EIP: 000fd09a on the source, 000fd09e"):
        check_vcpu_states(source, destination, run_of("x86_64-7.2-tcg"))


def test_a_missing_vcpu_fails() -> None:
    source = read("x86_64-7.2-tcg-smp2", "src")
    with pytest.raises(CheckFailure, match="CPU#1: only on the source"):
        check_vcpu_states(source, source.split("CPU#1")[0], run_of("x86_64-7.2-tcg"))


def test_a_register_shown_on_one_side_fails_within_a_version() -> None:
    source = read("s390x-11.1.3-tcg", "src")
    destination = source.replace("FPC=00000000\n", "")
    with pytest.raises(CheckFailure, match="CPU#0 FPC: shown on the source only"):
        check_vcpu_states(source, destination, run_of("s390x-11.1.3-tcg"))


def test_registers_only_one_version_shows_are_listed_across_versions() -> None:
    """7.2's riscv64 dump shows 18 CSRs, 11.1's over a hundred: those are not compared."""
    source = read("riscv64-7.2-tcg", "src")
    destination = source + " priv          M\n mhpmcounter3  0000000000000000\n"
    run = Run("riscv64", "tcg", VERSIONS["7.2"], VERSIONS["11.1.3"])
    result = check_vcpu_states(source, destination, run)
    assert result.unshown == [
        "CPU#0 priv: shown on the destination only",
        "CPU#0 mhpmcounter3: shown on the destination only",
    ]
    with pytest.raises(CheckFailure, match="CPU#0 priv: shown on the destination only"):
        check_vcpu_states(source, destination, run_of("riscv64-11.1.3-tcg"))


def test_s390x_mask_differing_outside_the_condition_code_fails() -> None:
    source = read("s390x-11.1.3-tcg", "src")
    destination = read("s390x-11.1.3-tcg", "dst").replace(
        "mask 0000000180000000", "mask 0400000180000000"
    )
    with pytest.raises(
        CheckFailure, match=r"PSW\.mask: 0000100180000000 on the source, 0400000180000000"
    ):
        check_vcpu_states(source, destination, run_of("s390x-11.1.3-tcg"))


def test_s390x_condition_code_is_compared_under_kvm() -> None:
    """The finding is TCG's: KVM holds the condition code in the PSW itself."""
    source, destination = read("s390x-11.1.3-tcg", "src"), read("s390x-11.1.3-tcg", "dst")
    with pytest.raises(CheckFailure, match=r"PSW\.mask"):
        check_vcpu_states(source, destination, run_of("s390x-11.1.3-tcg", "kvm"))


def test_ppc64_msr_differing_in_another_bit_fails() -> None:
    source = read("ppc64-11.1.3-tcg", "src")
    destination = read("ppc64-11.1.3-tcg", "dst").replace(
        "MSR 0000000000002000", "MSR 8000000000002000"
    )
    with pytest.raises(CheckFailure, match="CPU#0 MSR: 0000000000003000 on the source"):
        check_vcpu_states(source, destination, run_of("ppc64-11.1.3-tcg"))


def test_ppc64_msr_me_is_compared_on_a_destination_before_the_bug() -> None:
    """7.2 keeps MSR[ME] (measured: 0 on both sides): a 7.2 destination that flipped it fails."""
    source = read("ppc64-7.2-tcg", "src")
    destination = read("ppc64-7.2-tcg", "dst").replace(
        "MSR 0000000000000000", "MSR 0000000000001000"
    )
    with pytest.raises(
        CheckFailure, match="CPU#0 MSR: 0000000000000000 on the source, 0000000000001000"
    ):
        check_vcpu_states(source, destination, run_of("ppc64-7.2-tcg"))


def test_riscv64_counter_going_back_fails() -> None:
    source = read("riscv64-11.1.3-tcg", "src")
    destination = read("riscv64-11.1.3-tcg", "dst").replace(
        "mcycle        00003d0668d8688e", "mcycle        00003d0668a87000"
    )
    with pytest.raises(
        CheckFailure, match="CPU#0 mcycle: 00003d0668a8705a on the source, 00003d0668a87000"
    ):
        check_vcpu_states(source, destination, run_of("riscv64-11.1.3-tcg"))


def test_riscv64_time_is_compared() -> None:
    """``time`` follows the virtual clock, stopped with the guest (equal in every dump)."""
    source = read("riscv64-11.1.3-tcg", "src")
    destination = read("riscv64-11.1.3-tcg", "dst").replace(
        "time          00000000007c4ab3", "time          00000000007c4ab4"
    )
    with pytest.raises(CheckFailure, match="CPU#0 time: 00000000007c4ab3 on the source"):
        check_vcpu_states(source, destination, run_of("riscv64-11.1.3-tcg"))


def test_many_differences_are_counted() -> None:
    source = read("x86_64-11.1.3-tcg", "src")
    destination = re.sub(r"(XMM0\d)=0", r"\1=1", source)
    with pytest.raises(CheckFailure, match=r"\(8 of 8 differences shown\)"):
        check_vcpu_states(source, destination, run_of("x86_64-11.1.3-tcg"))
    destination = re.sub(r"=0000000000000000", "=0000000000000001", source)
    with pytest.raises(CheckFailure, match=r"\(8 of \d\d differences shown\)"):
        check_vcpu_states(source, destination, run_of("x86_64-11.1.3-tcg"))


# -- against real QEMU ------------------------------------------------------------


@pytest.fixture
def migrated(tcg_params: SuiteParams, workdir: Path) -> Iterator[MigrationPair]:
    """An x86_64 TCG pair after a migration of the stopped guest: both paused."""
    with MigrationPair(tcg_params, workdir) as pair:
        pair.start()
        pair.src.stop()
        pair.allow_convergence()
        pair.migrate("unix")
        pair.wait_for_completion()
        yield pair


def test_real_migration_has_identical_vcpus(migrated: MigrationPair) -> None:
    assert_vcpus_identical(migrated)
    verify_migration(migrated)


def test_real_destination_that_ran_fails_naming_registers(migrated: MigrationPair) -> None:
    dst = migrated.dst
    dst.cont()
    assert_guest_runs(dst.machine, migrated.profile)
    dst.stop()
    with pytest.raises(
        CheckFailure,
        match=r"CPU#0 (EAX|EIP|EBX|ECX|EFL): \w+ on the source, \w+ on the destination",
    ):
        assert_vcpus_identical(migrated)


def test_real_snapshot_of_another_state_fails(migrated: MigrationPair) -> None:
    """CPR compares with a snapshot of a QEMU that is gone: the same comparison."""
    snapshot = snapshot_vcpus(migrated.src)
    assert_vcpus_as_snapshot(snapshot, migrated)
    changed = re.sub(r"EBX=([0-9a-f]{8})", "EBX=0badc0de", snapshot)
    with pytest.raises(
        CheckFailure, match=r"CPU#0 EBX: 0badc0de on the source, [0-9a-f]{8} on the"
    ):
        assert_vcpus_as_snapshot(changed, migrated)


def test_real_check_refuses_a_running_side(migrated: MigrationPair) -> None:
    migrated.dst.cont()
    with pytest.raises(CheckFailure, match="dst runs: its vCPUs can be compared only while"):
        assert_vcpus_identical(migrated)


def test_ppc64_decrementer_from_7_2_must_arrive_as_the_zero_of_the_bug() -> None:
    """The finding allows the 0 QEMU's bug leaves, not any other value."""
    stem = "ppc64-7.2-to-11.1.3-tcg"
    destination = read(stem, "dst").replace("DECR 0 ", "DECR 5 ")
    with pytest.raises(CheckFailure, match="CPU#0 DECR: 3445634256 on the source, 5 on the"):
        check_vcpu_states(read(stem, "src"), destination, run_of(stem))


def test_ppc64_decrementer_is_compared_within_a_version() -> None:
    stem = "ppc64-11.1.3-tcg"
    destination = read(stem, "dst").replace("DECR 18446744073287156916", "DECR 0")
    with pytest.raises(CheckFailure, match="CPU#0 DECR: 18446744073287156916 on the source, 0 on"):
        check_vcpu_states(read(stem, "src"), destination, run_of(stem))


def test_every_known_bug_of_the_vcpu_comparison_is_a_registered_finding() -> None:
    """One registry: a register QEMU migrates wrong names a finding of migtest.findings."""
    from migtest.findings import FINDINGS_BY_ID
    from migtest.vcpu_state import KNOWN_DIFFERENCES

    bugs = [entry for entry in KNOWN_DIFFERENCES if entry.finding]
    assert bugs
    for entry in bugs:
        finding = FINDINGS_BY_ID[entry.finding]
        assert any(entry.arch in scope.arches for scope in finding.scopes), entry.finding
        line = (
            f"vCPU state: CPU#0 {entry.register}: 1 on the source, 0 on the destination "
            f"(known QEMU finding {entry.finding}: {entry.why})"
        )
        assert finding.shows.search(line), entry.finding
        # Another register's note does not show it.
        assert not finding.shows.search(line.replace(f" {entry.register}:", " R1:")), entry.finding
