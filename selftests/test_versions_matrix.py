"""scripts/versions-matrix: the jobs it runs, and what it refuses."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
from conftest import load_script

from migtest.versions import ENV_CACHE

script = load_script("versions-matrix")


def test_a_job_names_its_group_and_each_chosen_node() -> None:
    command = script.job(Path("/r"), "cross", ["7.2-to-10.0.13"], ["s390x"], ["-t postcopy"])
    filters = command[command.index("--mux-filter-only") + 1 : command.index("-m")]
    assert filters == ["/run/qemu/cross", "/run/qemu/cross/7.2-to-10.0.13", "/run/arch/s390x"]
    assert command[command.index("-m") + 1 :] == list(map(str, script.VARIANT_FILES))
    assert ["-t", "postcopy"] == command[command.index("-t") : command.index("-t") + 2]


def test_a_pair_must_be_two_different_known_versions() -> None:
    assert script.parse_pair("11.1.3-to-7.2") == "11.1.3-to-7.2"
    for bad in ("7.2-to-7.2", "7.2-to-9.9", "7.2->10.0.13"):
        with pytest.raises(argparse.ArgumentTypeError, match="accepted SRC-to-DST"):
            script.parse_pair(bad)


def test_versions_not_fetched_are_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(ENV_CACHE, str(tmp_path))
    assert script.main(["--results", str(tmp_path / "results")]) == 2
    assert "7.2, 10.0.2, 10.0.13, 11.1.2, 11.1.3 not fetched here" in capsys.readouterr().out
    assert not (tmp_path / "results").exists()
