"""QEMU's known faults: failures this suite traced to QEMU, not to a test.

A suite this strict hits real QEMU bugs that the project cannot fix.  A
test that hits one must neither go green by weakening its check nor keep
every run red: it ends in CANCEL naming the finding, with its evidence
(the logs) kept like any other result's.

A finding matches a failure, never a test: the architecture, both QEMU
versions and a line QEMU printed or answered must all match, so any other
failure of the same test, or the same failure elsewhere, still FAILs.

A finding also says which runs must hit it: every migration in its scope
(``every_migration``), or the tests named in ``reproduced_by``, each
every time it runs there.  A test that passes where its finding should
have shown is flagged (it ends in WARN: "did not reproduce"), so a
finding QEMU fixed does not stay in the registry unnoticed.  A finding
seen only at times says why instead (``not_flagged``), and is never
flagged.

README.rst ("Findings") tells each one's story; :data:`FINDINGS` is the
part a test run can check.
"""

from __future__ import annotations

import operator
import re
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import (
    Callable,
    Collection,
    Dict,
    FrozenSet,
    Literal,
    Optional,
    Pattern,
    Sequence,
    Tuple,
)

#: A QEMU version as ``query-version`` gives it: ``(major, minor, micro)``.
Version = Tuple[int, ...]

#: What a finding is, as README.rst classifies them.
Kind = Literal[
    "QEMU bug", "undocumented change", "QEMU or Debian bug", "QEMU or KVM bug", "KVM bug"
]

_COMPARISONS: Sequence[Tuple[str, Callable[[Version, Version], bool]]] = (
    (">=", operator.ge),
    ("<=", operator.le),
    (">", operator.gt),
    ("<", operator.lt),
)


def _number(text: str) -> Version:
    return tuple(int(part) for part in text.split("."))


@dataclass(frozen=True)
class VersionRange:
    """Which QEMU versions a side of a finding covers.

    Written like ``*`` (any), ``10.0`` (any 10.0.x), ``10.0.2`` (that
    release), ``>=9.2`` or ``<11.1`` (compared with the version padded
    with zeros, so ``<11.1`` takes 11.0.9 but not 11.1.0); several,
    separated by spaces, must all hold: ``>=9.2 <10.0.5``.
    """

    spec: str

    def __post_init__(self) -> None:
        try:
            if not self.spec.split():
                raise ValueError("empty")
            for part in self.spec.split():
                _covers(part, (0, 0, 0))
        except ValueError as exc:
            raise ValueError(
                f"invalid QEMU version range {self.spec!r}: accepted '*', a version "
                "such as '10.0' or '10.0.2', or one after >=, <=, > or <"
            ) from exc

    def covers(self, version: Version) -> bool:
        parts = self.spec.split()
        return bool(parts) and all(_covers(part, version) for part in parts)


def _covers(spec: str, version: Version) -> bool:
    if spec == "*":
        return True
    for sign, compare in _COMPARISONS:
        if spec.startswith(sign):
            bound = _number(spec[len(sign) :])
            width = max(len(bound), len(version))
            pad = (0,) * width
            return compare((version + pad)[:width], (bound + pad)[:width])
    prefix = _number(spec)
    return version[: len(prefix)] == prefix


@dataclass(frozen=True)
class Scope:
    """Where a finding shows: a migration from ``src`` to ``dst`` on ``arches``.

    Unless ``across`` is false, only between two different versions: a
    finding in how versions talk to each other says nothing of a version
    migrating to itself.
    """

    arches: FrozenSet[str]
    src: VersionRange
    dst: VersionRange
    across: bool = True

    def covers(self, arch: str, src: Version, dst: Version) -> bool:
        return (
            arch in self.arches
            and (src != dst or not self.across)
            and self.src.covers(src)
            and self.dst.covers(dst)
        )


#: Every architecture the suite runs, for findings in QEMU's common code.
ALL_ARCHES = "x86_64 aarch64 s390x ppc64 riscv64 loongarch64"


def scope(arches: str, src: str, dst: str, across: bool = True) -> Scope:
    """A :class:`Scope` from words: ``scope("ppc64", ">=9.2", "<9.2")``."""
    return Scope(frozenset(arches.split()), VersionRange(src), VersionRange(dst), across)


