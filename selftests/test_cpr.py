"""Self-tests of the CPR support: modes from the schema, the kept RAM file, the verdicts."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterator, List

import pytest

from migtest.arch import MiB, get_profile
from migtest.checks import check_shared_ram_not_sent
from migtest.endpoint import Endpoint
from migtest.errors import CheckFailure, ConfigError, LaunchError, StateError, Unavailable
from migtest.machine import QEMUMachine
from migtest.pair import SHM_DIR, MigrationPair
from migtest.params import SuiteParams
from migtest.status import UNSUCCESSFUL
from migtest.transport import CprChannel, FileChannel
from migtest.verify import assert_ram_as_snapshot, snapshot_ram
from migtest.versions import binary_for

#: A QEMU with every CPR mode (cpr-exec: 10.2 on), and one with all but cpr-exec.
ALL_MODES_QEMU, NO_EXEC_QEMU = "11.1.3", "10.0.13"


def fetched(version: str) -> str:
    try:
        return binary_for(version, "x86_64")
    except Unavailable as exc:
        pytest.skip(str(exc))


def lone_endpoint(binary: str, workdir: Path) -> Iterator[Endpoint]:
    with QEMUMachine(binary, ["-machine", "none"], name="vm", workdir=workdir) as machine:
        machine.launch()
        yield Endpoint(machine)


def our_shared_files() -> List[Path]:
    """The RAM files pairs of this process made in /dev/shm and left."""
    return sorted(SHM_DIR.glob(f"migtest-{os.getpid()}-*"))


def assert_no_shared_file_left() -> None:
    left = our_shared_files()
    assert not left, f"shared RAM files left behind: {left}"


# -- modes, from the schema ----------------------------------------------------


def test_a_mode_this_qemu_lacks_names_its_version(x86_binary: str, tmp_path: Path) -> None:
    for side in lone_endpoint(x86_binary, tmp_path):
        if side.version[:2] >= (10, 0):
            pytest.skip("the host's QEMU has cpr-transfer")
        with pytest.raises(Unavailable, match=r"mode=cpr-transfer \(added in QEMU 10\.0\)") as gone:
            side.require_mode("cpr-transfer")
        assert not gone.value.expected  # strict mode keeps it a CANCEL


def test_cpr_exec_is_missing_before_10_2(tmp_path: Path) -> None:
    for side in lone_endpoint(fetched(NO_EXEC_QEMU), tmp_path):
        side.require_mode("cpr-reboot")
        side.require_mode("cpr-transfer")
        with pytest.raises(Unavailable, match=r"mode=cpr-exec \(added in QEMU 10\.2\)") as gone:
            side.require_mode("cpr-exec")
        assert not gone.value.expected


def test_every_mode_is_there_in_11_1(tmp_path: Path) -> None:
    for side in lone_endpoint(fetched(ALL_MODES_QEMU), tmp_path):
        for mode in ("cpr-reboot", "cpr-transfer", "cpr-exec"):
            side.require_mode(mode)
        side.set_mode("cpr-reboot")
        assert side.parameters()["mode"] == "cpr-reboot"


def test_a_mode_no_qemu_has_is_refused(tmp_path: Path) -> None:
    for side in lone_endpoint(fetched(ALL_MODES_QEMU), tmp_path):
        with pytest.raises(Unavailable, match="mode=cpr-teleport"):
            side.set_mode("cpr-teleport")


# -- the cpr channel -------------------------------------------------------------


def test_the_cpr_channel_goes_next_to_the_main_one() -> None:
    main = [{"channel-type": "main", "addr": {"transport": "socket"}}]
    channels = CprChannel().next_to(main)
    assert [c["channel-type"] for c in channels] == ["main", "cpr"]
    assert channels[1]["addr"] == {"transport": "socket", "type": "unix", "path": "cpr.sock"}
    with pytest.raises(ConfigError):
        CprChannel().next_to("unix:migration.sock")


# -- the RAM file a later destination maps --------------------------------------


def test_the_ram_file_is_kept_until_the_destination_maps_it(
    tcg_params: SuiteParams, tmp_path: Path
) -> None:
    with MigrationPair(tcg_params, tmp_path) as pair:
        pair.start(shared_memory=True, later_destination=True)
        kept = pair.shared_memory_file
        assert kept is not None and kept.exists()
        pair.start_destination()
        assert pair.shared_memory_file is None and not kept.exists()
        assert pair.shares_memory
    assert_no_shared_file_left()


def test_the_ram_file_goes_when_no_destination_ever_came(
    tcg_params: SuiteParams, tmp_path: Path
) -> None:
    with MigrationPair(tcg_params, tmp_path) as pair:
        pair.start(shared_memory=True, later_destination=True)
        assert our_shared_files()
    assert_no_shared_file_left()


def test_the_ram_file_goes_when_the_destination_fails(
    tcg_params: SuiteParams, tmp_path: Path
) -> None:
    with MigrationPair(tcg_params, tmp_path) as pair:
        pair.start(shared_memory=True, later_destination=True)
        with pytest.raises(LaunchError):
            pair.start_destination(dst_args=["-no-such-option"])
    assert_no_shared_file_left()


def test_a_destination_never_connected_is_shut_down(
    tcg_params: SuiteParams, tmp_path: Path
) -> None:
    with MigrationPair(tcg_params, tmp_path) as pair:
        pair.start(shared_memory=True, later_destination=True)
        # Waits for its cpr channel forever (10.0 on), or runs (7.2): either way not connected.
        pair.start_destination(dst_args=CprChannel().incoming_args(), connect=False)
        waiting = pair._machines[-1]
    assert not waiting.is_running()
    assert_no_shared_file_left()


def test_the_leak_check_sees_a_file_left(tmp_path: Path) -> None:
    left = SHM_DIR / f"migtest-{os.getpid()}-leak"
    left.write_bytes(b"")
    try:
        with pytest.raises(AssertionError, match="left behind"):
            assert_no_shared_file_left()
    finally:
        left.unlink()


# -- the verdicts ---------------------------------------------------------------


class _Paused:
    """A paused machine whose RAM reads as ``ram`` (one range)."""

    name = "fake"

    def __init__(self, ram: bytes) -> None:
        self.ram = ram

    def cmd(self, command: str, **arguments: Any) -> Any:
        assert command == "query-status"
        return {"running": False, "status": "paused"}

    def read_memory(self, address: int, size: int) -> memoryview:
        return memoryview(self.ram[address : address + size])


def test_ram_changed_since_the_snapshot_fails() -> None:
    profile = get_profile("x86_64")
    size = profile.ram_ranges[-1][1]
    ram = bytearray(size)
    saved = snapshot_ram(_Paused(bytes(ram)), profile)  # type: ignore[arg-type]
    assert_ram_as_snapshot(saved, _Paused(bytes(ram)), profile, "old")  # type: ignore[arg-type]
    ram[2 * MiB + 5] ^= 0x40
    with pytest.raises(CheckFailure, match="RAM of old and of fake differ"):
        assert_ram_as_snapshot(saved, _Paused(bytes(ram)), profile, "old")  # type: ignore[arg-type]


def test_a_snapshot_of_other_ranges_is_refused() -> None:
    profile = get_profile("x86_64")
    ram = bytes(profile.ram_ranges[-1][1])
    saved = snapshot_ram(_Paused(ram), profile)  # type: ignore[arg-type]
    with pytest.raises(StateError, match="ranges"):
        assert_ram_as_snapshot(saved[:1], _Paused(ram), profile, "old")  # type: ignore[arg-type]


def test_a_cpr_reboot_that_copies_shared_ram_fails(tmp_path: Path) -> None:
    """cpr-reboot without x-ignore-shared copies the shared RAM: the check says so."""
    binary = fetched(NO_EXEC_QEMU)
    params = SuiteParams(
        profile=get_profile("x86_64"),
        accel="tcg",
        qemu_bin_src=binary,
        qemu_bin_dst=binary,
        strict=False,
    )
    with MigrationPair(params, tmp_path) as pair:
        pair.start(shared_memory=True, later_destination=True)
        pair.src.set_mode("cpr-reboot")
        channel = FileChannel()
        channel.create(tmp_path)
        pair.src.migrate(channel.send_target(pair.src, pair.src))
        pair.src.wait_for_status("completed", fail_on=UNSUCCESSFUL)
        final = pair.src.read_final_stats()
        with pytest.raises(CheckFailure, match="shared RAM"):
            check_shared_ram_not_sent(final["ram"], params.profile.memory_mib * MiB)
    assert_no_shared_file_left()


def test_taking_over_a_qemu_that_exec_d_nothing_fails(x86_binary: str, tmp_path: Path) -> None:
    """No exec'd QEMU listens: a LaunchError, and the old one keeps its process."""
    with QEMUMachine(x86_binary, ["-machine", "none"], name="old", workdir=tmp_path) as old:
        old.launch()
        new = QEMUMachine(x86_binary, ["-machine", "none"], name="new", workdir=tmp_path)
        with pytest.raises(LaunchError, match=r"listen on new-qmp\.sock"):
            new.take_over(old, "new-qmp.sock", timeout=0.5)
        assert old.is_running() and old.cmd("query-status")
        assert not new.is_running()
