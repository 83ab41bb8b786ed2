"""Migration over RDMA (``rdma:``), only where the host has an RDMA link.

QEMU's promise is that of any live precopy: the destination ends with the
source's guest, byte for byte, and runs it on.  Over RDMA the pages are
written into the destination's registered RAM by the RDMA device; QEMU's
own test (``/migration/precopy/rdma/plain``, 10.0) runs it over a
Soft-RoCE link (``rdma_rxe``) that ``rdma link`` shows, and is skipped
without one.  Here, without a usable link (or a QEMU built without RDMA):
a CANCEL that says exactly what is missing, and what the QEMU under test
says of its build.  The test neither loads modules nor adds links.
"""

from migtest.arch import MiB
from migtest.errors import Unavailable
from migtest.pair import MigrationPair
from migtest.rdma import RdmaChannel, free_port, host_link, qemu_rdma_build, require_memlock
from migtest.scenarios import live_precopy
from migtest.test import MigrationTest


class Rdma(MigrationTest):
    """Live precopy over ``rdma:`` on the host's RDMA link.

    :avocado: enable
    :avocado: tags=migration,rdma
    :avocado: tags=arch:x86_64,arch:aarch64,arch:s390x,arch:ppc64,arch:riscv64
    """

    def rdma_channel(self, pair: MigrationPair) -> RdmaChannel:
        """The channel over the host's link, or CANCEL naming what the host and QEMU lack."""
        try:
            link = host_link()
        except Unavailable as missing:
            build = qemu_rdma_build(pair.dst, free_port("127.0.0.1"))
            raise Unavailable(f"{missing}; {build}", expected=False) from None
        require_memlock(pair.profile.memory_mib * MiB)
        self.log.info("RDMA link %s on %s (%s)", link.name, link.netdev, link.address)
        return RdmaChannel(link)

    def test_rdma(self) -> None:
        """Live precopy over RDMA, held back until RAM was synced twice, then converging."""
        pair = self.start_pair()
        live_precopy(pair, self.rdma_channel(pair))
        self.verify_migration()

    def test_rdma_pin_all(self) -> None:
        """As :meth:`test_rdma`, with all of guest RAM pinned at the start (``rdma-pin-all``)."""
        pair = self.start_pair()
        channel = self.rdma_channel(pair)
        pair.set_capabilities({"rdma-pin-all": True})
        live_precopy(pair, channel)
        self.verify_migration()
