"""Multifd: RAM sent over several channels at once, as QEMU's own tests run it."""

from typing import Dict, Optional, Union

from migtest.checks import check_multifd_used, check_zero_pages
from migtest.qapi import Capability, MigrationInfo, MigrationParameters
from migtest.scenarios import live_precopy, postcopy
from migtest.test import MigrationTest
from migtest.transport import Channel, TcpChannel


class Multifd(MigrationTest):
    """Multifd: pages go over ``multifd-channels`` connections besides the main one.

    A precopy is held back until RAM has been synced twice and its RAM is
    compared byte for byte; the postcopy ones check the guest's pattern.  Multifd must
    really have carried the pages (``check_multifd_used``): a migration
    that fell back to the main channel would pass every other check.

    :avocado: enable
    :avocado: tags=migration,precopy,multifd,tcp
    :avocado: tags=arch:x86_64,arch:aarch64,arch:s390x,arch:ppc64,arch:riscv64
    """

    def multifd_precopy(
        self,
        channel: Union[str, Channel] = "tcp",
        compression: str = "none",
        parameters: Optional[MigrationParameters] = None,
    ) -> MigrationInfo:
        """Migrate over four multifd channels, verify, and return the final stats.

        :param compression: ``multifd-compression``; CANCEL where QEMU was
            built without it.
        :param parameters: more parameters, for both sides.
        """
        pair = self.start_pair()
        for side in (pair.src, pair.dst):
            side.require_argument_value(
                "migrate-set-parameters", "multifd-compression", compression
            )
        pair.set_capabilities({"multifd": True})
        pair.set_parameters({"multifd-channels": 4, "multifd-compression": compression})
        if parameters:
            pair.set_parameters(parameters)
        final = live_precopy(pair, channel)
        check_multifd_used(final["ram"], "compressed" if compression != "none" else "all")
        self.verify_migration()
        return final

    def test_tcp(self) -> None:
        """Four channels over TCP, named by a URI.

        :avocado: tags=qtest-7.2
        """
        self.multifd_precopy()

    def test_channels(self) -> None:
        """Four channels over TCP, named by a ``channels`` list (QEMU 8.2 on)."""
        self.multifd_precopy(TcpChannel(as_channels=True))

    def test_zlib(self) -> None:
        """Pages compressed with zlib, at a level read back on both sides.

        :avocado: tags=qtest-7.2
        """
        self.multifd_precopy(compression="zlib", parameters={"multifd-zlib-level": 2})

    def test_zstd(self) -> None:
        """Pages compressed with zstd, at a level read back on both sides.

        :avocado: tags=qtest-7.2
        """
        self.multifd_precopy(compression="zstd", parameters={"multifd-zstd-level": 2})

    def test_qpl(self) -> None:
        """Pages compressed by Intel's QPL (CANCEL where QEMU was built without it)."""
        self.multifd_precopy(compression="qpl")

    def test_uadk(self) -> None:
        """Pages compressed by UADK hardware (CANCEL where QEMU was built without it)."""
        self.multifd_precopy(compression="uadk")

    def test_qatzip(self) -> None:
        """Pages compressed by Intel QAT (CANCEL where QEMU was built without it)."""
        self.multifd_precopy(compression="qatzip")

    def test_zero_page_detection_legacy(self) -> None:
        """Zero pages found by the migration thread, not sent (QEMU 9.0 on)."""
        final = self.multifd_precopy(parameters={"zero-page-detection": "legacy"})
        check_zero_pages(final["ram"], detected=True)

    def test_zero_page_detection_none(self) -> None:
        """No zero-page detection: every page goes as data (QEMU 9.0 on)."""
        final = self.multifd_precopy(parameters={"zero-page-detection": "none"})
        check_zero_pages(final["ram"], detected=False)

    def test_cancel_then_migrate_again(self) -> None:
        """Sixteen channels cancelled mid-way; the source runs on and migrates again.

        QEMU promises that a cancelled migration leaves the source as it
        was: the guest runs, and a second migration, to a new destination,
        completes over multifd and is verified byte for byte.

        :avocado: tags=qtest-7.2
        """
        self.cancel_then_migrate_again(postcopy_ram=False)

    def test_cancel_with_postcopy_ram_then_migrate_again(self) -> None:
        """The same with postcopy-ram set (never started) on every side (QEMU 10.1 on)."""
        self.cancel_then_migrate_again(postcopy_ram=True)

    def cancel_then_migrate_again(self, postcopy_ram: bool) -> None:
        """Cancel a 16-channel migration once RAM was synced, then migrate anew."""
        pair = self.start_pair()
        capabilities: Dict[Capability, bool] = {"multifd": True, "postcopy-ram": postcopy_ram}
        sixteen: MigrationParameters = {"multifd-channels": 16}
        if postcopy_ram:
            self.enable_postcopy("multifd")
        else:
            pair.set_capabilities({"multifd": True})
        pair.set_parameters(sixteen)
        pair.prevent_convergence()
        pair.migrate("tcp")
        pair.src.wait_for_dirty_sync(1)
        pair.src.cancel()
        pair.src.wait_for_cancelled()
        self.assert_guest_runs(pair.src.machine)
        pair.replace_destination()
        pair.dst.set_capabilities(capabilities)
        pair.dst.set_parameters(sixteen)
        pair.allow_convergence()
        pair.migrate("tcp")
        final = pair.wait_for_completion()
        check_multifd_used(final["ram"])
        self.verify_migration()

    def test_postcopy(self) -> None:
        """Multifd, then postcopy: the destination runs and pulls the rest (QEMU 10.1 on)."""
        self.multifd_postcopy()

    def test_postcopy_preempt(self) -> None:
        """Multifd, then postcopy with its urgent pages on a channel of their own."""
        self.multifd_postcopy("postcopy-preempt")

    def multifd_postcopy(self, *more: Capability) -> None:
        """Multifd precopy, then postcopy (with ``more``), to completion."""
        pair = self.start_postcopy_pair("multifd", *more)
        pair.set_parameters({"multifd-channels": 4})
        final = postcopy(pair, "tcp")
        check_multifd_used(final["ram"], "some")
        self.verify_migration()
