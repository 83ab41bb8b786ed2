"""Migrations that must fail, and fail safely: the source guest survives."""

import socket

from migtest.test import MigrationTest


class BadDestination(MigrationTest):
    """Migrating to an address where nobody listens.

    The source must go from setup straight to failed, and its guest must
    keep running: a failed migration may never cost the guest.

    :avocado: enable
    :avocado: tags=migration,seed,failure,tcp
    :avocado: tags=arch:x86_64,arch:aarch64,arch:s390x,arch:ppc64,arch:riscv64
    """

    def test_nobody_listening(self) -> None:
        """A refused connection: setup, then failed, and the guest runs on.

        :avocado: tags=qtest-7.2
        """
        pair = self.start_pair()
        # A bound socket that never listens: its port refuses connections,
        # and no other process can take it while the test runs.
        with socket.socket() as unused:
            unused.bind(("127.0.0.1", 0))
            port = unused.getsockname()[1]
            pair.src.migrate(f"tcp:127.0.0.1:{port}")
            pair.src.wait_for_status("failed", fail_on=("completed", "cancelled"))
        # From QEMU 11.0 a migration passes through 'failing' on its way to 'failed'.
        failing = ["failing"] if "failing" in pair.src.known_statuses() else []
        self.assertEqual(pair.src.status_history(), ["setup", *failing, "failed"])
        self.assert_guest_runs(pair.src.machine)
