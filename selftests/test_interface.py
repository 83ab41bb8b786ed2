"""The HMP round-trip checks (for tests/migration/interface.py), given bad input."""

from __future__ import annotations

import pytest

from migtest.checks import check_accounted, parse_hmp_parameters, round_trip_problem
from migtest.errors import CheckFailure

INFO = "downtime-limit: 250 ms\r\ntls-creds: 'creds0'\r\ncpu-throttle-tailslow: on\r\n"


def test_parameter_read_back_different_is_a_problem() -> None:
    shown = parse_hmp_parameters(INFO)
    assert round_trip_problem("downtime-limit", 250, "", 250, shown["downtime-limit"]) is None
    assert "reads 300" in str(round_trip_problem("downtime-limit", 250, "", 300, "250 ms"))
    assert "shows" in str(round_trip_problem("downtime-limit", 250, "", 250, "300 ms"))
    assert "refused" in str(round_trip_problem("x", 1, "Error: no", 1, None))
    assert round_trip_problem("tls-creds", "creds0", "", "creds0", shown["tls-creds"]) is None
    assert round_trip_problem("cpu-throttle-tailslow", True, "", True, "off") is not None


def test_unlisted_parameter_fails() -> None:
    with pytest.raises(CheckFailure, match="x-new-parameter"):
        check_accounted({"downtime-limit", "x-new-parameter"}, {"downtime-limit"}, set())
    check_accounted(
        {"downtime-limit", "block-bitmap-mapping"}, {"downtime-limit"}, {"block-bitmap-mapping"}
    )


def test_units_and_lists_as_hmp_shows_them() -> None:
    # As 11.1.3 shows them: sizes with a unit, a list joined by spaces.
    assert round_trip_problem("max-bandwidth", 100, "", 100, "100 bytes/second") is None
    assert round_trip_problem("cpr-exec-command", ["a", "b"], "", ["a", "b"], "a b") is None
    assert round_trip_problem("x-rdma-chunk-size", 2, "", 2, "20 bytes") is not None
