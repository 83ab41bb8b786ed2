"""What the QEMU under test should have: features by version, and the
verdict when one is missing (CANCEL by design, ERROR in strict mode by mistake)."""

from __future__ import annotations

from pathlib import Path

import pytest

from migtest.endpoint import Endpoint
from migtest.errors import Unavailable
from migtest.machine import QEMUMachine
from migtest.qapi import expected_in, lifetime


@pytest.mark.parametrize(
    ("feature", "version", "expected"),
    [
        ("migrate.channels", (7, 2), False),
        ("migrate.channels", (8, 2), True),
        ("mapped-ram", (8, 2), False),
        ("mapped-ram", (10, 0), True),
        ("compress", (9, 0), True),
        ("compress", (9, 1), False),
        ("xbzrle", (7, 2), True),  # older than any QEMU we run: always expected
        ("xbzrle", (11, 1), True),
    ],
)
def test_a_feature_is_expected_between_its_versions(
    feature: str, version: tuple[int, int], expected: bool
) -> None:
    assert expected_in(feature, version) is expected


def test_lifetime_says_when_a_feature_came_or_went() -> None:
    assert lifetime("migrate.channels") == " (added in QEMU 8.2)"
    assert lifetime("block") == " (removed in QEMU 9.1)"
    assert lifetime("xbzrle") == ""


@pytest.fixture
def endpoint(x86_binary: str, tmp_path: Path):
    machine = QEMUMachine(x86_binary, ["-machine", "none"], name="vm", workdir=tmp_path)
    with machine:
        machine.launch()
        yield Endpoint(machine)


def test_a_missing_argument_of_this_version_is_expected(endpoint: Endpoint) -> None:
    with pytest.raises(Unavailable, match="'migrate' lacks the arguments: no-such-thing") as gone:
        endpoint.require_arguments("migrate", ["no-such-thing"])
    assert gone.value.expected
    assert "QEMU " in str(gone.value) and endpoint.machine.binary in str(gone.value)


def test_channels_are_there_from_8_2_and_missing_by_design_before(endpoint: Endpoint) -> None:
    if endpoint.version[:2] >= (8, 2):
        endpoint.require_arguments("migrate", ["channels"])
        endpoint.require_arguments("migrate-incoming", ["channels"])
        return
    with pytest.raises(Unavailable, match=r"channels \(added in QEMU 8\.2\)") as gone:
        endpoint.require_arguments("migrate", ["channels"])
    assert not gone.value.expected


def test_a_capability_this_version_lacks_by_design_is_not_expected(endpoint: Endpoint) -> None:
    newest = "mapped-ram" if endpoint.version[:2] < (9, 0) else None
    if newest is None:
        pytest.skip("this QEMU has every capability the suite knows of")
    with pytest.raises(Unavailable, match="mapped-ram") as gone:
        endpoint.require_capabilities([newest])
    assert not gone.value.expected


def test_the_statuses_this_qemu_reports_come_from_its_schema(endpoint: Endpoint) -> None:
    statuses = endpoint.known_statuses()
    assert {"setup", "active", "completed", "failed", "cancelled", "postcopy-paused"} <= statuses
    assert ("failing" in statuses) is (endpoint.version[:2] >= (11, 0))
