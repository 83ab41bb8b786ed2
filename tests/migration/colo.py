"""COLO: a primary replicating its guest into a running secondary, then a failover.

QEMU's promises (``qapi/migration.json``: ``x-colo``, ``COLO_EXIT``,
``query-colo-status``, ``x-colo-lost-heartbeat``): with ``x-colo`` the
migration never ends; both sides report ``colo`` while the primary
checkpoints its guest into the secondary.  Told that the heartbeat is lost,
the primary leaves COLO and runs on alone; the secondary runs failover work
and takes over as the service VM.  Either way the side asked ends its
migration ``completed``, sends ``COLO_EXIT`` for its mode, and
``query-colo-status`` says mode ``none``, its last mode and reason
``request``.  The guest it carries on must be whole: it prints, counts
on, and its counters obey the guest contract.

The scenarios and setup are those of QEMU's COLO qtest (2025): no disks or
network to replicate, ``return-path``, a checkpoint every 300 ms, three
checkpoints before the failover, plain and over multifd.  COLO needs QEMU
built with replication: without it, a CANCEL naming the QEMU.
"""

from migtest.colo import (
    SNAPSHOT,
    Role,
    fail_over,
    start_colo,
    verify_survivor,
    wait_for_checkpoints,
    wait_for_colo_exit,
)
from migtest.endpoint import Endpoint
from migtest.pair import MigrationPair
from migtest.test import MigrationTest


class Colo(MigrationTest):
    """COLO replication, then a failover on the primary or on the secondary.

    :avocado: enable
    :avocado: tags=migration,colo
    :avocado: tags=arch:x86_64,arch:aarch64,arch:s390x,arch:ppc64,arch:riscv64
    """

    def replicate(self, multifd: bool = False) -> MigrationPair:
        """A primary (the source) checkpointing into its secondary, three checkpoints on."""
        pair = self.start_pair(dst_paused=False, src_args=SNAPSHOT, dst_args=SNAPSHOT)
        start_colo(pair, multifd=multifd)
        wait_for_checkpoints(pair)
        return pair

    def failover(self, survivor: Endpoint, role: Role) -> None:
        """``survivor`` told the heartbeat is lost, while its peer is alive: it carries on."""
        fail_over(survivor)
        verify_survivor(survivor, role, self.suite.profile, exit_reason="request")

    def test_primary_failover(self) -> None:
        """The primary, told its secondary is lost, leaves COLO and runs its guest on.

        :avocado: tags=tcp
        """
        pair = self.replicate()
        self.failover(pair.src, "primary")

    def test_secondary_failover(self) -> None:
        """The secondary, told its primary is lost, takes over the guest from its last checkpoint.

        :avocado: tags=tcp
        """
        pair = self.replicate()
        self.failover(pair.dst, "secondary")

    def test_primary_failover_multifd(self) -> None:
        """As :meth:`test_primary_failover`, the checkpoints' RAM over four multifd channels.

        :avocado: tags=tcp,multifd
        """
        pair = self.replicate(multifd=True)
        self.failover(pair.src, "primary")

    def test_secondary_failover_multifd(self) -> None:
        """As :meth:`test_secondary_failover`, the checkpoints' RAM over four multifd channels.

        :avocado: tags=tcp,multifd
        """
        pair = self.replicate(multifd=True)
        self.failover(pair.dst, "secondary")

    def test_secondary_takes_over_dead_primary(self) -> None:
        """The primary's QEMU dies; the secondary sees COLO end in error, then takes over.

        What COLO is for: the secondary notices its link break
        (``COLO_EXIT``, reason ``error``) and waits; told the heartbeat is
        lost, it becomes the service VM with the guest of its last
        checkpoint.
        """
        pair = self.replicate()
        pair.src.machine.kill()
        wait_for_colo_exit(pair.dst)
        fail_over(pair.dst)
        verify_survivor(pair.dst, "secondary", self.suite.profile, exit_reason="error")

    def test_primary_outlives_dead_secondary(self) -> None:
        """The secondary's QEMU dies; the primary sees COLO end in error, then runs on alone."""
        pair = self.replicate()
        pair.dst.machine.kill()
        wait_for_colo_exit(pair.src)
        fail_over(pair.src)
        verify_survivor(pair.src, "primary", self.suite.profile, exit_reason="error")
