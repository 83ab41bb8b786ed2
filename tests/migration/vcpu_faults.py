"""What the vCPU comparison catches: every register faulted on a migrated destination."""

import json
from pathlib import Path
from typing import Dict

from migtest.gdbstub import GdbClient, gdb_options
from migtest.scenarios import live_precopy
from migtest.test import MigrationTest
from migtest.vcpu_faults import measure
from migtest.vcpu_state import Run
from migtest.verify import assert_vcpus_identical, snapshot_vcpus

#: The destination's gdbstub socket, in the workdir (removed with the pair's sockets).
GDB_SOCKET = "dst-gdb.sock"
#: Where the figures go, in the test's output directory.
FIGURES_FILE = "vcpu-faults.json"


class VcpuFaults(MigrationTest):
    """Each register the gdbstub knows, changed by one bit on the paused destination.

    After a live precopy whose destination passes the vCPU comparison,
    every register of the destination's vCPU 0 is changed in turn through
    QEMU's gdbstub; the comparison must fail naming it, unless HMP does
    not show it (reported: the comparison's blind spot) or a known
    difference allows it (reported with its reason).  Restored, the
    comparison passes again, and the destination then passes every check
    of a migration, running.  The figures go to ``vcpu-faults.json``.

    :avocado: enable
    :avocado: tags=migration,vcpu,precopy,unix
    :avocado: tags=arch:x86_64,arch:aarch64,arch:s390x,arch:ppc64,arch:riscv64
    """

    def test_each_register(self) -> None:
        """Every register faulted on vCPU 0: caught, or shown not to be comparable."""
        pair = self.start_pair(dst_args=gdb_options("gdb", GDB_SOCKET))
        live_precopy(pair, "unix")
        assert_vcpus_identical(pair)
        source = snapshot_vcpus(pair.src)
        run = Run(pair.profile.name, pair.params.accel, pair.src.version, pair.dst.version)
        with GdbClient(pair.workdir, GDB_SOCKET) as gdb:
            measurement = measure(gdb, 0, lambda: snapshot_vcpus(pair.dst), source, run)
        figures: Dict[str, object] = {
            "qemu": {"src": pair.src.version_text, "dst": pair.dst.version_text},
            "accel": pair.params.accel,
            **measurement.figures(),
        }
        (Path(self.outputdir) / FIGURES_FILE).write_text(json.dumps(figures, indent=1))
        self.log.info("register faults on CPU#0: %s", measurement.summary())
        self.verify_migration()
        measurement.assert_nothing_missed()
