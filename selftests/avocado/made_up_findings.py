"""Avocado tests for selftests/test_findings.py: real migrations judged by a
registry of made-up findings, so that each way a finding can end a test is
seen on real QEMU (x86_64, two different QEMU versions).

They live here, not in tests/migration, so that no suite run picks them up.
"""

import re

from migtest import findings
from migtest.errors import CheckFailure
from migtest.test import MigrationTest

findings.FINDINGS = (
    findings.Finding(
        id="made-up-never-completes",
        title="made up: no x86_64 migration across versions completes",
        kind="QEMU bug",
        scopes=(findings.scope("x86_64", "*", "*"),),
        shows=re.compile(r"a line no QEMU prints"),
        every_migration=True,
        reported="selftests/avocado/made_up_findings.py",
    ),
    findings.Finding(
        id="made-up-killed-destination",
        title="made up: the destination dies",
        kind="QEMU bug",
        scopes=(findings.scope("x86_64", "*", "*"),),
        shows=re.compile(r"dst \(QEMU [^)]*\): exited with -9"),
        every_migration=False,
        reported="selftests/avocado/made_up_findings.py",
        reproduced_by=("MadeUpFindings.test_destination_killed",),
    ),
    # Findings that name the tests that must hit them: flagged only where
    # such a test passes in scope, under an accelerator they name.
    *(
        findings.Finding(
            id=finding_id,
            title=f"made up: {title}",
            kind="QEMU bug",
            scopes=(findings.scope(arches, "*", "*"),),
            shows=re.compile(r"a line no QEMU prints"),
            every_migration=False,
            reported="selftests/avocado/made_up_findings.py",
            reproduced_by=tests,
            reproduced_under=frozenset(accels.split()),
        )
        for finding_id, title, arches, tests, accels in (
            ("made-up-named-test", "test_completes hits it", "x86_64", ("*.test_compl*",), "tcg"),
            ("made-up-other-arch", "only on s390x", "s390x", ("*.test_completes",), "tcg"),
            ("made-up-under-kvm", "only under KVM", "x86_64", ("*.test_completes",), "kvm"),
            (
                "made-up-other-test",
                "hit by another test",
                "x86_64",
                ("*.test_unexplained*",),
                "tcg",
            ),
        )
    ),
)


class MadeUpFindings(MigrationTest):
    """One migration each, ending three ways.

    :avocado: enable
    """

    def migrate(self) -> None:
        pair = self.start_pair()
        pair.allow_convergence()
        pair.migrate("unix")
        pair.wait_for_completion()
        self.verify_migration()

    def test_completes(self) -> None:
        """A finding says it cannot: the pass is flagged (WARN)."""
        self.migrate()

    def test_destination_killed(self) -> None:
        """A finding explains the failure: CANCEL naming it."""
        pair = self.start_pair()
        pair.prevent_convergence()
        pair.migrate("unix")
        pair.src.wait_for_dirty_sync(1)
        pair.dst.machine.kill()
        pair.wait_for_completion()

    def test_unexplained_failure(self) -> None:
        """No finding explains it: FAIL, as without the registry."""
        self.migrate()
        raise CheckFailure("a failure no finding explains")
