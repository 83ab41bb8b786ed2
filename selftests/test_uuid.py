"""The UUID scenario's verdicts can fail: a wrong UUID is caught either way."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from migtest.errors import CheckFailure
from migtest.pair import MigrationPair
from migtest.params import SuiteParams


@pytest.fixture
def mismatched(tcg_params: SuiteParams, workdir: Path) -> Iterator[MigrationPair]:
    with MigrationPair(tcg_params, workdir) as pair:
        pair.start(
            src_args=["-uuid", "11111111-1111-1111-1111-111111111111"],
            dst_args=["-uuid", "22222222-2222-2222-2222-222222222222"],
        )
        pair.src.machine.cmd("stop")
        pair.allow_convergence()
        yield pair


def test_expecting_completion_fails_when_validation_refuses(mismatched: MigrationPair) -> None:
    mismatched.src.set_capabilities({"validate-uuid": True})
    mismatched.migrate("unix")
    with pytest.raises(CheckFailure, match="reached 'failed'"):
        mismatched.wait_for_completion()


def test_expecting_refusal_fails_when_nothing_validates(mismatched: MigrationPair) -> None:
    mismatched.migrate("unix")  # validate-uuid off: QEMU lets it through
    with pytest.raises(CheckFailure, match="reached 'completed'"):
        mismatched.src.wait_for_status("failed", fail_on=("completed",))