@dataclass(frozen=True)
class Finding:
    """One fault of QEMU's that a test run can run into."""

    #: Short and stable: tests, the job output and README name it.
    id: str
    #: What goes wrong, in one line.
    title: str
    kind: Kind
    #: Where it applies; any of them.
    scopes: Tuple[Scope, ...]
    #: What QEMU says when it happens: a line of its output or an error
    #: it answered.  Nothing else identifies the finding.
    shows: Pattern[str]
    #: Whether every migration in its scope hits it, so that none can
    #: complete there (one that does is flagged).  False for a finding of
    #: one feature, or one not seen every time.
    every_migration: bool
    #: Where its story is told.
    reported: str
    #: The tests that cannot pass in its scope: each run of them there
    #: hits it (or, where two findings' scopes overlap, the other one),
    #: so one that passes there is flagged.  As Avocado names them:
    #: ``Class.method``, or ``Class.*`` for every test of a class.  Only
    #: tests measured to hit it on both sides of its scope are named (a
    #: test that asks only the source is not, for a finding of either
    #: side).
    reproduced_by: Tuple[str, ...] = ()
    #: The accelerators ``reproduced_by`` holds under: a bug of TCG's
    #: shows under TCG only.
    reproduced_under: FrozenSet[str] = frozenset({"tcg", "kvm"})
    #: Why no test can be named in ``reproduced_by`` (the finding shows
    #: only at times, or depends on what a scope cannot name): such a
    #: finding is never flagged.
    not_flagged: str = ""

    def __post_init__(self) -> None:
        """Each finding says, one way only, which runs must hit it."""
        ways = [self.every_migration, bool(self.reproduced_by), bool(self.not_flagged)]
        if ways.count(True) != 1:
            raise ValueError(
                f"finding {self.id}: say which runs must hit it with exactly one of "
                "every_migration=True, reproduced_by (tests) or not_flagged (why none)"
            )

    def covers(self, arch: str, src: Version, dst: Version) -> bool:
        return any(s.covers(arch, src, dst) for s in self.scopes)

    def reproduced_by_test(self, test: str, accel: str) -> bool:
        """Whether ``test`` (``Class.method``) run under ``accel`` hits it every time in scope."""
        return accel in self.reproduced_under and any(
            fnmatchcase(test, pattern) for pattern in self.reproduced_by
        )

    def evidence(self, arch: str, src: Version, dst: Version, text: str) -> Optional[str]:
        """The line of ``text`` that shows this finding, if it applies here at all."""
        if not self.covers(arch, src, dst):
            return None
        match = self.shows.search(text)
        if match is None:
            return None
        start = text.rfind("\n", 0, match.start()) + 1
        end = text.find("\n", match.end())
        return text[start : end if end >= 0 else len(text)].strip()

    def describe(self) -> str:
        """``ppc64-slb-version (QEMU bug): <title>; see <where>``, for messages."""
        return f"{self.id} ({self.kind}): {self.title}; see {self.reported}"


_README = "README.rst, Findings"

