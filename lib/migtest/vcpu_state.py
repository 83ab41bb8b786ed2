"""The architectural state of a guest's vCPUs, and its comparison across a migration.

QEMU shows every vCPU's registers with HMP's ``info registers -a``: the
general registers, the program counter and status word, control
registers, and the FPU and vector registers (``hmp_info_registers`` asks
each CPU for a dump with ``CPU_DUMP_FPU``).  Each architecture prints them
its own way; a :class:`Layout` says how its register names are told from
their values.  A stopped source and a paused destination that has not run
yet must show the same state, register for register: a vCPU migrated
wrong breaks a real guest long before the memory shows it.

Where QEMU shows a value that legitimately differs, or that QEMU is
known to migrate wrong, :data:`KNOWN_DIFFERENCES` says which register,
which bits, on which accelerator and destination versions, and why (a
QEMU source reference or a measurement).  Such a difference is reported
as a note, never skipped silently; any other difference fails.

Pure logic: text in, verdict out.  :mod:`migtest.verify` reads the dumps.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Dict, List, Literal, Optional, Sequence, Tuple

from .errors import CheckFailure

#: The HMP command that shows every vCPU, FPU and vector state included.
HMP_COMMAND = "info registers -a"

#: How many differing registers a failure lists at most.
MAX_REPORTED = 8

#: One vCPU's registers: name -> the values QEMU printed for it, in order
#: (a segment register shows selector, base, limit and flags).
Registers = Dict[str, Tuple[str, ...]]

#: A QEMU version, ``(major, minor, micro)``.
Version = Tuple[int, ...]

_CPU_HEADER = re.compile(r"^CPU#(\d+)$")
_EQUALS = re.compile(r"\s*=\s*")
_NUMBERED = re.compile(r"^(.*?)(\d+)$")


@dataclass(frozen=True)
class Layout:
    """How one architecture's dump names its registers.

    Every dump writes some registers as ``NAME=value``; those need no
    rule.  Architectures that write ``NAME value`` say which words are
    names (:attr:`names`); every other word is a value of the name before
    it (flags shown as letters, a segment's base and limit).
    """

    #: A regular expression a whole word must match to be a register
    #: name; ``None``: only ``NAME=`` introduces a register.
    names: Optional[str] = None
    #: ``(pattern, replacement)`` applied to each line first, to give
    #: registers written in prose (s390x's ``PSW=mask M addr A``) names.
    rewrites: Tuple[Tuple[str, str], ...] = ()
    #: A line of one numbered name and several values holds consecutive
    #: registers (ppc64's ``GPR04 a b c d`` is GPR04 to GPR07).
    numbered_rows: bool = False


#: What each architecture prints, read from its dumps on QEMU 7.2, 10.0
#: and 11.1 (``selftests/data/vcpu``).
LAYOUTS: Dict[str, Layout] = {
    # EAX=..., ES =sel base limit flags DPL=0 DS [-WA], FPR0=mantissa exp.
    "x86_64": Layout(),
    # PC=..., X00=..., PSTATE=... N--- EL1h (Q00=hi:lo when the FPU is on).
    "aarch64": Layout(),
    # PSW=mask M addr A [cc OP], R00=..., V00=... (F00=... without vectors).
    "s390x": Layout(
        rewrites=(
            (r"^PSW=mask (\S+) addr (\S+)", r"PSW.mask=\1 PSW.addr=\2"),
            (r"\s+cc\s+(\S+)$", r" PSW.cc=\1"),
        )
    ),
    # NIP v LR v ... CPU#0, GPR00 v v v v, CR v [ L - ... ] RES v.
    # 7.2 shows the reservation as RES addr, later ones as RES length@addr.
    "ppc64": Layout(
        names=r"[A-Z][A-Z0-9_]+(?:\.length)?|[id]idx",
        rewrites=((r"\s+CPU#\d+\s*$", ""), (r"\bRES (\w+)@(\S+)", r"RES \2 RES.length \1")),
        numbered_rows=True,
    ),
    # One register a line (" mstatus 0000000a00000000"), or x0/zero v x1/ra v:
    # every value has 16 hex digits, and the privilege mode is M, S or U.
    "riscv64": Layout(names=r"(?![0-9a-f]{16}$)[a-z][a-z0-9/]*"),
    # PC=... FCSR0 0x0, GPR00: r0 v r1 v ..., CRMD=..., f0 v f1 v (7.2).
    "loongarch64": Layout(names=r"(?![0-9a-f]{16}$)[A-Za-z][A-Za-z0-9_]*:?"),
}


def layout_for(arch: str) -> Layout:
    """The layout of ``arch``'s dumps; ``NAME=value`` only for one not listed."""
    return LAYOUTS.get(arch, Layout())


def parse_registers(text: str, layout: Layout) -> Dict[int, Registers]:
    """``info registers -a`` as ``{vCPU index: {register: values}}``.

    A name printed more than once in a vCPU's dump (x86's ``DPL`` on every
    segment line) is qualified by the first name of its line (``CS.DPL``).

    :raise CheckFailure: the text shows no vCPU, or a line does not read
        as registers: QEMU printed something else (an error, a new format).
    """
    blocks: Dict[int, List[str]] = {}
    lines: Optional[List[str]] = None
    for line in text.splitlines():
        header = _CPU_HEADER.match(line.strip())
        if header:
            lines = blocks.setdefault(int(header.group(1)), [])
        elif line.strip():
            if lines is None:
                raise CheckFailure(f"no 'CPU#n' line before {line.strip()!r} in {HMP_COMMAND!r}")
            lines.append(line)
    if not blocks:
        raise CheckFailure(f"{HMP_COMMAND!r} showed no vCPU: {text.strip()[:200]!r}")
    return {index: _registers(block, layout) for index, block in blocks.items()}


def _registers(lines: Sequence[str], layout: Layout) -> Registers:
    fields: List[Tuple[str, str, List[str]]] = []  # (first name of the line, name, values)
    for line in lines:
        fields += _fields(line, layout)
    counts: Dict[str, int] = {}
    for _, name, _ in fields:
        counts[name] = counts.get(name, 0) + 1
    registers: Registers = {}
    for first, name, values in fields:
        key = name if counts[name] == 1 else f"{first}.{name}"
        if key in registers:
            raise CheckFailure(f"register {key} shown twice in one vCPU's {HMP_COMMAND!r}")
        registers[key] = tuple(values)
    return registers


def _fields(line: str, layout: Layout) -> List[Tuple[str, str, List[str]]]:
    """The registers of one line, in order, each with its values."""
    for pattern, replacement in layout.rewrites:
        line = re.sub(pattern, replacement, line)
    fields: List[Tuple[str, str, List[str]]] = []
    for word in _EQUALS.sub("=", line).split():
        name, equals, value = word.partition("=")
        if equals and not word.startswith("["):
            fields.append(("", name, [value] if value else []))
        elif layout.names is not None and re.fullmatch(layout.names, word):
            fields.append(("", word, []))
        elif fields:
            fields[-1][2].append(word)
        else:
            raise CheckFailure(f"{HMP_COMMAND!r}: {word!r} names no register in {line.strip()!r}")
    first = fields[0][1]
    if layout.numbered_rows and len(fields) == 1 and len(fields[0][2]) > 1:
        numbered = _NUMBERED.match(first)
        if numbered:
            stem, digits = numbered.groups()
            return [
                (first, f"{stem}{int(digits) + i:0{len(digits)}d}", [value])
                for i, value in enumerate(fields[0][2])
            ]
    return [(first, name, values) for _, name, values in fields]


@dataclass(frozen=True)
class Run:
    """What a comparison needs to know of the migration it judges."""

    arch: str
    accel: str
    src_version: Version
    dst_version: Version


#: QEMU versions a known difference applies to: ``[first, last)``, either
#: bound ``None`` for none.
Versions = Tuple[Optional[Version], Optional[Version]]
ANY_VERSION: Versions = (None, None)


def _within(version: Version, versions: Versions) -> bool:
    first, last = versions
    return (first is None or version >= first) and (last is None or version < last)


@dataclass(frozen=True)
class KnownDifference:
    """A register whose value may differ across a migration, and why.

    :ivar kind: ``internal``: QEMU's own bookkeeping, not guest state, so
        not compared; ``bits``: only :attr:`bits` of its first value may
        differ (a QEMU bug confined to them), the rest must match;
        ``counter``: it counts on while the guest is stopped, so it may
        differ but never go back; ``zeroed``: a QEMU bug loses it, and
        the destination shows 0.
    """

    arch: str
    register: str
    kind: Literal["internal", "bits", "counter", "zeroed"]
    why: str
    accels: Tuple[str, ...] = ("tcg", "kvm")
    bits: int = 0
    src_versions: Versions = ANY_VERSION
    dst_versions: Versions = ANY_VERSION
    #: The id of the QEMU bug behind it, for README's Findings.
    finding: str = ""

    def applies(self, run: Run, register: str) -> bool:
        """Whether this entry covers ``register`` in ``run``."""
        return (
            run.arch == self.arch
            and run.accel in self.accels
            and register == self.register
            and _within(run.src_version, self.src_versions)
            and _within(run.dst_version, self.dst_versions)
        )

    def allows(self, source: Tuple[str, ...], destination: Tuple[str, ...]) -> bool:
        """Whether the two values differ only as this entry allows."""
        if self.kind == "internal":
            return True
        if self.kind == "zeroed":
            return len(destination) == 1 and destination[0].strip("0") == ""
        if len(source) != len(destination) or source[1:] != destination[1:]:
            return False
        try:
            before, after = int(source[0], 16), int(destination[0], 16)
        except (IndexError, ValueError):
            return False
        if self.kind == "bits":
            return not (before ^ after) & ~self.bits
        return after >= before


#: Every register this suite lets differ, each with its reason.
KNOWN_DIFFERENCES: Tuple[KnownDifference, ...] = (
    KnownDifference(
        "s390x",
        "PSW.cc",
        "internal",
        "how TCG will compute the condition code (its cc_op: CC_OP_LTUGTU_64 and the "
        "like, or the code itself when known), not guest state; the condition code "
        "is the PSW mask's bits 18-19 (target/s390x/cpu-dump.c)",
        accels=("tcg",),
    ),
    KnownDifference(
        "s390x",
        "PSW.mask",
        "bits",
        "QEMU bug: under TCG the condition code lives in cc_op/cc_src/cc_dst, "
        "which the 'cpu' section does not carry; it saves env.psw.mask as it is, "
        "without folding the condition code in (target/s390x/machine.c, no "
        "pre_save for TCG), and the destination keeps its own cc_op.  Measured: "
        "source CC 1 (after CLGR), the stream's psw.mask with CC 0, the "
        "destination CC 0; 7.2, 10.0.13 and 11.1.3",
        accels=("tcg",),
        bits=0x0000_3000_0000_0000,
        finding="s390x-tcg-condition-code",
    ),
    KnownDifference(
        "ppc64",
        "MSR",
        "bits",
        "QEMU bug: loading the CPU, post_load_update_msr() first flips every "
        "bit of msr_mask in env->msr, then stores the migrated MSR through "
        "hreg_store_msr(), which since 'target/ppc: Prevent supervisor from "
        "modifying MSR[ME]' (January 2024, after 7.2) keeps the current ME "
        "outside hypervisor state: the flipped one.  So MSR[ME] arrives "
        "inverted on every vCPU of a pseries guest (measured: 0x3000 -> 0x2000 "
        "on 10.0.13 and 11.1.3 destinations, not on 7.2)",
        bits=1 << 12,
        dst_versions=((9, 0), None),
        finding="ppc64-msr-me-inverted",
    ),
    KnownDifference(
        "ppc64",
        "HF",
        "internal",
        "QEMU's hflags: TCG's cache of what MSR, LPCR and MMCR0 imply "
        "(hreg_compute_hflags_value() in target/ppc/helper_regs.c), recomputed "
        "when the CPU is loaded, in the layout of the destination's version "
        "(7.2's 6c000000 is 11.1's 6c100000 for the same registers)",
        accels=("tcg",),
    ),
    KnownDifference(
        "ppc64",
        "DECR",
        "zeroed",
        "QEMU bug, across versions: TCG keeps the decrementer in a timer, not in "
        "spr[SPR_DECR]; 'target/ppc: Migrate DECR SPR' (8.2) saves it there before "
        "migrating and loads it from there, so a destination of 8.2 or later "
        "takes whatever an older source left in the slot: 0 from 7.2 (measured "
        "7.2 -> 10.0.13 and 11.1.3), a decrementer that fires at once",
        accels=("tcg",),
        src_versions=(None, (8, 2)),
        dst_versions=((8, 2), None),
        finding="ppc64-decr-before-8.2",
    ),
    *(
        KnownDifference(
            "riscv64",
            counter,
            "counter",
            "under TCG without icount these count the host's cycles "
            "(target/riscv/csr.c get_ticks(): cpu_get_host_ticks()), also while "
            "the guest is stopped: two reads of a stopped source 0.2 s apart "
            "differ by ~4e8",
            accels=("tcg",),
        )
        for counter in ("cycle", "instret", "mcycle", "minstret")
    ),
)


@dataclass
class Comparison:
    """Registers that differ, and those allowed to, each as a line for people."""

    differences: List[str] = field(default_factory=list)
    #: Allowed differences, each with its reason.
    known: List[str] = field(default_factory=list)
    #: Registers only one version shows (a migration across versions).
    unshown: List[str] = field(default_factory=list)
    #: The ids of the known QEMU findings (:mod:`migtest.findings`) the
    #: allowed differences showed: the test passes, but says so.
    findings: List[str] = field(default_factory=list)


def compare_vcpus(
    source: Dict[int, Registers],
    destination: Dict[int, Registers],
    run: Run,
    known: Sequence[KnownDifference] = KNOWN_DIFFERENCES,
) -> Comparison:
    """Compare every register of every vCPU of the two sides.

    A register only one side shows is a difference when both run the
    same QEMU version; across versions, dumps gain registers (riscv64's
    CSRs in 11.x), so it is listed in :attr:`Comparison.unshown` instead.
    """
    result = Comparison()
    for cpu in sorted(set(source) | set(destination)):
        if cpu not in source or cpu not in destination:
            side = "source" if cpu in source else "destination"
            result.differences.append(f"CPU#{cpu}: only on the {side}")
            continue
        src, dst = source[cpu], destination[cpu]
        for name in [*src, *(n for n in dst if n not in src)]:
            _compare_register(result, run, known, f"CPU#{cpu}", name, src.get(name), dst.get(name))
    return result


def _compare_register(
    result: Comparison,
    run: Run,
    known: Sequence[KnownDifference],
    cpu: str,
    name: str,
    src: Optional[Tuple[str, ...]],
    dst: Optional[Tuple[str, ...]],
) -> None:
    if src == dst:
        return
    if src is None or dst is None:
        side = "source" if dst is None else "destination"
        line = f"{cpu} {name}: shown on the {side} only"
        if run.src_version != run.dst_version:
            result.unshown.append(line)
        else:
            result.differences.append(line)
        return
    line = f"{cpu} {name}: {' '.join(src)} on the source, {' '.join(dst)} on the destination"
    for entry in known:
        if entry.applies(run, name) and entry.allows(src, dst):
            label = f"known QEMU finding {entry.finding}" if entry.finding else entry.kind
            result.known.append(f"{line} ({label}: {entry.why})")
            if entry.finding and entry.finding not in result.findings:
                result.findings.append(entry.finding)
            return
    result.differences.append(line)


def check_vcpu_states(source_text: str, destination_text: str, run: Run) -> Comparison:
    """Check the destination's vCPUs show the source's state, register for register.

    :param source_text: ``info registers -a`` of the stopped source.
    :param destination_text: the same, of the paused destination.
    :return: the comparison, for its notes of allowed differences.
    :raise CheckFailure: naming each differing vCPU and register with both
        values (the first :data:`MAX_REPORTED`).
    """
    layout = layout_for(run.arch)
    result = compare_vcpus(
        parse_registers(source_text, layout), parse_registers(destination_text, layout), run
    )
    if result.differences:
        shown = result.differences[:MAX_REPORTED]
        raise CheckFailure(
            "vCPU state differs between the stopped source and the paused destination:\n"
            + "\n".join(f"  {line}" for line in shown)
            + f"\n  ({len(shown)} of {len(result.differences)} differences shown)"
        )
    return result
