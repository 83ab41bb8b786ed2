"""What share of register faults the vCPU comparison catches, measured.

:func:`migtest.verify.assert_vcpus_identical` compares what ``info
registers -a`` shows of the stopped source and the paused destination.
To measure what that catches, each register the gdbstub knows (its
target description) is changed on the paused destination, one bit, and
the comparison is run: it must fail naming the register, unless HMP does
not show it at all (the comparison's honest blind spot, reported), or
the change is one :data:`~migtest.vcpu_state.KNOWN_DIFFERENCES` allows
(reported with its reason).  Then the register is restored and the
comparison must pass again.

Which of HMP's names shows a gdb register is not listed by hand: the
destination's dump before and after the write says (``shown_as``), line
by line in its raw text and register by register as the comparison
parses it.  A raw line that changed where no parsed register did is a
blind spot of the parser, and counts as missed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Literal, Optional, Sequence, Set, Tuple

from .errors import CheckFailure, MigtestError
from .gdbstub import GdbClient, GdbError, Register
from .vcpu_state import KNOWN_DIFFERENCES, Run, check_vcpu_states, layout_for, parse_registers

#: The bits tried, lowest first, until a write sticks: a register may
#: ignore some (reserved, read-only or masked bits).
CANDIDATE_BITS = (0, 1, 2, 3, 4, 5, 6, 7, 8, 12, 16, 24, 32, 40, 48, 56, 63)

#: Bits never flipped, by ``(architecture, gdb register)``, each with why:
#: flipping them changes how the stub itself reads and writes.
AVOIDED_BITS: Dict[Tuple[str, str], Tuple[Tuple[int, str], ...]] = {
    ("ppc64", "msr"): (
        (
            0,
            "MSR[LE]: the stub then swaps the bytes of every value it sends "
            "and takes (ppc_maybe_bswap_register), the restore included",
        ),
    ),
}

_SELECTOR_UNDER_KVM = (
    "a selector written through the stub reloads the segment's hidden part from "
    "the GDT in TCG's layout (x86_cpu_gdb_load_seg: flags with limit bits 19-16), "
    "where KVM's copy has none (measured: CS flags 00c09b00, 00cf9b00 once "
    "restored): no write puts the vCPU back as it was"
)

#: Registers the stub cannot put back as they were, by ``(architecture,
#: accelerator)``, each with why: faulted, they would leave the vCPU
#: changed for every later one, and for the checks after.
UNRESTORABLE: Dict[Tuple[str, str], Dict[str, str]] = {
    ("x86_64", "kvm"): dict.fromkeys(("cs", "ss", "ds", "es", "fs", "gs"), _SELECTOR_UNDER_KVM),
}

#: Bits also flipped, one fault each, by ``(architecture, gdb register)``:
#: those :data:`~migtest.vcpu_state.KNOWN_DIFFERENCES` lets differ, so
#: that what the allowance hides is measured too.  s390x's condition code
#: (PSW mask bits 18-19, counted from the most significant), ppc64's MSR[ME].
ALLOWED_BITS_TOO: Dict[Tuple[str, str], Tuple[int, ...]] = {
    ("s390x", "pswm"): (44, 45),
    ("ppc64", "msr"): (12,),
}

Verdict = Literal[
    "caught",  # the comparison failed naming it
    "missed",  # HMP shows the change, the comparison let it pass: a FAIL
    "known difference",  # shown, and allowed by KNOWN_DIFFERENCES
    "not shown",  # HMP's dump does not change: the comparison cannot see it
    "destination only",  # only the destination's QEMU version shows it: not compared
    "not writable",  # the stub refused, or no candidate bit stuck
    "counts by itself",  # two reads of the paused vCPU differ: a counter, not faulted
    "not readable",  # the stub refused to read it, or sent another size
    "ambiguous",  # its number names another register too
    "not restorable",  # the stub could not put it back: not faulted (UNRESTORABLE)
]

_log = logging.getLogger("migtest.vcpu_faults")


@dataclass(frozen=True)
class Fault:
    """What became of one register's fault."""

    register: str
    verdict: Verdict
    #: The bit flipped, if a write stuck.
    bit: Optional[int] = None
    #: The registers of HMP's dump that changed with it.
    shown_as: Tuple[str, ...] = ()
    detail: str = ""


