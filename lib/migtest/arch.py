"""What each guest architecture needs: the one place that knows.

A profile is data, not code: adding an architecture means adding one
profile here and one guest under ``guests/``, and nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Tuple

from .errors import ConfigError
from .guests import guest_path

MiB = 1 << 20
#: Where RAM starts on aarch64's virt machine.
AARCH64_RAM = 0x40000000


@dataclass(frozen=True)
class ArchProfile:
    """How to run the test guest of one architecture under QEMU."""

    #: QEMU's name for the architecture, as in ``qemu-system-<name>``.
    name: str
    #: The ``-machine`` value, options included.
    machine: str
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
    #: The ``-cpu`` model for each accelerator that can run this guest.
    cpus: Mapping[str, Optional[str]] = field(default_factory=dict)
    #: Extra arguments, for silencing irrelevant warnings and the like.
    extra_args: Tuple[str, ...] = ()
    #: ``platform.machine()`` of hosts where KVM can run this guest.
    kvm_hosts: Tuple[str, ...] = ()

    @property
    def binary(self) -> str:
        """The default QEMU binary name for this architecture."""
        return f"qemu-system-{self.name}"

    @property
    def accelerators(self) -> Tuple[str, ...]:
        """The accelerators this profile knows how to use."""
        return tuple(self.cpus)

    def guest_file(self) -> Path:
        """The committed guest binary for this architecture."""
        return guest_path(self.name, self.guest)

    def qemu_args(self, accel: str, guest: Path, shared_memory: Optional[Path] = None) -> List[str]:
        """The arguments that boot ``guest`` (a copy of :meth:`guest_file`) with ``accel``.

        QEMU locks a disk image for writing, so each pair boots its own copy.

        :param shared_memory: back guest RAM with this file, mapped shared,
            so that another QEMU can map the same RAM.
        """
        if accel not in self.cpus:
            raise ConfigError("accel", accel, f"one of {', '.join(self.cpus)} for {self.name}")
        if self.guest_option == "-drive":
            boot = ["-drive", f"file={guest},format=raw,if=ide"]
        else:
            boot = [self.guest_option, str(guest)]
        cpu = self.cpus[accel]
        machine, memory = self.machine, []
        if shared_memory is not None:
            machine += ",memory-backend=ram"
            memory = [
                "-object",
                f"memory-backend-file,id=ram,size={self.memory_mib}M,"
                f"mem-path={shared_memory},share=on",
            ]
        return [
            "-accel", accel,
            "-machine", machine,
            *memory,
            *(["-cpu", cpu] if cpu else []),
            "-m", f"{self.memory_mib}M",
            *boot,
            *self.extra_args,
        ]  # fmt: skip


PROFILES: Dict[str, ArchProfile] = {
    profile.name: profile
    for profile in (
        ArchProfile(
            name="x86_64",
            machine="pc",
            memory_mib=150,
            # Below 640 KiB, and above the legacy VGA and ROM hole.
            ram_ranges=((0, 0xA0000), (1 * MiB, 150 * MiB)),
            guest="guest.img",
            guest_option="-drive",
            test_range=(1 * MiB, 100 * MiB),
            # The default qemu64 model warns about 'pni' under KVM, and
            # '-cpu host' aborts under some software KVMs; this works on both.
            cpus={"tcg": None, "kvm": "max,-arch-capabilities"},
            kvm_hosts=("x86_64",),
        ),
        ArchProfile(
            name="aarch64",
            # The default CPU is 32-bit; gic-version=max works for TCG and KVM.
            machine="virt,gic-version=max",
            memory_mib=150,
            ram_ranges=((AARCH64_RAM, AARCH64_RAM + 150 * MiB),),
            guest="guest.bin",
            guest_option="-kernel",
            test_range=(AARCH64_RAM + 1 * MiB, AARCH64_RAM + 100 * MiB),
            cpus={"tcg": "max", "kvm": "host"},
            kvm_hosts=("aarch64",),
        ),
        ArchProfile(
            name="s390x",
            machine="s390-ccw-virtio",
            memory_mib=128,
            ram_ranges=((0, 128 * MiB),),
            guest="guest.elf",
            guest_option="-bios",
            test_range=(1 * MiB, 100 * MiB),
            cpus={"tcg": None, "kvm": None},
            kvm_hosts=("s390x",),
        ),
        ArchProfile(
            name="ppc64",
            # The cap-* options silence TCG's warnings about speculation
            # mitigations it cannot emulate.  VOF boots a small ELF in ~60 ms
            # (SLOF takes seconds), and its default kernel address, 4 MiB,
            # is inside the test range.
            machine=(
                "pseries,cap-cfpc=broken,cap-sbbc=broken,cap-ibs=broken,"
                "cap-ccf-assist=off,x-vof=on,kernel-addr=0x7000000"
            ),
            memory_mib=256,
            ram_ranges=((0, 256 * MiB),),
            guest="guest.elf",
            guest_option="-kernel",
            test_range=(1 * MiB, 100 * MiB),
            cpus={"tcg": None, "kvm": None},
            kvm_hosts=("ppc64", "ppc64le"),
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