FINDINGS: Tuple[Finding, ...] = (
    Finding(
        id="ppc64-slb-version",
        title="QEMU >= 9.2 sends cpu/slb as version 2, which older QEMUs refuse",
        kind="QEMU bug",
        scopes=(scope("ppc64", ">=9.2", "<9.2"),),
        shows=re.compile(r"cpu/slb: incoming version_id \d+ is too new for local version_id \d+"),
        every_migration=True,
        reported=_README,
    ),
    Finding(
        id="ppc64-icp-server-10.0.2",
        title="QEMU 9.2.0 to 10.0.4 neither send nor accept the XICS presenter (icp/server)",
        kind="QEMU bug",
        # Cause: QEMU 24ee9229fe31 (9.2.0) dropped icp_realize()'s vmstate
        # registration; f5738aedc217 put it back (10.0.5, 10.1.1; 10.1.0 has
        # the bug too).  Such a source sends nothing to refuse: its passes
        # lose the presenter's state unseen (README).
        scopes=(
            scope("ppc64", "<9.2", ">=9.2 <10.0.5"),
            scope("ppc64", ">=10.0.5", ">=9.2 <10.0.5"),
        ),
        shows=re.compile(r"Unknown savevm section or instance 'icp/server' \d+"),
        every_migration=True,
        reported=_README + "; QEMU f5738aedc217",
    ),
    Finding(
        id="aarch64-cpregs",
        title="an aarch64 CPU's list of system registers changes between QEMU versions",
        kind="QEMU bug",
        # 11.1.2 and 11.1.3 migrate to each other; every other pair fails.
        scopes=(scope("aarch64", "<11.1", "*"), scope("aarch64", "*", "<11.1")),
        shows=re.compile(
            r"Failed to load cpu:cpreg_vmstate_array_len"
            r"|system register 0x[0-9a-f]+ in the incoming stream but unknown on the destination"
            r"|post load hook failed for: cpu,"
            # 10.0 refusing a register 7.2 sends: the CPU's post_load fails
            # (EPERM); in postcopy the listen thread says so in between, and
            # at times the ram section that carried the CPU as well.
            r"|of device 'cpu'\n(?:[^\n]*\n){0,2}"
            r"[^\n]*load of migration failed: Operation not permitted"
        ),
        every_migration=True,
        reported=_README,
    ),
    Finding(
        id="aarch64-vmstate-assert",
        title="QEMU 10.0 aborts on an assertion loading an aarch64 CPU from 11.1",
        kind="QEMU bug",
        scopes=(scope("aarch64", ">=11.1", "10.0"),),
        shows=re.compile(r"Assertion .first_elem \|\| !n_elems \|\| !size. failed"),
        every_migration=True,
        reported=_README,
    ),
    Finding(
        id="riscv64-cpu-version",
        title="each QEMU release series refuses riscv64 CPU state of another (no compatibility)",
        kind="undocumented change",
        # target/riscv/machine.c raises the 'cpu' section's version_id and
        # minimum_version_id together whenever its fields change, and virt
        # has no versioned machine types to keep an old layout: 7.2 sends
        # version 5, 10.0.x 10, 11.1.x 12 (measured), and each refuses the
        # others' either way.  Between two releases of one series it holds.
        # An 11.1 destination in postcopy reports something else, and not
        # always the same (a stream error, or a vmstate version 4): traced
        # (vmstate_load_state_fail), it is the 'cpu' section, "too old".
        scopes=(
            scope("riscv64", "<10.0", ">=10.0"),
            scope("riscv64", ">=10.0", "<10.0"),
            scope("riscv64", "10.0", "11.1"),
            scope("riscv64", "11.1", "10.0"),
        ),
        shows=re.compile(
            r"cpu: incoming version_id \d+ is too old for local minimum version_id\s+\d+"
            r"|savevm: unsupported version \d+ for 'cpu' v\d+"
            r"|loadvm failed during postcopy: -22: Failed to load "
            r"(?:section ID: stream error: -22|vmstate version_id: \d+, ret: -22)"
        ),
        every_migration=True,
        reported=_README,
    ),
    Finding(
        id="riscv64-acpi-ramblock",
        title="riscv64 virt has ACPI tables from QEMU 8.0, a RAM block older QEMUs refuse",
        kind="undocumented change",
        # QEMU 8.0 gave the riscv virt machine ACPI (the 'acpi' machine
        # option, on by default), and with it the RAM block of QEMU's
        # ACPI table ROM; virt is not versioned, so nothing keeps it from
        # an 8.0+ source, and 7.2 cannot turn it off (it has no 'acpi'
        # option).  RAM is sent before the CPU, so this is what a 7.2
        # destination says first.
        scopes=(scope("riscv64", ">=8.0", "<8.0"),),
        shows=re.compile(r'Unknown ramblock "/rom@etc/acpi/tables", cannot accept migration'),
        every_migration=True,
        reported=_README,
    ),
    Finding(
        id="loongarch64-ram-sigfpe",
        title="QEMU 7.2 dies of SIGFPE saving loongarch64 RAM (16 KiB target pages, 4 KiB host)",
        kind="QEMU bug",
        # Measured on Debian's 7.2.22, every migration: the source's
        # migration thread executes 'div' by a register holding 0 in the
        # RAM saver under qemu_savevm_state_iterate (gdb; the binary has no
        # symbols).  7.2's ram_save_host_page() rounds the page index up to
        # a multiple of (host page size >> TARGET_PAGE_BITS), which is 0
        # when LoongArch's 16 KiB target page is larger than the host's.
        # QEMU 8.0 ("migration: Fix migration crash when target psize
        # larger than host", Peter Xu) handles such hosts; not measured
        # here: make qemu-versions fetches no loongarch64 emulator.
        # A test that loses the source's QMP before it looks at the exit
        # code knows only that the connection went: in this scope every
        # migration's source dies, so that is taken as the same evidence.
        scopes=(scope("loongarch64", "<8.0", "*", across=False),),
        shows=re.compile(
            r"^\s*src\d* \(QEMU [^)]*\): exited with -8;|^src: connection lost during '"
            r"|^the source QEMU exited \(-8\)",
            re.MULTILINE,
        ),
        every_migration=True,
        reported=_README,
    ),
    Finding(
        id="multifd-level-ignored",
        title="QEMU before 9.0 ignores multifd-zlib-level and multifd-zstd-level from QMP",
        kind="QEMU bug",
        # migrate_params_test_apply() and migrate_params_apply() copied
        # neither; fixed by QEMU b4014a2bf57c (9.0).  Compression runs at 1.
        scopes=(
            scope(ALL_ARCHES, "<9.0", "*", across=False),
            scope(ALL_ARCHES, "*", "<9.0", across=False),
        ),
        # HMP's migrate_set_parameter goes the same way (the HMP round trip
        # in tests/migration/interface.py says so in its own words).
        shows=re.compile(
            r"parameters set to \{'multifd-(?:zlib|zstd)-level': \d+\} "
            r"but read back \{'multifd-(?:zlib|zstd)-level': 1\}"
            r"|multifd-(?:zlib|zstd)-level: set to \d+, query-migrate-parameters reads 1\b"
        ),
        every_migration=False,
        reported=_README + "; QEMU b4014a2bf57c",
        # Both set the level on both sides.  Interface's HMP round trip
        # asks the source only: not named (a 7.2 destination's is missed).
        reproduced_by=("Multifd.test_zlib", "Multifd.test_zstd"),
    ),
    Finding(
        id="multifd-cancel-stuck",
        title="QEMU 7.2 can stay in 'cancelling' for good when a multifd migration is cancelled",
        kind="QEMU bug",
        # Multifd.test_cancel_then_migrate_again (16 channels, cancelled
        # right after the first dirty sync): the source reported
        # 'cancelling' for 120 s, its migration thread still counting
        # total-time; the destination had exited ("load of migration
        # failed").  A cancel must end.  6 of 60 runs of the test, three
        # at a time, x86_64 TCG, 7.2 on both sides (2026-12-02), and
        # ppc64 in make check; before, twice in make check (s390x,
        # x86_64).  Each time the source's
        # threads showed live_migration asleep in a futex and no
        # multifdsend_* thread left.  Read in 7.2's multifd.c: a sender
        # woken by another's write error leaves at the 'exiting' check
        # without doing its SYNC job or posting sem_sync, on which
        # multifd_send_sync_main() waits for good.
        scopes=(scope(ALL_ARCHES, "7.2", "*", across=False),),
        shows=re.compile(
            r"waiting for migration status cancelled on src; last seen: "
            r"\{[^}]*'status': 'cancelling'"
        ),
        every_migration=False,
        reported=_README,
        not_flagged="about one run in ten (6 of 60, x86_64, 7.2): a race between senders",
    ),
    Finding(
        id="suspended-guest-woken",
        title="QEMU before 9.0 does not keep a migrated guest suspended: it arrives running",
        kind="QEMU bug",
        # A source before 9.0 wakes the guest itself: migration_completion()
        # and postcopy_start() called qemu_system_wakeup_request(), then
        # stored RUNNING as the run state to send.  A destination before
        # 9.0 starts a postcopy running whatever it was sent, and cannot
        # tell that a guest stopped while suspended was suspended: `cont`
        # runs it.  QEMU b4e9ddc "migration: preserve suspended runstate"
        # and d3c86c99 "migration: propagate suspended runstate" (9.0, Steve
        # Sistare's series) fixed both sides.  Measured: 7.2 with itself,
        # 7.2 to 10.0.13 (every test), 10.0.13 to 7.2 (all but live precopy).
        scopes=(
            scope("x86_64", "<9.0", "*", across=False),
            scope("x86_64", "*", "<9.0", across=False),
        ),
        shows=re.compile(
            r"run state 'running', not 'suspended': "
            r"a guest migrated while suspended must stay suspended"
        ),
        every_migration=False,
        reported=_README + "; QEMU b4e9ddc, d3c86c99",
        # Not Suspend.test_precopy_live: a 10.0.13 source into 7.2 passes it.
        reproduced_by=("Suspend.test_precopy_not_live", "Suspend.test_postcopy"),
    ),
    Finding(
        id="postcopy-cancel-accepted",
        title="QEMU before 10.0 accepts migrate_cancel in postcopy, where no side holds the guest",
        kind="QEMU bug",
        # The source cancels (postcopy-active) or hangs in cancelling
        # (paused, recovering); the destination, having run the guest, waits
        # paused for pages that will never come.  QEMU "migration: Reject
        # qmp_migrate_cancel after postcopy" (Fabiano Rosas, 10.0) refuses it.
        scopes=(scope(ALL_ARCHES, "<10.0", "*", across=False),),
        shows=re.compile(r"migrate_cancel was accepted in postcopy-(?:active|paused|recover)\b"),
        every_migration=False,
        reported=_README,
        reproduced_by=(
            "Cancel.test_in_postcopy",
            "Cancel.test_in_postcopy_paused",
            "Cancel.test_in_postcopy_recovery",
        ),
    ),
    Finding(
        id="postcopy-recovery-dst-crash",
        title="QEMU before 8.2 crashes on the destination when a postcopy recovery's link breaks",
        kind="QEMU bug",
        # In postcopy-recover, postcopy_pause_incoming() could not move the
        # state back to postcopy-paused and went on with no file to read:
        # SIGSEGV.  Fixed by QEMU 0e99bb8f5441 "migration: Allow
        # RECOVER->PAUSED convertion for dest qemu" (8.2).
        scopes=(scope(ALL_ARCHES, "*", "<8.2", across=False),),
        # The destination's own account: it died of SIGSEGV once it had
        # entered postcopy-recover (any other crash is not this finding).
        shows=re.compile(
            r"^\s*dst\d* \(QEMU [^)]*\): exited with -11; "
            r"statuses \[[^\]]*'postcopy-recover'",
            re.MULTILINE,
        ),
        every_migration=False,
        reported=_README + "; QEMU 0e99bb8f5441",
        # A link that carried the recovery's first bytes: 3 of 3 runs.  One
        # that carried none (test_silent_then_broken): 2 of 3, not named.
        reproduced_by=("RecoveryFailures.test_broken_in_handshake",),
    ),
    Finding(
        id="postcopy-recovery-src-stuck",
        title="QEMU before 8.2 stays in postcopy-recover when a recovery's link breaks",
        kind="QEMU bug",
        # Nothing woke the migration thread waiting for the destination's
        # answer; QEMU f8c543e808f2 "migration: Allow network to fail even
        # during recovery" (8.2) kicks it back to postcopy-paused.
        scopes=(scope(ALL_ARCHES, "<8.2", "*", across=False),),
        shows=re.compile(
            r"waiting for both sides in postcopy-paused; last seen: \{'src': 'postcopy-recover'"
        ),
        every_migration=False,
        reported=_README + "; QEMU f8c543e808f2",
        reproduced_by=("RecoveryFailures.test_broken_in_handshake",),
    ),
    Finding(
        id="silent-recovery-link-dst-exits",
        title="QEMU 10.1 on exits on the destination when a recovery's link closes before a byte",
        kind="QEMU bug",
        # From 10.1 (00f3fcef1981, "migration: refactor channel discovery
        # mechanism") the destination peeks at the first bytes of every
        # incoming channel, in the main loop; a channel closed before them
        # fails the incoming migration, and QEMU exits even in
        # postcopy-paused: the guest is lost.  No fix released as of 11.1.
        scopes=(scope(ALL_ARCHES, "*", ">=10.1", across=False),),
        # The destination's own account: exited from postcopy-paused to
        # failed, having said so (any other early close is not this finding).
        shows=re.compile(
            r"^\s*dst\d* \(QEMU [^)]*\): exited with 1; "
            r"statuses \[[^\]]*'postcopy-paused', 'failed'\]; printed: .*Failed to peek at channel",
            re.MULTILINE,
        ),
        every_migration=False,
        reported=_README + "; QEMU 00f3fcef1981",
        reproduced_by=("RecoveryFailures.test_silent_then_broken",),
    ),
    Finding(
        id="mapped-ram-ignore-shared",
        title="QEMU 9.0 to 10.x cannot save a mapped-ram file with x-ignore-shared",
        kind="QEMU bug",
        # mapped_ram_setup_ramblock() and ram_save_file_bmap() walked every
        # migratable RAM block, the ignored (shared) ones too, whose dirty
        # bitmaps were never allocated: writing one fails with EFAULT.
        # QEMU 0b510b51b634 "migration: Fix writing mapped_ram + ignore_shared
        # snapshots" (11.0) skips them; b043f6df273f fixed loading such a
        # file.  Measured: 10.0.13 fails, 11.1.3 saves and loads it.
        scopes=(scope(ALL_ARCHES, ">=9.0 <11.0", "*", across=False),),
        shows=re.compile(
            r"(?:Failed to write bitmap to file: )?Unable to write to file: Bad address"
        ),
        every_migration=False,
        reported=_README + "; QEMU 0b510b51b634",
        reproduced_by=("MappedRam.test_ignore_shared",),
    ),
    Finding(
        id="vcpu-dirty-limit-stalls-guest",
        title="this host's KVM (kvm_pvm) overfills the dirty ring, and the vCPU then loops "
        "on ring-full exits for good",
        kind="KVM bug",
        # Traced (7.2.22, 10.0.13, 11.1.3 alike; README): kvm_pvm emulates
        # our guest, which runs without paging, in batches of instructions
        # (pvm_emul_batch=1024), and its emulator's writes push dirty-ring
        # entries past the soft limit, past the ring's size: the kernel's own
        # WARNING in kvm_dirty_ring_push ("It should never get full"), called
        # from pvm_emulate_insn_scrubbed.  The ring wraps; QEMU harvests all
        # 4096 entries and its read index falls behind KVM's write index, at
        # slots KVM never wrote.  Each KVM_EXIT_DIRTY_RING_FULL then harvests
        # nothing, so QEMU never calls KVM_RESET_DIRTY_RINGS and KVM, still
        # full, exits again: the vCPU thread spins (about a million exits in
        # 40 s) and the guest counts no page more, limit or no limit, cancel
        # or no cancel.  No throttle sleep happens (no dirtylimit_vcpu_execute).
        # Any dirty logging over the ring does it: calc-dirty-rate alone, a
        # migration's first pass.  It shows as the guest not running once
        # what held it back is gone, with QEMU's trace (REAP_TRACE in
        # tests/migration/dirty.py) of a harvest of the whole 4096-entry ring,
        # which a KVM that stops the vCPU at its soft limit never allows.
        scopes=(scope("x86_64", "*", "*", across=False),),
        shows=re.compile(
            r"(?:^after cancel-vcpu-dirty-limit"
            r"|reached 'pre-switchover' before the dirty limit to throttle; after migrate_cancel)"
            r", the guest does not run on src: timed out after [\d.]+ s waiting for a new 'B'"
            r"(?=[\s\S]*\bkvm_dirty_ring_reap reaped 4096 pages\b)",
            re.MULTILINE,
        ),
        every_migration=False,
        reported=_README,
        not_flagged="a bug of this host's KVM (kvm_pvm), which a scope cannot name: "
        "every run here, none on a KVM that keeps the dirty ring's soft limit",
    ),
    Finding(
        id="colo-return-path-reader",
        title="QEMU before 11.1 fails COLO at once: its return-path reader takes COLO messages",
        kind="QEMU bug",
        # COLO speaks over the migration's return path: the secondary's
        # first message is checkpoint-ready, COLOMessage 0, four zero
        # bytes (be32).  With return-path set, 7.2.22 and 10.0.13 still run
        # the source's return-path thread on that channel; it reads the
        # zeros as a message of type 0 (MIG_RP_MSG_INVALID), length 0, and
        # fails the migration while the secondary is in 'colo'.  Without
        # return-path (the old COLO-FT.txt recipe) both accept x-colo, and
        # the primary deadlocks at its first checkpoint: 7.2.22's migration
        # thread (in migrate_start_colo_process) and main loop wait for the
        # BQL, QMP answers nothing (gdb, measured).  11.1.2 and 11.1.3
        # refuse x-colo without return-path ("Capability 'x-colo' requires
        # capability 'return-path'") and replicate with it; the releases
        # between 10.0 and 11.1 were not measured.
        scopes=(scope(ALL_ARCHES, "<11.1", "*", across=False),),
        shows=re.compile(
            r"^\s*src\d* \(QEMU [^)]*\): status failed[^\n]*printed: [^\n]*"
            r"Received invalid message 0x0000 length 0x0000[^\n]*\n"
            r"\s*dst\d* \(QEMU [^)]*\): status colo;",
            re.MULTILINE,
        ),
        every_migration=False,
        reported=_README,
        # Every test starts COLO; into an 11.1 secondary it fails on
        # colo-enable-command-dropped instead.
        reproduced_by=("Colo.*",),
    ),
    Finding(
        id="colo-exit-reason-race",
        title="a COLO failover asked for with x-colo-lost-heartbeat can be announced as an error",
        kind="QEMU bug",
        # migration/colo.c: primary_vm_do_failover() and
        # secondary_vm_do_failover() shut the COLO channels down (waking
        # the COLO thread blocked on them) before they move the failover
        # state from active to completed; the woken thread picks the
        # COLO_EXIT reason from that state at its 'out:' label, and reads
        # 'active' (reason 'error') when it gets there first.  Right after,
        # query-colo-status says 'request'.  Measured with 11.1.3 on
        # x86_64, on both sides, plain and multifd (1 run in 4 or 6).
        scopes=(scope(ALL_ARCHES, "*", "*", across=False),),
        shows=re.compile(
            r"COLO_EXIT reason 'error', not 'request', for the (?:primary|secondary)'s "
            r"failover \(query-colo-status: reason 'request'\)"
        ),
        every_migration=False,
        reported=_README,
        not_flagged="a race: about 1 failover in 5 (11.1.3, x86_64, 1 run in 4 or 6)",
    ),
    Finding(
        id="colo-enable-command-dropped",
        title="COLO between QEMU 11.1 and older: 11.1 neither sends nor takes MIG_CMD_ENABLE_COLO",
        kind="undocumented change",
        # Measured on x86_64: a 10.0.13 primary announces COLO with the
        # stream command ENABLE_COLO (0x8); an 11.1.3 secondary refuses it
        # ("MIG_CMD 0x8 deprecated (len 0x0)") and exits.  An 11.1.3
        # primary sends no such command, so a 10.0.13 secondary, set for
        # x-colo, takes the stream for a plain migration and completes it
        # (statuses setup, active, completed) while the primary enters
        # 'colo': both run the guest.  Within one release series COLO works.
        scopes=(scope(ALL_ARCHES, "<11.1", ">=11.1"), scope(ALL_ARCHES, ">=11.1", "<11.1")),
        shows=re.compile(
            r"load of migration failed: Invalid argument: MIG_CMD 0x8 deprecated"
            r"|^not both in colo: dst: migration completed$",
            re.MULTILINE,
        ),
        every_migration=False,
        reported=_README,
        reproduced_by=("Colo.*",),
    ),
    # Three QEMU bugs in a vCPU's migrated state: the migration completes,
    # and the vCPU comparison (migtest.vcpu_state.KNOWN_DIFFERENCES) lets
    # only the bits each one loses differ; a test that saw one ends in
    # WARN naming it.  Found by that comparison (issue "detection power II").
    Finding(
        id="s390x-tcg-condition-code",
        title="s390x under TCG loses the PSW condition code in migration",
        kind="QEMU bug",
        # target/s390x/machine.c saves env.psw.mask as it is; under TCG the
        # condition code lives in cc_op/cc_src/cc_dst, not folded in.
        scopes=(scope("s390x", "*", "*", across=False),),
        shows=re.compile(r"CPU#\d+ PSW\.mask: .*\(known QEMU finding s390x-tcg-condition-code"),
        every_migration=False,
        reported=_README,
        # The two that did not (job 2026-12-02T00.24, PostcopyPreempt and
        # Postcopy paused-destination tests) had both PSWs at 0x90, CC 0.
        not_flagged="shows only when the source's vCPU stops with a condition code "
        "other than 0, the destination's: our guest's is 0 right after its SERVC "
        "(printing a character), where a vCPU that waited for QEMU's big lock in it "
        "stops; 2 of 85 passing runs that compared vCPUs stopped there, both postcopy "
        "into a paused destination (10.0.13)",
    ),
    Finding(
        id="ppc64-msr-me-inverted",
        title="ppc64 MSR[ME] arrives inverted on a destination of QEMU 9.0 or later",
        kind="QEMU bug",
        # post_load_update_msr() flips msr_mask's bits first; hreg_store_msr()
        # keeps the current (flipped) ME since "target/ppc: Prevent
        # supervisor from modifying MSR[ME]" (2024).
        scopes=(scope("ppc64", "*", ">=9.0", across=False),),
        shows=re.compile(r"CPU#\d+ MSR: .*\(known QEMU finding ppc64-msr-me-inverted"),
        every_migration=False,
        reported=_README,
        # Every test of Precopy compares the paused destination's vCPUs.
        reproduced_by=("Precopy.*",),
        reproduced_under=frozenset({"tcg"}),
    ),
    Finding(
        id="ppc64-decr-before-8.2",
        title="ppc64 DECR arrives as 0 from a source older than 8.2 (TCG)",
        kind="QEMU bug",
        # "target/ppc: Migrate DECR SPR" (8.2) loads the decrementer from a
        # slot that older sources never fill.
        scopes=(scope("ppc64", "<8.2", ">=8.2"),),
        shows=re.compile(r"CPU#\d+ DECR: .*\(known QEMU finding ppc64-decr-before-8\.2"),
        every_migration=False,
        reported=_README,
        reproduced_by=("Precopy.*",),
        reproduced_under=frozenset({"tcg"}),
    ),
)


