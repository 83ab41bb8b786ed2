"""Answers shared by a job's tests: reused for the same binary, asked again for another."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any, Iterator, List

import pytest

from migtest import host, probe_store


@pytest.fixture(autouse=True)
def shared(tmp_path: Path) -> Iterator[Path]:
    directory = tmp_path / "job"
    directory.mkdir()
    probe_store.share_in(directory)
    yield directory
    probe_store.share_in(None)
    host._help.cache_clear()


@pytest.fixture
def binary(tmp_path: Path) -> Path:
    path = tmp_path / "qemu-system-test"
    path.write_text("#!/bin/sh\n")
    path.chmod(0o755)
    return path


class Asker:
    """Counts how often the question was really asked."""

    def __init__(self, answer: Any) -> None:
        self.answer = answer
        self.asked = 0

    def __call__(self) -> Any:
        self.asked += 1
        return self.answer


def test_a_second_test_reads_what_the_first_was_told(binary: Path) -> None:
    asker = Asker([{"name": "migrate", "arg-type": "1"}])
    first = probe_store.remembered(str(binary), "query-qmp-schema", asker)
    second = probe_store.remembered(str(binary), "query-qmp-schema", asker)
    assert first == second == asker.answer
    assert asker.asked == 1


def test_each_question_has_its_own_answer(binary: Path) -> None:
    machines, cpus = Asker(["pc"]), Asker(["qemu64"])
    assert probe_store.remembered(str(binary), "-machine help", machines) == ["pc"]
    assert probe_store.remembered(str(binary), "-cpu help", cpus) == ["qemu64"]
    assert (machines.asked, cpus.asked) == (1, 1)


def test_a_rebuilt_binary_is_asked_again(binary: Path) -> None:
    asker = Asker(["old"])
    probe_store.remembered(str(binary), "-machine help", asker)
    status = binary.stat()
    os.utime(binary, ns=(status.st_atime_ns, status.st_mtime_ns + 1_000_000_000))
    asker.answer = ["new"]
    assert probe_store.remembered(str(binary), "-machine help", asker) == ["new"]
    assert asker.asked == 2


def test_a_binary_replaced_under_the_same_path_is_asked_again(binary: Path, tmp_path: Path) -> None:
    asker = Asker(["old"])
    probe_store.remembered(str(binary), "-machine help", asker)
    status = binary.stat()
    replacement = tmp_path / "replacement"
    shutil.copy2(binary, replacement)
    os.utime(replacement, ns=(status.st_atime_ns, status.st_mtime_ns))
    replacement.replace(binary)  # same size and time, another inode
    asker.answer = ["new"]
    assert probe_store.remembered(str(binary), "-machine help", asker) == ["new"]


def test_a_link_shares_its_target_s_answers(binary: Path, tmp_path: Path) -> None:
    link = tmp_path / "qemu-link"
    link.symlink_to(binary)
    asker = Asker(["pc"])
    probe_store.remembered(str(binary), "-machine help", asker)
    probe_store.remembered(str(link), "-machine help", asker)
    assert asker.asked == 1


@pytest.mark.parametrize("content", ["", '["cut sho', "\xff\xfe"])
def test_a_damaged_answer_is_asked_again_and_replaced(binary: Path, content: str) -> None:
    asker = Asker(["pc"])
    where = probe_store.answer_file(str(binary), "-machine help")
    assert where is not None
    where.write_text(content, encoding="latin-1")
    assert probe_store.remembered(str(binary), "-machine help", asker) == ["pc"]
    assert asker.asked == 1
    assert probe_store.remembered(str(binary), "-machine help", asker) == ["pc"]
    assert asker.asked == 1


def test_a_failed_question_is_not_remembered(binary: Path, shared: Path) -> None:
    def fails() -> List[str]:
        raise subprocess.TimeoutExpired("qemu", 30)

    with pytest.raises(subprocess.TimeoutExpired):
        probe_store.remembered(str(binary), "-machine help", fails)
    assert list(shared.iterdir()) == []


def test_without_a_shared_directory_every_question_is_asked(binary: Path) -> None:
    probe_store.share_in(None)
    asker = Asker(["pc"])
    probe_store.remembered(str(binary), "-machine help", asker)
    probe_store.remembered(str(binary), "-machine help", asker)
    assert asker.asked == 2


def test_a_binary_that_cannot_be_examined_is_asked_every_time(tmp_path: Path) -> None:
    asker = Asker(["pc"])
    missing = str(tmp_path / "gone")
    probe_store.remembered(missing, "-machine help", asker)
    probe_store.remembered(missing, "-machine help", asker)
    assert asker.asked == 2


def test_an_unwritable_directory_only_costs_the_question(binary: Path, shared: Path) -> None:
    shared.chmod(0o500)
    try:
        asker = Asker(["pc"])
        assert probe_store.remembered(str(binary), "-machine help", asker) == ["pc"]
        if os.geteuid() != 0:  # root writes anyway
            assert list(shared.iterdir()) == []
    finally:
        shared.chmod(0o700)


def test_nothing_but_answers_is_left_in_the_directory(binary: Path, shared: Path) -> None:
    probe_store.remembered(str(binary), "-machine help", Asker(["pc"]))
    probe_store.remembered(str(binary), "bad", Asker({1, 2}))  # not JSON: not kept
    names = [path.name for path in shared.iterdir()]
    assert len(names) == 1 and names[0].startswith(probe_store.FILE_PREFIX)


def test_a_real_qemu_is_asked_once_for_the_job(shared: Path) -> None:
    qemu = shutil.which("qemu-system-x86_64")
    if qemu is None:
        pytest.skip("no qemu-system-x86_64 on PATH")
    first = host.machine_listing(qemu)
    assert first is not None
    (stored,) = shared.iterdir()
    lines = json.loads(stored.read_text())
    assert lines[0] == "Supported machines are:"
    stored.write_text(json.dumps([*lines, "only-in-the-store  (a mark)"]))
    host._help.cache_clear()  # as in the next test's process
    second = host.machine_listing(qemu)
    assert second is not None and second.names == first.names | {"only-in-the-store"}
