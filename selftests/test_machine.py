"""QEMUMachine against a real QEMU (``-machine none`` starts in milliseconds)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import time
from pathlib import Path

import pytest

from migtest.arch import get_profile
from migtest.errors import (
    LaunchError,
    QMPConnectionLost,
    QMPError,
    StateError,
    Unavailable,
    WaitTimeout,
)
from migtest.machine import QEMUMachine
from migtest.versions import LABELS, binary_for, get_version
from migtest.wait import wait_for


def machine(binary: str, workdir: Path, *args: str) -> QEMUMachine:
    return QEMUMachine(binary, ["-machine", "none", *args], name="vm", workdir=workdir)


def process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_launch_and_query(x86_binary: str, workdir: Path) -> None:
    with machine(x86_binary, workdir) as vm:
        vm.launch()
        assert vm.is_running()
        assert vm.cmd("query-status")["status"] in ("running", "prelaunch")


def test_command_error_carries_class_and_description(x86_binary: str, workdir: Path) -> None:
    with machine(x86_binary, workdir) as vm:
        vm.launch()
        with pytest.raises(QMPError) as error:
            vm.cmd("no-such-command")
        assert error.value.error_class == "CommandNotFound"
        assert "no-such-command" in error.value.desc
        assert error.value.command == "no-such-command"


def test_python_argument_names_become_qmp_names(x86_binary: str, workdir: Path) -> None:
    with machine(x86_binary, workdir) as vm:
        vm.launch()
        # QEMU refuses an unknown argument: command_line would be an error.
        version = vm.cmd("human-monitor-command", command_line="info version")
        assert version.split(".")[0].isdigit(), version


def test_event_wait_times_out_saying_what_it_waited_for(x86_binary: str, workdir: Path) -> None:
    with machine(x86_binary, workdir) as vm:
        vm.launch()
        with pytest.raises(WaitTimeout) as timeout:
            vm.wait_event("NEVER_SENT", timeout=0.2)
        assert "event NEVER_SENT on vm" in str(timeout.value)
        assert "0.2 s" in str(timeout.value)


def test_event_is_received(x86_binary: str, workdir: Path) -> None:
    with machine(x86_binary, workdir, "-S") as vm:
        vm.launch()
        vm.cmd("cont")
        assert vm.wait_event("RESUME", timeout=10)["event"] == "RESUME"
        assert [e["event"] for e in vm.events("RESUME")] == ["RESUME"]


def test_launch_failure_shows_command_line_and_output(x86_binary: str, workdir: Path) -> None:
    vm = machine(x86_binary, workdir, "-no-such-option")
    with pytest.raises(LaunchError) as failure:
        vm.launch()
    message = str(failure.value)
    assert "-no-such-option" in message  # in the command line, and in QEMU's complaint
    assert "invalid option" in message
    assert failure.value.exitcode == 1
    assert not vm.is_running()
    vm.shutdown()


def test_missing_binary_is_a_launch_error(workdir: Path) -> None:
    vm = machine("/nonexistent/qemu-system-x86_64", workdir)
    with pytest.raises(LaunchError, match="No such file"):
        vm.launch()


def test_no_process_left_after_shutdown(x86_binary: str, workdir: Path) -> None:
    vm = machine(x86_binary, workdir)
    vm.launch()
    pid = vm.pid
    assert pid is not None and process_exists(pid)
    vm.shutdown()
    assert not process_exists(pid)
    assert vm.exitcode == 0
    vm.shutdown()  # idempotent


def test_context_manager_kills_even_on_error(x86_binary: str, workdir: Path) -> None:
    with pytest.raises(RuntimeError), machine(x86_binary, workdir) as vm:
        vm.launch()
        pid = vm.pid
        raise RuntimeError("test body failed")
    assert pid is not None and not process_exists(pid)


def test_commands_after_shutdown_are_refused(x86_binary: str, workdir: Path) -> None:
    vm = machine(x86_binary, workdir)
    with pytest.raises(StateError):
        vm.cmd("query-status")
    vm.launch()
    vm.shutdown()
    with pytest.raises(StateError):
        vm.cmd("query-status")


def test_file_descriptor_is_passed(x86_binary: str, workdir: Path) -> None:
    ours, theirs = socket.socketpair()
    with ours, theirs, machine(x86_binary, workdir) as vm:
        vm.launch()
        vm.cmd_with_fd(theirs.fileno(), "chan")
        vm.cmd("closefd", fdname="chan")
        with pytest.raises(QMPError, match="File descriptor named 'chan' not found"):
            vm.cmd("closefd", fdname="chan")


def test_console_and_output_files(x86_binary: str, workdir: Path) -> None:
    """The guest's serial console, and QEMU's stdout and stderr, each land in
    their file in the work directory, and are read back from there.

    It takes a guest that prints: with ``-machine none`` there is no serial
    port, and both files stay empty however they are read, or not read.
    """
    profile = get_profile("x86_64")
    guest = workdir / "guest.img"  # QEMU locks the image it boots: a copy of our own
    shutil.copyfile(profile.guest_file(), guest)
    args = [
        *profile.qemu_args("tcg", guest),  # the guest prints 'A' as it starts
        "-chardev", "stdio,id=hmp", "-mon", "chardev=hmp",  # a monitor's banner on stdout
        "-d", "cpu_reset",  # the vCPU's reset logged on stderr
    ]  # fmt: skip
    with QEMUMachine(x86_binary, args, name="vm", workdir=workdir) as vm:
        vm.launch()
        wait_for(
            lambda: ("A" in vm.console_text(), vm.console_text()[-20:]),
            what="the guest's 'A' on the console",
            timeout=30,
        )
        wait_for(
            lambda: ("CPU Reset" in vm.output, vm.output[-200:]),
            what="QEMU's reset log in its output",
            timeout=30,
        )
    assert vm.console_path.parent == vm.output_path.parent == workdir
    assert "monitor - type 'help'" in vm.output, "stdout is not in the output"
    assert "monitor" not in vm.console_text() and "CPU Reset" not in vm.console_text()


def fd_is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def test_descriptor_qemu_may_still_open_lives_as_long_as_qemu(
    x86_binary: str, workdir: Path
) -> None:
    with machine(x86_binary, workdir) as vm:
        vm.launch()
        fd = os.memfd_create("selftest")
        vm.close_after_exit(fd)
        assert fd_is_open(fd), "closed while QEMU could still open /proc/<pid>/fd/<n>"
        vm.shutdown()
        assert not fd_is_open(fd)
        late = os.memfd_create("selftest-late")
        vm.close_after_exit(late)
        assert not fd_is_open(late), "QEMU is gone: nothing to wait for"


def test_memory_is_read_through_a_mapped_dump(x86_binary: str, workdir: Path) -> None:
    with machine(x86_binary, workdir, "-m", "16M") as vm:
        vm.launch()
        dump = vm.read_memory(0, 1 << 20)
        assert len(dump) == 1 << 20 and dump.readonly
        assert all(path.suffix == ".log" for path in workdir.iterdir()), "a dump file is left"


@pytest.mark.parametrize("label", LABELS)
def test_every_version_gets_a_monitor_it_does_not_call_deprecated(
    label: str, workdir: Path
) -> None:
    """QEMU 11.0 deprecated ``-mon``: those that have ``-object monitor-qmp`` get it."""
    try:
        binary = binary_for(label, "x86_64")
    except Unavailable as exc:
        pytest.skip(str(exc))
    with machine(binary, workdir) as vm:
        vm.launch()
        assert vm.cmd("query-status")["status"] in ("running", "prelaunch")
        vm.shutdown()
        assert "deprecated" not in vm.output, vm.output
        assert ("monitor-qmp" in " ".join(vm.command_line(3))) is (
            get_version(label).number >= (11,)
        )


def test_waiting_for_an_event_from_a_dead_qemu_ends_at_once(x86_binary: str, workdir: Path) -> None:
    """No event can come from a QEMU that exited: the wait says so, not its timeout."""
    with machine(x86_binary, workdir) as vm:
        vm.launch()
        assert vm.pid is not None
        os.kill(vm.pid, signal.SIGKILL)  # it dies by itself, as far as the machine knows
        started = time.monotonic()
        with pytest.raises(QMPConnectionLost, match="while waiting for event RESUME"):
            vm.wait_event("RESUME", timeout=60)
        assert time.monotonic() - started < 10


def test_waiting_for_qemus_words(x86_binary: str, workdir: Path) -> None:
    """Found as soon as printed; else the timeout says what was printed instead."""
    with machine(x86_binary, workdir, "-object", "tls-creds-anon,id=t,endpoint=nonsense") as vm:
        with pytest.raises(LaunchError):
            vm.launch()
        said = vm.wait_for_output(r"Parameter '\w+' does not accept", timeout=5)
        assert said == "Parameter 'endpoint' does not accept"
        with pytest.raises(WaitTimeout, match=r"to print 'never printed'.*nonsense"):
            vm.wait_for_output("never printed", timeout=0.3)