#: Each finding by its id.
FINDINGS_BY_ID: Dict[str, Finding] = {finding.id: finding for finding in FINDINGS}


@dataclass(frozen=True)
class Hit:
    """A finding, and the line that showed it."""

    finding: Finding
    line: str

    def __str__(self) -> str:
        return f"known QEMU finding {self.finding.describe()}; it showed as: {self.line}"


def explain(
    arch: str,
    src: Version,
    dst: Version,
    text: str,
    findings: Optional[Sequence[Finding]] = None,
) -> Optional[Hit]:
    """The first finding that ``text`` (a failure and what QEMU printed) shows.

    ``findings`` defaults to :data:`FINDINGS` as it is at the call.
    """
    for finding in FINDINGS if findings is None else findings:
        line = finding.evidence(arch, src, dst, text)
        if line is not None:
            return Hit(finding, line)
    return None


@dataclass(frozen=True)
class Miss:
    """A finding that a test which passed should have hit, and what says so."""

    finding: Finding
    why: str

    def __str__(self) -> str:
        return (
            f"known QEMU finding {self.finding.id} did not reproduce: {self.why}; "
            "if QEMU fixed it, narrow its scope in lib/migtest/findings.py"
        )


def _dotted(version: Version) -> str:
    return ".".join(map(str, version))


