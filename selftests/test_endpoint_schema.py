"""What an Endpoint reads from QEMU's schema, on a schema written here.

Pure logic over ``query-qmp-schema``'s shape: whether a value is built in,
whether a combination works in this version.  The real schemas are asked
by every migration test.
"""

from __future__ import annotations

from typing import Any, Dict, List, Tuple

import pytest

from migtest.endpoint import Endpoint
from migtest.errors import ConfigError, Unavailable

SCHEMA: List[Dict[str, Any]] = [
    {"name": "migrate-set-parameters", "meta-type": "command", "arg-type": "1"},
    {"name": "1", "meta-type": "object", "members": [
        {"name": "multifd-compression", "type": "2"},
        {"name": "downtime-limit", "type": "int"},
    ]},
    {"name": "2", "meta-type": "enum", "members": [{"name": "none"}, {"name": "zlib"}]},
]  # fmt: skip


class SchemaOnly:
    """Answers the two queries an Endpoint asks here, as QEMU ``version`` would."""

    name = "src"
    binary = "/nowhere/qemu-system-x86_64"

    def __init__(self, version: Tuple[int, int, int]) -> None:
        self.version = version

    def cmd(self, command: str, **arguments: Any) -> Any:
        if command == "query-version":
            major, minor, micro = self.version
            return {"qemu": {"major": major, "minor": minor, "micro": micro}}
        assert command == "query-qmp-schema", command
        return SCHEMA


def endpoint(version: Tuple[int, int, int] = (7, 2, 22)) -> Endpoint:
    return Endpoint(SchemaOnly(version))  # type: ignore[arg-type]


def test_an_enum_arguments_values() -> None:
    side = endpoint()
    assert side.argument_values("migrate-set-parameters", "multifd-compression") == {"none", "zlib"}
    assert side.argument_values("migrate-set-parameters", "downtime-limit") == frozenset()
    assert side.argument_values("no-such-command", "x") == frozenset()


def test_a_value_not_built_in_is_a_cancel_that_strict_mode_keeps() -> None:
    side = endpoint()
    side.require_argument_value("migrate-set-parameters", "multifd-compression", "zlib")
    with pytest.raises(Unavailable, match=r"does not take 'zstd' \(it takes none, zlib\)") as lack:
        side.require_argument_value("migrate-set-parameters", "multifd-compression", "zstd")
    assert lack.value.expected is False
    with pytest.raises(Unavailable, match=r"does not take 'qpl' .*: added in QEMU 9\.1"):
        side.require_argument_value("migrate-set-parameters", "multifd-compression", "qpl")
    with pytest.raises(Unavailable, match=r"does not take 'qpl' .*: not built in"):
        endpoint((10, 0, 13)).require_argument_value(
            "migrate-set-parameters", "multifd-compression", "qpl"
        )


def test_a_combination_works_from_its_version_and_a_typo_is_an_error() -> None:
    endpoint((10, 1, 0)).require_version_for("postcopy-ram+multifd")
    with pytest.raises(Unavailable, match=r"lacks postcopy-ram\+multifd \(works from QEMU 10\.1\)"):
        endpoint((10, 0, 13)).require_version_for("postcopy-ram+multifd")
    with pytest.raises(ConfigError, match=r"'postcopy\+multifd'.*accepted one of postcopy-ram"):
        endpoint().require_version_for("postcopy+multifd")
