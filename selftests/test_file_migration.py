"""The verdicts of the file migration tests fail on bad input: a file written
before its offset or without a stream at it, a descriptor left open, an fd
set left behind, and a damaged stream file that the destination loads."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Iterator, List

import pytest

from migtest.arch import get_profile
from migtest.endpoint import Endpoint
from migtest.errors import CheckFailure, Unavailable
from migtest.machine import QEMUMachine
from migtest.pair import MigrationPair
from migtest.params import SuiteParams
from migtest.status import UNSUCCESSFUL
from migtest.transport import (
    STREAM_MAGIC,
    FdsetChannel,
    FileChannel,
    check_descriptors_closed,
    filesystem_type,
)
from migtest.verify import verify_migration
from migtest.versions import binary_for

#: A QEMU with the file transport (8.2 on): the host's 7.2 has none.
FILE_QEMU = "11.1.3"
OFFSET = 4096


def written(directory: Path, offset: int = OFFSET) -> FileChannel:
    """A file as a good migration leaves it: the prefix, then a stream."""
    channel = FileChannel(offset=offset)
    channel.create(directory)
    with open(directory / channel.path, "ab") as file:
        file.write(STREAM_MAGIC + b"\x00\x00\x00\x03" + b"rest of the stream")
    return channel


def test_a_file_as_qemu_should_leave_it_passes(tmp_path: Path) -> None:
    written(tmp_path).check_written()
    written(tmp_path, offset=0).check_written()


def test_a_byte_changed_before_the_offset_fails(tmp_path: Path) -> None:
    channel = written(tmp_path)
    data = bytearray((tmp_path / channel.path).read_bytes())
    data[100] ^= 0xFF
    (tmp_path / channel.path).write_bytes(bytes(data))
    with pytest.raises(CheckFailure, match="first at byte 100"):
        channel.check_written()


def test_a_file_truncated_and_regrown_fails(tmp_path: Path) -> None:
    """What QEMU 8.2 did: O_TRUNC, then the stream at the offset, zeros before it."""
    channel = written(tmp_path)
    data = bytearray((tmp_path / channel.path).read_bytes())
    data[:OFFSET] = bytes(OFFSET)
    (tmp_path / channel.path).write_bytes(bytes(data))
    with pytest.raises(CheckFailure, match="before the stream's offset changed"):
        channel.check_written()


def test_no_stream_at_the_offset_fails(tmp_path: Path) -> None:
    channel = FileChannel(offset=OFFSET)
    channel.create(tmp_path)
    with open(tmp_path / channel.path, "ab") as file:
        file.write(b"\x00" * 16 + STREAM_MAGIC)  # the stream, but not at the offset
    with pytest.raises(CheckFailure, match="not the stream's"):
        channel.check_written()


def test_a_stream_written_over_the_prefix_fails(tmp_path: Path) -> None:
    """A QEMU that ignored the offset: the stream at byte 0."""
    channel = FileChannel(offset=OFFSET)
    channel.create(tmp_path)
    (tmp_path / channel.path).write_bytes(STREAM_MAGIC + bytes(2 * OFFSET))
    with pytest.raises(CheckFailure, match="first at byte 0"):
        channel.check_written()


def test_descriptors_kept_pass_and_a_new_one_fails() -> None:
    before = ["/dev/null", "socket:[1]", "anon_inode:[eventfd]", "anon_inode:[eventfd]"]
    check_descriptors_closed(before, list(reversed(before)), "nothing")
    with pytest.raises(CheckFailure, match=r"new: \['/dev/full'\]"):
        check_descriptors_closed(before, [*before, "/dev/full"], "a migration to /dev/full")
    with pytest.raises(CheckFailure, match=r"4 descriptors open before .*, 5 after"):
        check_descriptors_closed(before, [*before, "anon_inode:[eventfd]"], "twice the same")


class _LeftFdset:
    """An endpoint whose QEMU keeps its fd set after remove-fd."""

    name = "src"

    def remove_fdset(self, fdset_id: int) -> None:
        pass

    def fdsets(self) -> List[Dict[str, Any]]:
        return [{"fdset-id": 1, "fds": [{"fd": 33}]}]


def test_an_fdset_left_after_remove_fd_fails() -> None:
    channel = FdsetChannel()
    channel.fdset_ids["src"] = 1
    with pytest.raises(CheckFailure, match="fd sets left"):
        channel.release(_LeftFdset())  # type: ignore[arg-type]


def test_the_file_system_is_named(tmp_path: Path) -> None:
    assert filesystem_type(tmp_path) not in ("", "unknown")
    assert filesystem_type(Path("/proc/self")) == "proc"


# -- against a QEMU with the file transport ----------------------------------


@pytest.fixture
def file_binary() -> str:
    try:
        return binary_for(FILE_QEMU, "x86_64")
    except Unavailable as exc:
        pytest.skip(str(exc))


@pytest.fixture
def lone(file_binary: str, tmp_path: Path) -> Iterator[Endpoint]:
    machine = QEMUMachine(file_binary, ["-machine", "none"], name="vm", workdir=tmp_path)
    with machine:
        machine.launch()
        yield Endpoint(machine)


def test_a_descriptor_qemu_keeps_is_seen_as_a_leak(lone: Endpoint, tmp_path: Path) -> None:
    before = lone.open_descriptors()
    (tmp_path / "held").write_bytes(b"")
    with open(tmp_path / "held", "rb") as held:
        fdset = lone.add_fd(held.fileno())
    with pytest.raises(CheckFailure, match="held"):
        check_descriptors_closed(before, lone.open_descriptors(), "add-fd")
    lone.remove_fdset(fdset)
    assert lone.fdsets() == []
    check_descriptors_closed(before, lone.open_descriptors(), "add-fd and remove-fd")


def test_the_file_transport_is_read_from_the_schema(lone: Endpoint, x86_binary: str) -> None:
    lone.require_transport("file")
    assert {"socket", "exec", "file"} <= lone.migration_transports()
    old = QEMUMachine(x86_binary, ["-machine", "none"], name="old", workdir=lone.machine.workdir)
    with old:
        old.launch()
        host = Endpoint(old)
        if host.version[:2] >= (8, 2):
            pytest.skip("the host's QEMU has the file transport")
        with pytest.raises(Unavailable, match=r"transport=file \(added in QEMU 8\.2\)") as gone:
            host.require_transport("file")
        assert not gone.value.expected


@pytest.fixture
def pair(file_binary: str, tmp_path: Path) -> Iterator[MigrationPair]:
    params = SuiteParams(
        profile=get_profile("x86_64"),
        accel="tcg",
        qemu_bin_src=file_binary,
        qemu_bin_dst=file_binary,
        strict=False,
    )
    with MigrationPair(params, tmp_path) as pair:
        pair.start()
        pair.src.stop()
        pair.allow_convergence()
        yield pair


def saved(pair: MigrationPair) -> FileChannel:
    """The stopped source saved into a file, not yet loaded."""
    channel = FileChannel()
    channel.prepare(pair.src, pair.dst)
    pair.src.migrate(channel.send_target(pair.src, pair.dst))
    pair.src.wait_for_status("completed", fail_on=UNSUCCESSFUL)
    channel.check_written()
    return channel


def load_must_fail(pair: MigrationPair, channel: FileChannel) -> str:
    """Loading the damaged file: the destination refuses it, or our checks find it.

    :return: the failure's message.
    """
    pair.dst.listen(channel.listen_target(pair.dst))
    with pytest.raises(CheckFailure) as caught:
        pair.wait_for_completion()
        verify_migration(pair)
    return str(caught.value)


def damage(path: Path, size: int = 64 * 1024) -> None:
    """Flip every bit of ``size`` bytes in the middle of the file at ``path``."""
    with open(path, "r+b") as file:
        file.seek(path.stat().st_size // 2)
        chunk = file.read(size)
        file.seek(-len(chunk), 1)
        file.write(bytes(b ^ 0xFF for b in chunk))


def test_a_whole_file_loads(pair: MigrationPair) -> None:
    channel = saved(pair)
    pair.dst.listen(channel.listen_target(pair.dst))
    pair.wait_for_completion()
    verify_migration(pair)


def test_a_truncated_file_fails(pair: MigrationPair) -> None:
    channel = saved(pair)
    path = pair.workdir / channel.path
    with open(path, "r+b") as file:
        file.truncate(path.stat().st_size // 2)
    load_must_fail(pair, channel)


def test_a_corrupted_file_fails(pair: MigrationPair) -> None:
    channel = saved(pair)
    damage(pair.workdir / channel.path)
    load_must_fail(pair, channel)


def test_corrupted_pages_the_destination_takes_are_found(pair: MigrationPair) -> None:
    """In a mapped-ram file the middle holds only page data: QEMU loads it, the compare fails."""
    pair.set_capabilities({"mapped-ram": True})
    channel = saved(pair)
    damage(pair.workdir / channel.path)
    assert "source and destination RAM differ" in load_must_fail(pair, channel)