def not_reproduced(
    test: str,
    accel: str,
    arch: str,
    src: Version,
    dst: Version,
    *,
    completed: bool,
    shown: Collection[str] = (),
    findings: Optional[Sequence[Finding]] = None,
) -> Tuple[Miss, ...]:
    """The findings that ``test``, which passed here, should have hit.

    A finding the test saw and allowed (``shown``) reproduced; any other
    in scope is missed if it claims every migration and one completed,
    or if it names the test in ``reproduced_by`` (under ``accel``).

    :param test: the test that passed, ``Class.method``.
    :param completed: whether a migration of the test completed.
    :param shown: the ids of the findings its checks saw and allowed
        (:meth:`migtest.pair.MigrationPair.note_finding`).
    :param findings: defaults to :data:`FINDINGS` as it is at the call.
    """
    where = f"from QEMU {_dotted(src)} to {_dotted(dst)} on {arch}"
    misses = []
    for finding in FINDINGS if findings is None else findings:
        if finding.id in shown or not finding.covers(arch, src, dst):
            continue
        if finding.every_migration and completed:
            misses.append(Miss(finding, f"a migration {where} completed"))
        elif finding.reproduced_by_test(test, accel):
            misses.append(
                Miss(finding, f"{test}, which hits it every time {where} under {accel}, passed")
            )
    return tuple(misses)
