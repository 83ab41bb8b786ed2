"""Avocado tests for the self-tests only (not the suite): a tearDown step
that fails, in a test that passes, fails or is cancelled.

They live here, not in tests/migration, so that no suite run picks them up.
"""

from migtest.test import MigrationTest


class BrokenMetrics(MigrationTest):
    """A test whose metrics cannot be saved, however it ends.

    :avocado: enable
    """

    def _save_metrics(self) -> None:
        raise OSError(28, "No space left on device (self-test)")

    def test_passes(self) -> None:
        """Nothing goes wrong but the report."""

    def test_fails(self) -> None:
        """The scenario fails: its reason must stay."""
        self.fail("the scenario's own failure")

    def test_cancels(self) -> None:
        """Something is missing: the CANCEL and its reason must stay."""
        self.cancel("nothing to run here")