@dataclass
class Measurement:
    """Every register's fault on one vCPU, and the figures."""

    arch: str
    cpu: int
    faults: List[Fault] = field(default_factory=list)

    def named(self, verdict: Verdict) -> List[str]:
        """The registers that ended in ``verdict``."""
        return [f.register for f in self.faults if f.verdict == verdict]

    def figures(self) -> Dict[str, object]:
        """The counts, the names and the reasons, for the JSON file and README."""
        count = {v: len(self.named(v)) for v in _VERDICTS}
        changed = sum(
            count[v]
            for v in ("caught", "missed", "known difference", "not shown", "destination only")
        )
        return {
            "arch": self.arch,
            "cpu": self.cpu,
            # A register faulted again in an allowed bit is one register.
            "registers": len({f.register.split("[")[0] for f in self.faults}),
            "faults": len(self.faults),
            "writable": changed,
            **{v.replace(" ", "_"): count[v] for v in _VERDICTS},
            "caught_share_of_writable": round(count["caught"] / changed, 3) if changed else None,
            "missed_names": self.named("missed"),
            "not_shown_names": self.named("not shown"),
            "not_writable_names": self.named("not writable"),
            "reasons": {
                f.register: f.detail
                for f in self.faults
                if f.verdict not in ("caught", "not shown", "not writable")
            },
            "shown_as": {f.register: list(f.shown_as) for f in self.faults if f.shown_as},
        }

    def summary(self) -> str:
        """The figures in one line, each verdict with its count, unshown ones named."""
        counts = ", ".join(f"{len(self.named(v))} {v}" for v in _VERDICTS if self.named(v))
        shown = (
            f"; not shown: {' '.join(self.named('not shown'))}" if self.named("not shown") else ""
        )
        return f"{len(self.faults)} registers: {counts}{shown}"

    def assert_nothing_missed(self) -> None:
        """:raise CheckFailure: a change HMP shows passed the comparison, naming each."""
        missed = [f for f in self.faults if f.verdict == "missed"]
        if missed:
            raise CheckFailure(
                f"the vCPU comparison let {len(missed)} register fault(s) on CPU#{self.cpu} "
                "pass:\n" + "\n".join(f"  {f.register}: {f.detail}" for f in missed),
                [f"{f.register}: {f.detail}" for f in missed],
            )


_VERDICTS: Tuple[Verdict, ...] = (
    "caught",
    "missed",
    "known difference",
    "not shown",
    "destination only",
    "not writable",
    "counts by itself",
    "not readable",
    "ambiguous",
    "not restorable",
)


def changed_lines(baseline: str, after: str, noisy: Set[int]) -> List[str]:
    """Lines of ``after`` that differ from ``baseline``, those at positions ``noisy`` aside.

    Line by line while both dumps have as many; otherwise every line of
    ``after`` that ``baseline`` lacks (the write changed what is shown).

    :param noisy: positions of lines that change by themselves between two
        dumps (riscv64's cycle counters under TCG): never the sign of a write.
    """
    old, new = baseline.splitlines(), after.splitlines()
    if len(old) != len(new):
        return [line for line in new if line not in set(old)]
    return [b for i, (a, b) in enumerate(zip(old, new)) if a != b and i not in noisy]


def noisy_lines(baseline: str, again: str) -> Set[int]:
    """Positions of the lines that differ between two dumps of the same paused vCPUs."""
    old, new = baseline.splitlines(), again.splitlines()
    if len(old) != len(new):
        raise MigtestError(
            f"two dumps of the paused destination differ in length: {len(old)}, {len(new)}"
        )
    return {i for i, (a, b) in enumerate(zip(old, new)) if a != b}


