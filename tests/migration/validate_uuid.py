"""The validate-uuid capability: the destination must be the machine meant."""

from typing import Optional

from migtest.test import MigrationTest

UUID_A = "11111111-1111-1111-1111-111111111111"
UUID_B = "22222222-2222-2222-2222-222222222222"


class ValidateUuid(MigrationTest):
    """With validate-uuid on the source, a destination with another UUID is refused.

    A UUID that only one side has cannot be compared, so the migration goes
    ahead: QEMU checks only when both sides have one.

    :avocado: enable
    :avocado: tags=migration,seed,uuid,unix
    :avocado: tags=arch:x86_64,arch:aarch64,arch:s390x,arch:ppc64,arch:riscv64
    """

    def migrate_with_uuids(self, src: Optional[str], dst: Optional[str]) -> None:
        """Start a non-live migration with validate-uuid on the source."""
        self.start_pair(
            src_args=["-uuid", src] if src else [],
            dst_args=["-uuid", dst] if dst else [],
        )
        self.pair.require_capabilities("validate-uuid")
        self.pair.src.set_capabilities({"validate-uuid": True})
        self.pair.src.stop()
        self.pair.allow_convergence()
        self.pair.migrate("unix")

    def test_same_uuid(self) -> None:
        """The same UUID on both sides: the migration goes ahead.

        :avocado: tags=qtest-7.2
        """
        self.migrate_with_uuids(UUID_A, UUID_A)
        self.pair.wait_for_completion()
        self.verify_migration()

    def test_different_uuid(self) -> None:
        """Different UUIDs: refused; the destination exits, the source runs on.

        :avocado: tags=qtest-7.2
        """
        self.migrate_with_uuids(UUID_A, UUID_B)
        self.pair.src.wait_for_status("failed", fail_on=("completed",))
        self.assertNotEqual(self.pair.dst.machine.wait_for_exit(timeout=60), 0)
        self.pair.src.cont()
        self.assert_guest_runs(self.pair.src.machine)

    def test_uuid_only_on_source(self) -> None:
        """Nothing to compare with: the migration goes ahead.

        :avocado: tags=qtest-7.2
        """
        self.migrate_with_uuids(UUID_A, None)
        self.pair.wait_for_completion()
        self.verify_migration()

    def test_uuid_only_on_destination(self) -> None:
        """Nothing to compare with: the migration goes ahead.

        :avocado: tags=qtest-7.2
        """
        self.migrate_with_uuids(None, UUID_B)
        self.pair.wait_for_completion()
        self.verify_migration()
