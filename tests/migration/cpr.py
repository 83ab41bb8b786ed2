"""CheckPoint and Restart (CPR): the guest moved to a new QEMU on the same host.

QEMU's promises (docs/devel/migration/CPR.rst, ``MigMode`` in
qapi/migration.json): the guest is stopped before its state is saved;
guest RAM backed by shared memory stays in place and is not copied; the
new QEMU carries on with the guest as the old one left it.  The modes
come with their QEMU versions, read from the schema (``MigMode``):
``cpr-reboot`` 8.2, ``cpr-transfer`` 10.0, ``cpr-exec`` 10.2.  A QEMU
without the mode is a CANCEL naming it and the version that added it.
"""

from pathlib import Path

from migtest.arch import MiB
from migtest.checks import check_counter_pattern, check_shared_ram_not_sent
from migtest.endpoint import Endpoint
from migtest.machine import QEMUMachine
from migtest.pair import MigrationPair
from migtest.qapi import MigrationInfo
from migtest.status import UNSUCCESSFUL
from migtest.test import MigrationTest
from migtest.transport import CprChannel, FileChannel, UnixChannel
from migtest.verify import (
    RUN_TIMEOUT,
    assert_guest_memory,
    assert_guest_runs,
    assert_ram_as_snapshot,
    assert_run_state,
    assert_vcpus_as_snapshot,
    snapshot_ram,
    snapshot_vcpus,
)

#: Implicit RAM blocks (ROMs, firmware) in memfds, so that cpr-transfer
#: can hand them over too (the docs' "Usage"; the property is 10.0's).
AUX_RAM_SHARE = ["-machine", "aux-ram-share=on"]
#: Why the source's guest must be stopped after a CPR save.
STOPPED = "CPR stops the guest before it saves its state (postmigrate)"


def save_and_restart(pair: MigrationPair, mode: str, in_place: bool) -> MigrationInfo:
    """Save the running guest into a file in ``mode``, quit, and load it in a new QEMU.

    The old QEMU's RAM is dumped before it quits; the new one, paused,
    must hold the same bytes.  With ``in_place`` both map guest RAM from
    one file and x-ignore-shared leaves it out of the saved state.

    :return: the old QEMU's final statistics.
    """
    src = pair.src
    src.set_mode(mode)
    src.set_capabilities({"x-ignore-shared": in_place})
    src.require_transport("file")
    channel = FileChannel()
    channel.create(pair.workdir)
    # A file names only the side that opens it: the destination is not there yet.
    src.migrate(channel.send_target(src, src))
    src.wait_for_status("completed", fail_on=UNSUCCESSFUL)
    final = src.read_final_stats()
    assert_run_state(src, "postmigrate", STOPPED)
    channel.check_written()
    channel.read_stream()
    snapshot, vcpus = snapshot_ram(src.machine, pair.profile), snapshot_vcpus(src)
    src.machine.shutdown()  # as the docs say: quit once postmigrate
    pair.start_destination()
    dst = pair.dst
    dst.set_mode(mode)
    dst.set_capabilities({"x-ignore-shared": in_place})
    dst.listen(channel.listen_target(dst))
    dst.wait_for_status("completed", fail_on=UNSUCCESSFUL)
    test_range = assert_ram_as_snapshot(snapshot, dst.machine, pair.profile, "the old QEMU")
    assert_vcpus_as_snapshot(vcpus, pair)
    check_counter_pattern(test_range, pair.profile.test_range[0])
    return final


def run_on(pair: MigrationPair) -> None:
    """The new QEMU's guest, resumed, counts on; stopped again, its range obeys the contract.

    What :func:`~migtest.verify.verify_migration` checks once RAM is
    compared, for a pair whose source has quit.
    """
    pair.dst.cont()
    pair.dst.machine.wait_event("RESUME", timeout=RUN_TIMEOUT)
    assert_guest_runs(pair.dst.machine, pair.profile)
    pair.dst.stop()
    assert_guest_memory(pair.dst.machine, pair.profile)


