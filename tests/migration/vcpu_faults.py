"""What the vCPU comparison catches: every register faulted on a migrated destination."""

import json
from pathlib import Path
from typing import Dict, Sequence

from migtest.errors import Unavailable
from migtest.gdbstub import GdbClient, gdb_options
from migtest.scenarios import live_precopy
from migtest.test import MigrationTest
from migtest.vcpu_faults import Measurement, measure
from migtest.vcpu_state import Run
from migtest.verify import assert_run_state, assert_vcpus_identical, snapshot_vcpus

#: The destination's gdbstub socket, in the workdir (removed with the pair's sockets).
GDB_SOCKET = "dst-gdb.sock"
#: Where the figures go, in the test's output directory.
FIGURES_FILE = "vcpu-faults.json"

#: Architectures whose test guest runs on vCPU 0 alone when the machine
#: has two: the second waits where the machine leaves it, so its state is
#: still the reset state, migrated as any other.  riscv64's harts all
#: start in the firmware, the guest: two would count in the same pages.
SECOND_VCPU_WAITS: Dict[str, str] = {
    "x86_64": "an application processor waits for an INIT-SIPI",
    "aarch64": "virt starts secondary CPUs powered off (PSCI CPU_ON starts them)",
    "s390x": "only the IPL CPU starts; the others stay stopped",
    "ppc64": "pseries starts secondary CPUs stopped (RTAS start-cpu starts them)",
}


class VcpuFaults(MigrationTest):
    """Each register the gdbstub knows, changed by one bit on the paused destination.

    After a live precopy whose destination passes the vCPU comparison,
    every register of one of the destination's vCPUs is changed in turn
    through QEMU's gdbstub; the comparison must fail naming it, unless HMP
    does not show it (reported: the comparison's blind spot) or a known
    difference allows it (reported with its reason).  Restored, the
    comparison passes again, and the destination then passes every check
    of a migration, running.  The figures go to ``vcpu-faults.json``.

    :avocado: enable
    :avocado: tags=migration,vcpu,precopy,unix
    :avocado: tags=arch:x86_64,arch:aarch64,arch:s390x,arch:ppc64,arch:riscv64
    """

    def test_each_register(self) -> None:
        """Every register faulted on vCPU 0: caught, or shown not to be comparable."""
        self.fault_each_register(0, ())

    def test_each_register_second_vcpu(self) -> None:
        """The same on vCPU 1 of two: the stub's vCPU selection and the comparison's CPU#1.

        :avocado: tags=smp
        """
        arch = self.suite.profile.name
        if arch not in SECOND_VCPU_WAITS:
            raise Unavailable(f"{arch}'s test guest would run on every vCPU", expected=False)
        self.log.info("vCPU 1 of %s: %s", arch, SECOND_VCPU_WAITS[arch])
        self.fault_each_register(1, ("-smp", "2"))

    def fault_each_register(self, cpu: int, args: Sequence[str]) -> Measurement:
        """Migrate, fault each register of vCPU ``cpu``, verify; both sides get ``args``."""
        pair = self.start_pair(src_args=args, dst_args=[*args, *gdb_options("gdb", GDB_SOCKET)])
        live_precopy(pair, "unix")
        assert_vcpus_identical(pair)
        source = snapshot_vcpus(pair.src)
        run = Run(pair.profile.name, pair.params.accel, pair.src.version, pair.dst.version)
        with GdbClient(pair.workdir, GDB_SOCKET) as gdb:
            measurement = measure(gdb, cpu, lambda: snapshot_vcpus(pair.dst), source, run)
        assert_run_state(pair.dst, "paused", "the gdbstub was left without a detach, which resumes")
        figures: Dict[str, object] = {
            "qemu": {"src": pair.src.version_text, "dst": pair.dst.version_text},
            "accel": pair.params.accel,
            **measurement.figures(),
        }
        (Path(self.outputdir) / FIGURES_FILE).write_text(json.dumps(figures, indent=1))
        self.log.info("register faults on CPU#%d: %s", cpu, measurement.summary())
        self.verify_migration()
        measurement.assert_nothing_missed()
        return measurement