def changed_registers(baseline: str, after: str, arch: str, noisy: Set[str]) -> List[str]:
    """``CPU#n NAME`` of each register the parsed dumps show changed, ``noisy`` aside.

    :param noisy: ``CPU#n NAME`` of registers that change by themselves.
    """
    layout = layout_for(arch)
    old, new = parse_registers(baseline, layout), parse_registers(after, layout)
    changed = []
    for cpu in sorted(set(old) | set(new)):
        before, now = old.get(cpu, {}), new.get(cpu, {})
        for name in [*now, *(n for n in before if n not in now)]:  # shown, or no longer
            key = f"CPU#{cpu} {name}"
            if before.get(name) != now.get(name) and key not in noisy:
                changed.append(key)
    return changed


def judge(
    register: str,
    bit: int,
    lines: Sequence[str],
    shown_as: Sequence[str],
    failure: Optional[str],
    run: Run,
    source_shows: Optional[Set[str]] = None,
) -> Fault:
    """The verdict on one register's fault, from what the dumps and the comparison said.

    :param lines: raw lines of the destination's dump that changed.
    :param shown_as: ``CPU#n NAME`` of parsed registers that changed.
    :param failure: the comparison's failure message, ``None`` if it passed.
    :param source_shows: ``CPU#n NAME`` of every register the source's dump
        shows.  Across QEMU versions the comparison leaves out a register
        only one side's dump shows (s390x's FPC: 11.1 prints it, 7.2 not).
    """
    names = tuple(shown_as)
    if not lines and not names:
        return Fault(register, "not shown", bit)
    if not names:
        return Fault(
            register, "missed", bit, (), f"HMP lines changed, no parsed register did: {lines[:3]}"
        )
    if failure is not None:
        if any(f"{name}:" in failure for name in names):
            return Fault(register, "caught", bit, names)
        return Fault(register, "missed", bit, names, f"the failure names none of them: {failure}")
    if (
        source_shows is not None
        and run.src_version != run.dst_version
        and not any(name in source_shows for name in names)
    ):
        return Fault(
            register, "destination only", bit, names, "the source's QEMU version does not show it"
        )
    allowed = [_allowed_because(name, run) for name in names]
    if all(allowed):
        return Fault(register, "known difference", bit, names, "; ".join(filter(None, allowed)))
    return Fault(register, "missed", bit, names, "the comparison passed with it changed")


def _allowed_because(name: str, run: Run) -> str:
    """Why KNOWN_DIFFERENCES lets ``CPU#n NAME`` differ in ``run``, or ``""``."""
    register = name.split(" ", 1)[1]
    for entry in KNOWN_DIFFERENCES:
        if entry.applies(run, register):
            return f"{register}: {entry.kind}: {entry.why}"
    return ""


def measure(
    gdb: GdbClient,
    cpu: int,
    dump: Callable[[], str],
    source: str,
    run: Run,
) -> Measurement:
    """Fault every register of ``gdb``'s description on vCPU ``cpu``, one at a time.

    :param dump: the destination's ``info registers -a`` (paused: it
        checks so).
    :param source: the stopped source's dump, which the comparison takes.
    :raise MigtestError: a register could not be restored, or a restored
        destination no longer passes the comparison: the rest would
        measure a changed vCPU.
    """
    gdb.select_cpu(cpu)
    session = _Session(gdb, dump, source, run)
    ambiguous = {r.number for r in gdb.target.ambiguous()}
    names = [r.name for r in gdb.target.registers]
    result = Measurement(run.arch, cpu)
    for register in gdb.target.registers:
        label = register.name
        if names.count(register.name) > 1:
            label = f"{register.name}#{register.number}"
        unrestorable = UNRESTORABLE.get((run.arch, run.accel), {}).get(register.name)
        if register.number in ambiguous:
            fault = Fault(label, "ambiguous", detail=f"number {register.number}")
        elif unrestorable is not None:
            fault = Fault(label, "not restorable", detail=unrestorable)
        else:
            fault = session.fault(register, label)
        _log.debug("CPU#%d %s: %s %s", cpu, label, fault.verdict, fault.detail)
        result.faults.append(fault)
        for bit in ALLOWED_BITS_TOO.get((run.arch, register.name), ()):
            result.faults.append(session.fault(register, f"{label}[bit {bit}]", (bit,)))
    return result