class Cpr(MigrationTest):
    """CPR modes: cpr-reboot (8.2 on), cpr-transfer (10.0), cpr-exec (10.2).

    :avocado: enable
    :avocado: tags=migration,cpr
    :avocado: tags=arch:x86_64,arch:aarch64,arch:s390x,arch:ppc64,arch:riscv64
    """

    def require_mode(self, mode: str) -> None:
        """:raise Unavailable: the source's or the destination's QEMU lacks ``mode``.

        Asked of each binary on its own, with no machine: a test whose
        machines need options of the mode's version asks first.
        """
        for binary in dict.fromkeys((self.suite.qemu_bin_src, self.suite.qemu_bin_dst)):
            with QEMUMachine(
                binary, ["-machine", "none"], name="probe", workdir=Path(self.workdir)
            ) as probe:
                probe.launch()
                Endpoint(probe).require_mode(mode)

    def test_reboot(self) -> None:
        """cpr-reboot with shared RAM and x-ignore-shared: RAM stays in place.

        The old QEMU stops the guest and saves only its device state into
        the file; RAM, mapped from a shared file, is not copied
        (``query-migrate``).  It quits; a new QEMU maps the same RAM file,
        loads the state, and has the very RAM the old one left, then runs
        the guest on.
        """
        pair = self.pair
        pair.start(shared_memory=True, later_destination=True)
        final = save_and_restart(pair, "cpr-reboot", in_place=True)
        check_shared_ram_not_sent(final["ram"], pair.profile.memory_mib * MiB)
        run_on(pair)

    def test_reboot_ram_in_file(self) -> None:
        """cpr-reboot with private RAM: all of it is copied into the file, and comes back.

        "Guest RAM can be saved in place if backed by shared memory, or
        can be copied to a file": without shared memory the new QEMU must
        get RAM from the file, byte for byte.
        """
        pair = self.pair
        pair.start(later_destination=True)
        save_and_restart(pair, "cpr-reboot", in_place=False)
        run_on(pair)

    def test_transfer(self) -> None:
        """cpr-transfer: the new QEMU, started beside the old, takes over its RAM.

        The old QEMU hands its descriptors (guest RAM's) over the ``cpr``
        channel, a unix socket; the new QEMU reads it before it opens its
        monitor, then loads the device state from the main channel.  RAM
        is not copied; the old QEMU ends stopped (postmigrate); the new
        one has the guest as it was, and runs it on.
        """
        self.require_mode("cpr-transfer")  # before aux-ram-share, which older QEMUs refuse
        pair = self.pair
        pair.start(shared_memory=True, later_destination=True, src_args=AUX_RAM_SHARE)
        pair.src.set_mode("cpr-transfer")
        cpr, main = CprChannel(), UnixChannel(as_channels=True)
        pair.start_destination(dst_args=[*AUX_RAM_SHARE, *cpr.incoming_args()], connect=False)
        cpr.wait_listening(pair.workdir, timeout=self.suite.boot_timeout)
        pair.src.migrate(cpr.next_to(main.send_target(pair.src, pair.src)))
        pair.connect_destination()
        pair.dst.listen(main.listen_target(pair.dst))
        final = pair.wait_for_completion()
        check_shared_ram_not_sent(final["ram"], pair.profile.memory_mib * MiB)
        assert_run_state(pair.src, "postmigrate", STOPPED)
        self.verify_migration()

    def test_exec(self) -> None:
        """cpr-exec: the old QEMU saves the state into a file and exec's the new one in its process.

        Guest RAM, shared memory, is preserved in place: the file holds the
        device state only (smaller than RAM), the new QEMU has the old
        one's PID and the very RAM the old one left, loads the state
        (``-incoming defer``, then ``migrate-incoming``) and runs the guest on.
        """
        self.require_mode("cpr-exec")
        pair = self.pair
        pair.start(shared_memory=True, later_destination=True, src_args=AUX_RAM_SHARE)
        src = pair.src
        src.set_mode("cpr-exec")
        src.require_transport("file")
        pid = src.machine.pid
        src.stop()  # so that the RAM compared with is the RAM saved
        snapshot, vcpus = snapshot_ram(src.machine, pair.profile), snapshot_vcpus(src)
        channel = FileChannel()
        channel.create(pair.workdir)
        pair.exec_destination(channel.send_target(src, src), dst_args=AUX_RAM_SHARE)
        dst = pair.dst
        self.assertEqual(
            dst.machine.pid, pid, "cpr-exec runs the new QEMU in the old one's process"
        )
        channel.check_written()
        channel.read_stream()
        saved, shared = (pair.workdir / channel.path).stat().st_size, pair.profile.memory_mib * MiB
        self.assertLess(
            saved, shared, f"{saved} bytes saved: the {shared} bytes of RAM were copied"
        )
        dst.listen(channel.listen_target(dst))
        dst.wait_for_status("completed", fail_on=UNSUCCESSFUL)
        test_range = assert_ram_as_snapshot(snapshot, dst.machine, pair.profile, "the old QEMU")
        assert_vcpus_as_snapshot(vcpus, pair)
        check_counter_pattern(test_range, pair.profile.test_range[0])
        run_on(pair)
