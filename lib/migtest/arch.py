"""What each guest architecture needs: the one place that knows.

A profile is data, not code: adding an architecture means adding one
profile here and one guest under ``guests/``, and nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Tuple

from .errors import ConfigError, Unavailable
from .guests import guest_path

MiB = 1 << 20
#: Where RAM starts on aarch64's virt machine.
AARCH64_RAM = 0x40000000
#: Where RAM starts on riscv64's virt machine.
RISCV64_RAM = 0x80000000
#: Where loongarch64's virt machine maps RAM beyond its first 256 MiB.
LOONGARCH64_HIGH_RAM = 0x90000000

#: Options of the accelerator, as ``(name, value)`` pairs after ``-accel NAME``.
AccelOptions = Tuple[Tuple[str, str], ...]
#: KVM's dirty ring of 4096 entries per vCPU (QEMU's own tests use that
#: size): KVM then logs dirty pages in a ring per vCPU instead of a bitmap.
DIRTY_RING: AccelOptions = (("dirty-ring-size", "4096"),)


@dataclass(frozen=True)
class ArchProfile:
    """How to run the test guest of one architecture under QEMU."""

    #: QEMU's name for the architecture, as in ``qemu-system-<name>``.
    name: str
    #: The machine type's unversioned alias (``pc``, ``virt``...).  Each QEMU
    #: resolves it to its own newest versioned type, whose devices and
    #: defaults differ from version to version, so a migration between two
    #: versions runs a versioned type both know instead (see
    #: :func:`migtest.host.common_machine_type`).
    machine_type: str
    #: The machine's options, in order, as ``(name, value)`` pairs: they are
    #: the same whichever version of the machine type runs.
    machine_options: Tuple[Tuple[str, str], ...]
    #: Guest RAM, in MiB.
    memory_mib: int
    #: Guest RAM compared byte for byte between source and destination,
    #: as ``(start, end)`` ranges: all of RAM but what firmware and QEMU's
    #: option ROMs own (x86's KVM vapic ROM is rewritten on the destination
    #: when the migration is loaded).
    ram_ranges: Tuple[Tuple[int, int], ...]
    #: The guest program, relative to ``guests/<name>/``.
    guest: str
    #: How the guest is handed to QEMU: ``-kernel``, ``-bios`` or ``-drive``.
    guest_option: str
    #: The range the guest writes its counters in: ``[start, end)``.
    test_range: Tuple[int, int]
    #: The ``-cpu`` model for each accelerator that can run this guest.  A
    #: named model, not ``max`` nor the machine's default: both can change
    #: from one QEMU version to the next, and a migration needs the same CPU
    #: on both sides.
    cpus: Mapping[str, str] = field(default_factory=dict)
    #: Extra arguments, for silencing irrelevant warnings and the like.
    extra_args: Tuple[str, ...] = ()
    #: ``platform.machine()`` of hosts where KVM can run this guest.
    kvm_hosts: Tuple[str, ...] = ()
    #: The guest that also suspends itself once, after its first pass, and
    #: counts on when woken (``guests/README``), relative to
    #: ``guests/<name>/``; ``None`` where this architecture has none.
    suspending_guest: Optional[str] = None

    @property
    def binary(self) -> str:
        """The default QEMU binary name for this architecture."""
        return f"qemu-system-{self.name}"

    @property
    def accelerators(self) -> Tuple[str, ...]:
        """The accelerators this profile knows how to use."""
        return tuple(self.cpus)

    def guest_file(self, guest: Optional[str] = None) -> Path:
        """The committed guest binary ``guest`` (by default :attr:`guest`)."""
        return guest_path(self.name, guest or self.guest)

    def require_suspending_guest(self) -> str:
        """The file name of the guest that suspends itself.

        :raise Unavailable: this architecture has no such guest; not
            expected, so a CANCEL even in strict mode.
        """
        if self.suspending_guest is None:
            raise Unavailable(f"{self.name} has no test guest that can suspend", expected=False)
        return self.suspending_guest

    def machine_value(
        self, machine_type: Optional[str] = None, extra: Tuple[Tuple[str, str], ...] = ()
    ) -> str:
        """The ``-machine`` value: the one place that joins type and options.

        :param machine_type: the type to run, usually a versioned one both
            QEMUs know; by default the profile's alias.
        :param extra: options of this run only (a memory backend), after the
            profile's own.
        """
        options = [f"{name}={value}" for name, value in (*self.machine_options, *extra)]
        return ",".join([machine_type or self.machine_type, *options])

    def qemu_args(
        self,
        accel: str,
        guest: Path,
        shared_memory: Optional[Path] = None,
        *,
        machine_type: Optional[str] = None,
        cpu: Optional[str] = None,
        accel_options: AccelOptions = (),
    ) -> List[str]:
        """The arguments that boot ``guest`` (a copy of :meth:`guest_file`) with ``accel``.

        QEMU locks a disk image for writing, so each pair boots its own copy.

        :param shared_memory: back guest RAM with this file, mapped shared,
            so that another QEMU can map the same RAM.
        :param machine_type: the machine type to run instead of the alias.
        :param cpu: the ``-cpu`` value to use instead of the profile's model.
        :param accel_options: options of ``accel`` (:data:`DIRTY_RING`).
        :raise ConfigError: this profile has no CPU model for ``accel``.
        """
        if accel not in self.cpus:
            raise ConfigError("accel", accel, f"one of {', '.join(self.cpus)} for {self.name}")
        if self.guest_option == "-drive":
            boot = ["-drive", f"file={guest},format=raw,if=ide"]
        else:
            boot = [self.guest_option, str(guest)]
        backend: Tuple[Tuple[str, str], ...] = ()
        memory: List[str] = []
        if shared_memory is not None:
            backend = (("memory-backend", "ram"),)
            memory = [
                "-object",
                f"memory-backend-file,id=ram,size={self.memory_mib}M,"
                f"mem-path={shared_memory},share=on",
            ]
        accel_value = ",".join([accel, *(f"{name}={value}" for name, value in accel_options)])
        return [
            "-accel", accel_value,
            "-machine", self.machine_value(machine_type, backend),
            *memory,
            "-cpu", cpu or self.cpus[accel],
            "-m", f"{self.memory_mib}M",
            *boot,
            *self.extra_args,
        ]  # fmt: skip


PROFILES: Dict[str, ArchProfile] = {
    profile.name: profile
    for profile in (
        ArchProfile(
            name="x86_64",
            machine_type="pc",
            machine_options=(),
            memory_mib=150,
            # Below 640 KiB, and above the legacy VGA and ROM hole.
            ram_ranges=((0, 0xA0000), (1 * MiB, 150 * MiB)),
            guest="guest.img",
            guest_option="-drive",
            test_range=(1 * MiB, 100 * MiB),
            # qemu64 is the pc machines' default, named so that it stays the
            # model whatever a later machine type picks.  Under KVM without
            # pni (SSE3): software KVMs (kvm_pvm) lack it and QEMU warns about
            # each missing feature.  'max' and 'host' mean whatever the host
            # and the QEMU version make them, and 'host' aborts under some
            # software KVMs.
            cpus={"tcg": "qemu64", "kvm": "qemu64,-pni"},
            kvm_hosts=("x86_64",),
            # ACPI S3 through SeaBIOS's PIIX4 PM ports and the FACS.
            suspending_guest="guest-s3.img",
        ),
        ArchProfile(
            name="aarch64",
            machine_type="virt",
            # gic-version=max works for TCG and KVM.
            machine_options=(("gic-version", "max"),),
            memory_mib=150,
            ram_ranges=((AARCH64_RAM, AARCH64_RAM + 150 * MiB),),
            guest="guest.bin",
            guest_option="-kernel",
            test_range=(AARCH64_RAM + 1 * MiB, AARCH64_RAM + 100 * MiB),
            # The machine's default CPU (cortex-a15) is 32-bit, and 'max'
            # grows with every QEMU version.  cortex-a57 is a fixed ARMv8.0
            # model present in every version we run; of the models tried it
            # has the fewest system registers that differ between 7.2 and
            # 10.0, yet no model migrates between those two (README,
            # findings).  KVM on Arm runs the host's own CPU only.
            cpus={"tcg": "cortex-a57", "kvm": "host"},
            kvm_hosts=("aarch64",),
        ),
        ArchProfile(
            name="s390x",
            machine_type="s390-ccw-virtio",
            machine_options=(),
            memory_mib=128,
            ram_ranges=((0, 128 * MiB),),
            guest="guest.elf",
            guest_option="-bios",
            test_range=(1 * MiB, 100 * MiB),
            # The machines' defaults, named: 'qemu' is migration-safe (its
            # features are fixed per versioned machine type); KVM's 'host' is
            # the host's own CPU, and a named model might be too new for it.
            cpus={"tcg": "qemu", "kvm": "host"},
            kvm_hosts=("s390x",),
        ),
        ArchProfile(
            name="ppc64",
            machine_type="pseries",
            # The cap-* options silence TCG's warnings about speculation
            # mitigations it cannot emulate.  VOF boots a small ELF in ~60 ms
            # (SLOF takes seconds), and its default kernel address, 4 MiB,
            # is inside the test range.
            machine_options=(
                ("cap-cfpc", "broken"),
                ("cap-sbbc", "broken"),
                ("cap-ibs", "broken"),
                ("cap-ccf-assist", "off"),
                ("x-vof", "on"),
                ("kernel-addr", "0x7000000"),
            ),
            # The least pseries takes: its RAM must be a whole number of
            # 256 MiB blocks (QEMU's spapr_validate_node_memory(), every
            # pseries since 2.5; 7.2, 10.0.13 and 11.1.3 refuse 128M-192M),
            # although the guest would fit in 128 MiB.
            memory_mib=256,
            ram_ranges=((0, 256 * MiB),),
            guest="guest.elf",
            guest_option="-kernel",
            test_range=(1 * MiB, 100 * MiB),
            # power9_v2.0 is what pseries-7.2 runs in QEMU 7.2, but QEMU
            # 10.0's pseries-7.2 defaults to power9_v2.2 (absent from 7.2),
            # 'power9' is an alias of either, and power10_v2.0's PVR differs
            # between 7.2 and 10.0.  KVM on POWER runs the host's own CPU.
            cpus={"tcg": "power9_v2.0", "kvm": "host"},
            kvm_hosts=("ppc64", "ppc64le"),
        ),
        ArchProfile(
            name="riscv64",
            # virt has no versioned machine types: every QEMU runs its own
            # 'virt', which is all a migration between versions can use.
            machine_type="virt",
            machine_options=(),
            memory_mib=128,
            # All of RAM: QEMU's boot ROM (at 0x1000) is outside it, and
            # the device tree QEMU writes into RAM's top 2 MiB is guest RAM
            # like any other, migrated with the rest.
            ram_ranges=((RISCV64_RAM, RISCV64_RAM + 128 * MiB),),
            guest="guest.elf",
            # The guest is the firmware, in M-mode at the start of RAM: no
            # OpenSBI (its banner, and a different one in every version).
            guest_option="-bios",
            test_range=(RISCV64_RAM + 1 * MiB, RISCV64_RAM + 100 * MiB),
            # sifive-u54 is a fixed RV64GC core in every version we run,
            # where 'rv64' (the base model) and 'max' gain extensions from
            # one QEMU version to the next.  KVM on RISC-V runs the host's
            # own CPU.
            cpus={"tcg": "sifive-u54", "kvm": "host"},
            kvm_hosts=("riscv64",),
        ),
        ArchProfile(
            name="loongarch64",
            # Not versioned either, like riscv64's.
            machine_type="virt",
            machine_options=(),
            # QEMU 7.2 refuses less than 1 GiB on this machine.
            memory_mib=1024,
            # Low RAM is the first 256 MiB; the rest is mapped at 0x90000000.
            ram_ranges=((0, 256 * MiB), (LOONGARCH64_HIGH_RAM, LOONGARCH64_HIGH_RAM + 768 * MiB)),
            guest="guest.bin",
            # The guest is the firmware: the CPU starts in it after reset,
            # in direct address mode; no EFI firmware, no kernel loader.
            guest_option="-bios",
            # From 32 MiB: QEMU puts its device tree at 1 MiB (7.2).
            test_range=(32 * MiB, 131 * MiB),
            # The only model 7.2 has (its virt machine refuses any other
            # under TCG), by the name its -cpu help lists ('la464' works
            # too); 'max' grows with later versions.  KVM is left out: not
            # run, and its CPU models not checked.
            cpus={"tcg": "la464-loongarch-cpu"},
        ),
    )
}


#: The architecture tests run when no ``arch`` parameter says otherwise.
DEFAULT_ARCH = "x86_64"


def get_profile(name: str) -> ArchProfile:
    """The profile called ``name``.

    :raise ConfigError: no such architecture.
    """
    try:
        return PROFILES[name]
    except KeyError:
        raise ConfigError("arch", name, f"one of {', '.join(sorted(PROFILES))}") from None