class _Session:
    """The destination's state before any fault, and the faults, one at a time."""

    def __init__(self, gdb: GdbClient, dump: Callable[[], str], source: str, run: Run) -> None:
        self.gdb, self.dump, self.source, self.run = gdb, dump, source, run
        self.source_shows = {
            f"CPU#{cpu} {name}"
            for cpu, registers in parse_registers(source, layout_for(run.arch)).items()
            for name in registers
        }
        self.baseline = dump()
        again = dump()
        self.noise = noisy_lines(self.baseline, again)
        self.noisy = set(changed_registers(self.baseline, again, run.arch, set()))
        #: Every readable register's value, but for those that count by
        #: themselves: what a write's side effects are undone to.
        self.values: Dict[int, int] = {}
        for register in gdb.target.registers:
            try:
                value = gdb.read(register)
                if gdb.read(register) == value:
                    self.values[register.number] = value
            except GdbError:
                pass

    def fault(self, register: Register, label: str, bits: Sequence[int] = ()) -> Fault:
        """Flip a bit of ``register``, judge the comparison, and restore the vCPU.

        :param bits: the bit to flip, if the first of these sticks;
            otherwise the first of :data:`CANDIDATE_BITS` that does.
        """
        try:
            value, again = self.gdb.read(register), self.gdb.read(register)
        except GdbError as exc:
            return Fault(label, "not readable", detail=str(exc))
        if again != value:
            # riscv64's cycle counters count the host's cycles, the guest
            # paused (see KNOWN_DIFFERENCES): a value written would not stay.
            return Fault(label, "counts by itself", detail=f"0x{value:x}, then 0x{again:x}")
        bit = _flip(self.gdb, register, value, self.run.arch, bits)
        if bit is None:
            self._restore(label)
            return Fault(label, "not writable", detail="refused, or no candidate bit stuck")
        after = self.dump()
        try:
            check_vcpu_states(self.source, after, self.run)
            failure: Optional[str] = None
        except CheckFailure as exc:
            failure = str(exc)
        fault = judge(
            label,
            bit,
            changed_lines(self.baseline, after, self.noise),
            changed_registers(self.baseline, after, self.run.arch, self.noisy),
            failure,
            self.run,
            self.source_shows,
        )
        self._restore(label)
        return fault

    def _restore(self, label: str) -> None:
        """Write back every register that no longer has its first value, and prove it.

        Not only the one faulted: a write can change others (riscv64's
        fflags sets mstatus.FS dirty).

        :raise MigtestError: a value did not stick, or the dump or the
            comparison still differ.
        """
        for register in self.gdb.target.registers:
            value = self.values.get(register.number)
            if value is None or self.gdb.read(register) == value:
                continue
            self.gdb.write(register, value)
            if self.gdb.read(register) != value:
                raise MigtestError(f"after {label}: restoring {register.name} did not stick")
        restored = self.dump()
        left = changed_lines(self.baseline, restored, self.noise)
        if left:
            raise MigtestError(f"after {label}: restored, the dump still differs: {left[:3]}")
        check_vcpu_states(self.source, restored, self.run)


def _flip(
    gdb: GdbClient, register: Register, value: int, arch: str, bits: Sequence[int] = ()
) -> Optional[int]:
    """Flip the first of ``bits`` (or of the candidates) the register keeps; which, or ``None``."""
    avoided = {bit for bit, _ in AVOIDED_BITS.get((arch, register.name), ())}
    for bit in (b for b in bits or CANDIDATE_BITS if b < register.bits and b not in avoided):
        if not gdb.write(register, value ^ (1 << bit)):
            return None
        if gdb.read(register) != value:
            return bit
    return None
