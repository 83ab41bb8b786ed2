"""One QEMU process, with its QMP monitor and its console.

:class:`QEMUMachine` knows nothing about migration or architectures: it
starts a binary with the arguments it is given, plus the monitor and console
plumbing that every machine of the suite shares, and guarantees that the
process is gone when it is done with it.
"""

from __future__ import annotations

import array
import ctypes
import enum
import errno
import logging
import mmap
import os
import re
import select
import shlex
import signal
import socket
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from subprocess import Popen
from types import TracebackType
from typing import IO, Any, Callable, Dict, FrozenSet, List, Optional, Sequence, Set, Tuple, Type

from .artifacts import console_file, output_file
from .console import ConsoleRecorder
from .errors import LaunchError, MigtestError, QMPConnectionLost, StateError, WaitTimeout
from .host import qmp_monitor_option
from .qmp import Message, QMPConnection, execute_together
from .wait import wait_for

#: Seconds QEMU may take from exec to its QMP greeting (measured: ~30 ms).
LAUNCH_TIMEOUT = 30.0
#: Seconds a QMP command may take; pmemsave of a few hundred MiB is the slowest.
COMMAND_TIMEOUT = 60.0
#: Seconds QEMU gets to answer ``quit``, and then to exit, before it is
#: killed.  A healthy QEMU takes milliseconds; one that takes seconds is
#: stuck (a QEMU 7.2 destination left in postcopy by a cancelled source
#: never answers), and waiting longer only slows the suite down.
SHUTDOWN_TIMEOUT = 3.0
#: Seconds a killed QEMU may take to be gone (measured: a few milliseconds).
KILL_TIMEOUT = 5.0
#: How the debug log's record of a launch starts, before the command line:
#: ``scripts/bench`` reads it as the moment QEMU started.
LAUNCH_PREFIX = "launch: "

_PR_SET_PDEATHSIG = 1
# Looked up now: between fork and exec, in a process with threads, the child
# must do nothing but the system call (no dlopen, no allocation).
_prctl = ctypes.CDLL(None, use_errno=True).prctl


def _die_with_parent() -> None:
    """Ask Linux to kill QEMU when the thread that started it ends.

    Runs in the child between fork and exec.  Whatever happens to the test
    process (SIGKILL, a crash, Avocado's timeout), no QEMU outlives it.
    """
    _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def end_with_job(signum: int) -> Callable[[], None]:
    """Have ``signum`` sent to this process when its parent or grandparent ends.

    For the process that runs a test, under Avocado's runner (its parent),
    under Avocado (its grandparent).  Avocado ends a task by signalling the
    runner alone, and kills it a second later, never the test under it;
    after a second interrupt it exits without ending the tasks it has not
    reached.  A test left running would keep its QEMUs, whose own
    parent-death signal waits for the test process.  The parent's end is
    seen by the kernel (``PR_SET_PDEATHSIG``), the grandparent's by a
    thread that waits on it.

    :return: a function that undoes both.
    :raise OSError: the kernel refused.
    """
    parent = os.getppid()
    grandparent = _parent_of(parent)
    if _prctl(_PR_SET_PDEATHSIG, signum) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != parent:  # it ended before we asked
        os.kill(os.getpid(), signum)
    stop_watching = _signal_when_gone(grandparent, signum) if grandparent > 1 else None

    def undo() -> None:
        _prctl(_PR_SET_PDEATHSIG, 0)
        if stop_watching is not None:
            stop_watching()

    return undo


def _parent_of(pid: int) -> int:
    """The parent of process ``pid``, or 0 if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0
    return int(stat[stat.rindex(")") + 2 :].split()[1])  # after "pid (comm) state"


def _signal_when_gone(pid: int, signum: int) -> Callable[[], None]:
    """Send ``signum`` to this process when process ``pid`` ends.

    :return: a function that stops watching.
    """
    try:
        pidfd = os.pidfd_open(pid)  # names this process, whatever later reuses its PID
    except ProcessLookupError:  # gone already
        os.kill(os.getpid(), signum)
        return lambda: None
    wake, woken = os.pipe()

    def watch() -> None:
        # No deadline: this is no wait for a result, it lasts as long as
        # the test, and stop() ends it.
        try:
            ready, _, _ = select.select([pidfd, wake], [], [])
            if pidfd in ready:
                os.kill(os.getpid(), signum)
        finally:
            os.close(pidfd)
            os.close(wake)

    thread = threading.Thread(target=watch, name=f"migtest-watch-{pid}", daemon=True)
    thread.start()

    def stop() -> None:
        try:
            os.write(woken, b"x")
        except BrokenPipeError:  # the watch has ended: it saw the process go
            pass
        finally:
            os.close(woken)

    return stop


# The parent-death signal fires when the *thread* that forked QEMU ends, and
# Avocado runs each test method in a thread of its own that ends before
# tearDown.  So every QEMU is started from this one thread, which lives as
# long as the process does.
_launcher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="migtest-launcher")

# Every QEMU this process started and has not reaped, by PID, and why no more
# may start (None while they may).  Reentrant: stop_all() runs in signal
# handlers, which can interrupt the main thread inside stop_all() itself.
_lock = threading.RLock()
_running: Dict[int, Popen[bytes]] = {}
_stopped: Optional[str] = None


def _spawn(
    cmdline: Sequence[str], output: IO[bytes], fds: Sequence[int], cwd: Path
) -> Popen[bytes]:
    def start() -> Popen[bytes]:
        # Under the lock, so that stop_all() sees every QEMU that started,
        # and none starts after it.
        with _lock:
            if _stopped is not None:
                raise StateError(f"no QEMU may start any more: {_stopped}")
            process = subprocess.Popen(
                cmdline,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                pass_fds=fds,
                cwd=cwd,
                preexec_fn=_die_with_parent,
            )
            _running[process.pid] = process
            return process

    return _launcher.submit(start).result()


def stop_all(reason: str) -> None:
    """Kill every QEMU this process started, at once, and let no other start.

    For a test that is being interrupted (Ctrl-C, Avocado ending the task,
    a timeout): its method may still be running in its thread, using the
    monitors, so no QEMU can be asked to quit; and Avocado, which gives a
    task a second before it kills the runner and moves on, may exit right
    after.  Killing by PID, and waiting for the kernel to be done, is what
    leaves nothing behind before then.  Each machine's own
    :meth:`QEMUMachine.shutdown` still closes its monitor afterwards.

    Safe in a signal handler, and to call again: the first reason stays.

    :param reason: why, for the error of a later :meth:`QEMUMachine.launch`.
    :raise WaitTimeout: a killed QEMU did not go within :data:`KILL_TIMEOUT`.
    """
    global _stopped
    with _lock:
        if _stopped is None:
            _stopped = reason
        processes = list(_running.values())
    for process in processes:
        # By PID; Popen sends nothing once it has reaped it, so never to a reused PID.
        process.kill()

    def check() -> Tuple[bool, List[int]]:
        alive = [p.pid for p in processes if p.poll() is None]
        return not alive, alive

    wait_for(check, what="the killed QEMUs to be gone", timeout=KILL_TIMEOUT)


class Runstate(enum.Enum):
    """Where a machine is in its life."""

    CREATED = "created"
    RUNNING = "running"
    EXITED = "exited"


class QEMUMachine:
    """A QEMU process driven over QMP.

    :param binary: path or name of the QEMU system emulator.
    :param args: the machine's own arguments (machine type, memory, guest...).
    :param name: short name, used for logs and file names (``src``, ``dst``).
    :param workdir: where the console and output files go, and QEMU's
        working directory, so relative paths in commands (``unix:x.sock``)
        land there, however long the directory's own path is.

    The process's stdout and stderr go to ``<name>.log`` and the guest's
    serial console to ``<name>-console.log``, both in ``workdir``; the
    console's bytes are also kept with the moment each arrived
    (:attr:`console`).
    """

    def __init__(self, binary: str, args: Sequence[str], *, name: str, workdir: Path) -> None:
        self.binary = binary
        self.name = name
        self.workdir = Path(workdir)
        self.console_path = self.workdir / console_file(name)
        self.output_path = self.workdir / output_file(name)
        self._args = list(args)
        self._process: Optional[subprocess.Popen[bytes]] = None
        self._cmdline: List[str] = []
        self._qmp: Optional[QMPConnection] = None
        self._state = Runstate.CREATED
        self._events: List[Message] = []
        self._close_after_exit: List[int] = []
        self._next_event = 0
        self._log = logging.getLogger(f"migtest.machine.{name}")
        #: The console with its arrival stamps, once launched (not for a
        #: QEMU another one exec'd into: see :meth:`exec_command_line`).
        self.console: Optional[ConsoleRecorder] = None

    # -- life cycle ---------------------------------------------------------

    def command_line(self, qmp_fd: int, console_fd: Optional[int] = None) -> List[str]:
        """The full command line, with QMP on the inherited descriptor ``qmp_fd``.

        :param console_fd: the console's socket (:class:`ConsoleRecorder`);
            QEMU still writes the console file, as its log.  Without it,
            QEMU writes only the file.
        """
        console = f"file,id=console,path={self.console_path.name}"
        if console_fd is not None:
            console = f"socket,id=console,fd={console_fd},logfile={self.console_path.name}"
        return [
            self.binary,
            "-nodefaults",
            "-display", "none",
            # QEMU names its threads (live_migration, multifdsend_3...),
            # which a timed-out wait logs (migtest.threads), only when asked
            # before 11.1; 11.1 always does and deprecates the option: drop
            # it here once a QEMU the suite runs refuses it.
            "-name", f"{self.name},debug-threads=on",
            "-chardev", f"socket,id=qmp,fd={qmp_fd}",
            *qmp_monitor_option(self.binary, "qmp"),
            # Relative to QEMU's working directory, the workdir: a path with a
            # comma in it would end the option.
            "-chardev", console,
            "-serial", "chardev:console",
            *self._args,
        ]  # fmt: skip

    def exec_command_line(self, qmp_path: str) -> List[str]:
        """The command line of a QEMU another one exec's into (cpr-exec).

        As :meth:`command_line`, with QMP on a unix socket ``qmp_path``
        (relative to the workdir) that QEMU listens on, and the console in
        its file only: nothing of ours can be handed to a process we do
        not start.
        """
        return [
            self.binary,
            "-nodefaults",
            "-display", "none",
            "-name", f"{self.name},debug-threads=on",
            "-chardev", f"socket,id=qmp,path={qmp_path},server=on,wait=off",
            *qmp_monitor_option(self.binary, "qmp"),
            "-chardev", f"file,id=console,path={self.console_path.name}",
            "-serial", "chardev:console",
            *self._args,
        ]  # fmt: skip

    def take_over(self, old: QEMUMachine, qmp_path: str, timeout: float = LAUNCH_TIMEOUT) -> None:
        """Become the QEMU that ``old`` exec'd into, with :meth:`exec_command_line` (cpr-exec).

        The process stays ``old``'s (its PID, its output file): this
        machine owns it from now on, and ``old`` is left exited.

        :raise LaunchError: no monitor listened on ``qmp_path`` in time
            (the exec failed, or the new QEMU exited).
        """
        if self._state is not Runstate.CREATED or old._process is None:
            raise StateError(f"{self.name}: take_over() needs a new machine and a running old one")
        directory = os.open(self.workdir, os.O_RDONLY | os.O_DIRECTORY)

        def dial() -> Tuple[bool, str]:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:  # through the directory: the absolute path may not fit an address
                sock.connect(f"/proc/self/fd/{directory}/{qmp_path}")
            except OSError as exc:
                sock.close()
                return (
                    False,
                    f"{exc.strerror} (QEMU {'exited' if old.exitcode is not None else 'runs'})",
                )
            dialled.append(sock)
            return True, "connected"

        dialled: List[socket.socket] = []
        cmdline = self.exec_command_line(qmp_path)
        try:
            wait_for(dial, what=f"the exec'd QEMU to listen on {qmp_path}", timeout=timeout)
        except WaitTimeout as exc:
            raise LaunchError(str(exc), cmdline, old.exitcode, old.output) from exc
        finally:
            os.close(directory)
        self._process, old._process = old._process, None
        self.output_path, self._cmdline = old.output_path, cmdline
        old.kill()  # no process any more: only closes its monitor
        self._state = Runstate.RUNNING
        self._qmp = QMPConnection(dialled[0], self.name)
        self.connect(timeout)

    def launch(self, *, connect: bool = True) -> None:
        """Start QEMU and connect to its monitor.

        :param connect: wait for the monitor now; without, call
            :meth:`connect` later (a cpr-transfer destination opens its
            monitor only once the source has sent it the cpr state).
        :raise LaunchError: QEMU could not be executed, exited, or did not
            greet us in time; the error shows the command line and output.
        """
        if self._state is not Runstate.CREATED:
            raise StateError(f"{self.name}: launch() called twice")
        self.console_path.touch()
        ours, theirs = socket.socketpair()
        self.console = console = ConsoleRecorder(self.name)
        cmdline = self.command_line(theirs.fileno(), console.qemu_fd)
        self._log.debug(LAUNCH_PREFIX + "%s", shlex.join(cmdline))
        try:
            with open(self.output_path, "wb") as output:
                self._process = _spawn(
                    cmdline, output, [theirs.fileno(), console.qemu_fd], self.workdir
                )
        except OSError as exc:
            ours.close()
            console.close()
            raise LaunchError(str(exc), cmdline, None, "") from exc
        except StateError:
            ours.close()
            console.close()
            raise
        finally:
            theirs.close()
        console.start()
        self._state = Runstate.RUNNING
        self._qmp = QMPConnection(ours, self.name)
        self._cmdline = cmdline
        if connect:
            self.connect()

    def connect(self, timeout: float = LAUNCH_TIMEOUT) -> None:
        """Wait for the greeting of a QEMU launched with ``connect=False``.

        :raise LaunchError: QEMU exited, or did not greet us in time.
        """
        if self._qmp is None:
            raise StateError(f"{self.name}: connect() before launch()")
        try:
            self._qmp.connect(timeout)
        except (QMPConnectionLost, WaitTimeout) as exc:
            self.kill()
            raise LaunchError(str(exc), self._cmdline, self.exitcode, self.output) from exc

    def shutdown(self, timeout: float = SHUTDOWN_TIMEOUT) -> None:
        """Ask QEMU to quit, and kill it if it has not within ``timeout``.

        A QEMU that could not be asked (its monitor is busy in another
        thread, or does not answer) is killed at once: it would not quit.

        Idempotent, and safe in every state: after a failed launch, after
        QEMU exited by itself, or twice.
        """
        if self._process is not None and self.is_running() and self._ask_to_quit(timeout):
            try:
                self._process.wait(timeout)
            except subprocess.TimeoutExpired:
                self._log.debug("did not quit within %g s: killing", timeout)
        self.kill()

    def _ask_to_quit(self, timeout: float) -> bool:
        """Send ``quit``; return whether QEMU got it, and is worth waiting for."""
        if self._qmp is None:
            return False
        try:
            self._pull_events(0)  # keep what QEMU said last, for the logs
            self._qmp.execute("quit", None, timeout)
        except QMPConnectionLost as exc:
            # QEMU closes the monitor as it exits, at times before answering.
            self._log.debug("quit: %r", exc)
        except Exception as exc:  # noqa: BLE001 - killed instead, by the caller
            # Not received: the monitor is busy in another thread (the
            # method of a test that was ended, still running), or QEMU does
            # not answer.  Waiting could only end in the kill.
            self._log.debug("quit not sent (%r): killing", exc)
            return False
        return True

    def kill(self) -> None:
        """Kill QEMU (by its PID, never by name) and close the monitor."""
        if self._process is not None:
            if self._process.poll() is None:
                self._process.kill()
                self._process.wait()
            with _lock:
                _running.pop(self._process.pid, None)
        if self.console is not None and not self.is_running():
            self.console.close()  # QEMU is gone: what it wrote is all there
        while self._close_after_exit:
            os.close(self._close_after_exit.pop())
        if self._qmp is not None:
            self._qmp.close()
            self._qmp = None
        if self._state is Runstate.RUNNING:
            self._state = Runstate.EXITED

    def __enter__(self) -> QEMUMachine:
        return self

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.shutdown()

    # -- process facts ------------------------------------------------------

    @property
    def pid(self) -> Optional[int]:
        """QEMU's process id, once launched."""
        return self._process.pid if self._process else None

    @property
    def exitcode(self) -> Optional[int]:
        """QEMU's exit code, or ``None`` while it runs (or before launch)."""
        return self._process.poll() if self._process else None

    def is_running(self) -> bool:
        """Whether the QEMU process is alive."""
        return self._process is not None and self._process.poll() is None

    @property
    def output(self) -> str:
        """What QEMU printed on stdout and stderr so far."""
        try:
            return self.output_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def console_text(self) -> str:
        """What the guest printed on its serial console so far."""
        try:
            return self.console_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def wait_for_output(self, pattern: str, timeout: float) -> str:
        """Wait until QEMU prints something matching ``pattern`` (a regex); return it.

        QEMU tells why it refused a migration on its stderr, sometimes a
        moment after the other side has reported the failure.
        """
        compiled = re.compile(pattern)

        def check() -> Tuple[bool, str]:
            found = compiled.search(self.output)
            if found is not None:
                return True, found.group(0)
            return False, self.output[-300:] or "nothing"

        what = f"{self.name} QEMU to print {pattern!r} (what it printed last)"
        return wait_for(check, what=what, timeout=timeout)

    def wait_for_exit(self, timeout: float) -> int:
        """Wait until QEMU exits by itself; return its exit code."""

        def check() -> Tuple[bool, int]:
            code = self.exitcode
            return code is not None, -1 if code is None else code

        return wait_for(check, what=f"{self.name} QEMU to exit", timeout=timeout)

    # -- monitor ------------------------------------------------------------

    def _monitor(self) -> QMPConnection:
        if self._qmp is None or self._state is not Runstate.RUNNING:
            raise StateError(f"{self.name}: the machine is {self._state.value}, not running")
        return self._qmp

    def cmd(self, command: str, timeout: float = COMMAND_TIMEOUT, **arguments: Any) -> Any:
        """Run a QMP command and return its result.

        Arguments are given with Python names: ``downtime_limit=1`` is sent
        as ``downtime-limit``.

        Commands that change something (not ``query-*``) are logged here as
        well as in the QMP trace: they are the story of the test.

        :raise QMPError: QEMU answered with an error (carries its class).
        """
        args = {key.replace("_", "-"): value for key, value in arguments.items()}
        if not command.startswith("query-"):
            self._log.debug("%s %s", command, args)
        return self._monitor().execute(command, args or None, timeout)

    def cmd_with_fd(self, fd: int, fdname: str, timeout: float = COMMAND_TIMEOUT) -> None:
        """Hand ``fd`` to QEMU under the name ``fdname`` (SCM_RIGHTS + ``getfd``)."""
        monitor = self._monitor()
        monitor.send_fd(fd)
        monitor.execute("getfd", {"fdname": fdname}, timeout)

    def cmd_passing_fd(
        self, fd: int, command: str, timeout: float = COMMAND_TIMEOUT, **arguments: Any
    ) -> Any:
        """Run ``command`` with ``fd`` passed along (SCM_RIGHTS): ``add-fd`` takes it.

        :raise QMPError: QEMU answered with an error.
        """
        self._monitor().send_fd(fd)
        return self.cmd(command, timeout, **arguments)

    def _pull_events(self, wait: float) -> None:
        """Move events that QEMU sent into the history, waiting up to ``wait``."""
        monitor = self._monitor()
        event = monitor.next_event(wait)
        while event is not None:
            self._log.debug("event: %s %s", event.get("event"), event.get("data", {}))
            self._events.append(event)
            event = monitor.next_event(0)

    def events(self, name: Optional[str] = None) -> List[Message]:
        """Every event received so far (or those called ``name``), oldest first."""
        if self._qmp is not None and self._state is Runstate.RUNNING:
            self._pull_events(0)
        return [e for e in self._events if name is None or e["event"] == name]

    def wait_event(
        self,
        name: str,
        timeout: float,
        match: Optional[Callable[[Dict[str, Any]], bool]] = None,
    ) -> Message:
        """Wait for the next event ``name`` whose data satisfies ``match``.

        Events are consumed in order: the returned one, and any before it,
        will not be returned by a later ``wait_event``.  They stay in
        :meth:`events`.

        :raise QMPConnectionLost: QEMU exited first: no event can come.
        """

        def check() -> Tuple[bool, Any]:
            self._pull_events(0.01)
            while self._next_event < len(self._events):
                event = self._events[self._next_event]
                self._next_event += 1
                if event["event"] == name and (match is None or match(event.get("data", {}))):
                    return True, event
            recent = [e["event"] for e in self._events[-5:]]
            if not self.is_running():
                raise QMPConnectionLost(
                    f"{self.name}: QEMU exited with {self.exitcode} while waiting for event "
                    f"{name}; latest events: {recent}"
                )
            return False, f"latest events: {recent}"

        event: Message = wait_for(
            check, what=f"event {name} on {self.name}", timeout=timeout, interval=0
        )
        return event

    def close_after_exit(self, fd: int) -> None:
        """Close our descriptor ``fd`` once this QEMU is gone (at once if it is)."""
        if self.is_running():
            self._close_after_exit.append(fd)
        else:
            os.close(fd)

    def read_memory(self, address: int, size: int) -> memoryview:
        """Read guest physical memory; see :func:`read_memories`."""
        return read_memories([self], address, size)[0]

    def __repr__(self) -> str:
        return f"<QEMUMachine {self.name} pid={self.pid} {self._state.value}>"


def read_memories(machines: Sequence[QEMUMachine], address: int, size: int) -> List[memoryview]:
    """Read the same guest physical range from several machines at once.

    Two ways, the fast one first.  Each QEMU holds its guest's RAM in its
    own address space: HMP ``gpa2hva`` says where, and we read it from
    ``/proc/<pid>/mem``, each machine in a thread of its own (the read
    releases the GIL), with no QMP command while reading, and pages that
    QEMU maps to Linux's zero page are not copied at all.  After a
    migration, reading and comparing both sides' RAM this way took about
    half the time of ``pmemsave`` (0.3 s against 0.8 s for ppc64's
    256 MiB, README "Speed"); without skipping zero pages it saved
    nothing, our buffer's pages costing what ``pmemsave``'s copy does.
    But it needs the right to read another process's memory (ptrace's:
    we are QEMU's parent, which Yama's scopes 0 and 1 allow and 2 and 3
    refuse) and QEMU's word that the range is one piece of one RAM block.
    When either is missing, the range is dumped as before, through
    ``pmemsave``, which works wherever QMP does; why is logged once.

    Both give the same bytes for RAM: ``pmemsave`` reads through QEMU's
    memory API (the flat view of the address space "memory"), ``/proc``
    the RAM block's backing that this flat view maps at that place.  So
    the range must be RAM throughout, in one region, at offsets that go
    on with the addresses: :func:`_one_ram_block` checks that on ``info
    mtree -f``, and ``gpa2hva`` of the last byte must be the first's plus
    ``size - 1``.  An overlay in the middle of RAM (a ROM or a device
    window) makes QEMU's view differ from the block's bytes: such a range
    is dumped.

    The guest must be paused, as for any comparison of dumps: neither way
    stops it while it reads.

    :return: read-only views, one per machine; a view's memory is freed
        once no view of it (slices included) is left.
    :raise QMPError: QEMU could not read the range or write the dump.
    :raise MigtestError: QEMU said it did, but the dump is short.
    """
    views: List[Optional[memoryview]] = [None] * len(machines)
    direct: List[Tuple[int, QEMUMachine, int]] = []
    for index, machine in enumerate(machines):
        try:
            direct.append((index, machine, _host_address(machine, address, size)))
        except _NoDirectRead as exc:
            _fall_back(machine, str(exc))
    if direct:
        zero = _zero_frames()
        with ThreadPoolExecutor(len(direct), thread_name_prefix="read-memory") as pool:
            reads = [
                (index, machine, pool.submit(_read_process, machine, host, size, zero))
                for index, machine, host in direct
            ]
        for index, machine, read in reads:
            try:
                views[index] = read.result()
            except _NoDirectRead as exc:
                _fall_back(machine, str(exc))
    dumped = [index for index, view in enumerate(views) if view is None]
    if dumped:
        dumps = _dump_memories([machines[index] for index in dumped], address, size)
        for index, dump in zip(dumped, dumps):
            views[index] = dump
    return [view for view in views if view is not None]


class _NoDirectRead(Exception):
    """This range cannot be read from ``/proc/<pid>/mem``; the message says why."""


#: Errors with which Linux refuses us another process's memory (no ptrace
#: right, a process that is not dumpable, a page it cannot hand out).
_REFUSED = (errno.EPERM, errno.EACCES, errno.EIO)
#: A line of a flat view in ``info mtree -f``: first and last address,
#: the kind (``ram``, ``rom``, ``i/o``, ...), the region, its offset.
_FLAT_RANGE = re.compile(
    r"\s+([0-9a-f]+)-([0-9a-f]+) \(prio -?\d+, ([^)]+)\): (\S+)(?: @([0-9a-f]+))?"
)
#: Reasons for a dump already logged: each is said once per process.
_told: Set[str] = set()
_log = logging.getLogger("migtest.machine")


def _fall_back(machine: QEMUMachine, reason: str) -> None:
    """Note that ``machine``'s range is dumped, saying why the first time."""
    if reason not in _told:
        _told.add(reason)
        _log.info("%s: RAM read through pmemsave: %s", machine.name, reason)


def _host_address(machine: QEMUMachine, address: int, size: int) -> int:
    """Where in ``machine``'s address space guest physical ``address`` lies.

    :raise _NoDirectRead: the range is not one stretch of one RAM block.
    """
    if size <= 0:
        raise _NoDirectRead(f"a range of {size} bytes")
    flat = machine.cmd("human-monitor-command", command_line="info mtree -f")
    reason = _one_ram_block(flat, address, size)
    if reason is not None:
        raise _NoDirectRead(reason)
    first = _gpa2hva(machine, address)
    last = _gpa2hva(machine, address + size - 1)
    if last != first + size - 1:
        raise _NoDirectRead(
            f"0x{address:x}-0x{address + size - 1:x} is not one mapping in QEMU"
            f" (host 0x{first:x} and 0x{last:x})"
        )
    return first


def _gpa2hva(machine: QEMUMachine, address: int) -> int:
    """The host virtual address QEMU ``machine`` keeps guest physical ``address`` at."""
    text = machine.cmd("human-monitor-command", command_line=f"gpa2hva 0x{address:x}")
    found = re.search(r" is (0x[0-9a-f]+)", text)
    if found is None:
        raise _NoDirectRead(f"gpa2hva 0x{address:x} answered {text.strip()!r}")
    return int(found.group(1), 16)


def _one_ram_block(flat: str, address: int, size: int) -> Optional[str]:
    """Why ``info mtree -f``'s address space "memory" is not one RAM region over the range.

    :param flat: the text ``info mtree -f`` printed.
    :return: ``None`` if every address of the range is RAM of one region,
        at offsets that go on with the addresses; else the reason.
    """
    views: List[Tuple[List[str], List[Tuple[int, int, str, str, int]]]] = []
    for line in flat.splitlines():
        space = re.match(r'\s*AS "([^"]*)"', line)
        piece = _FLAT_RANGE.match(line)
        if line.startswith("FlatView #"):
            views.append(([], []))
        elif space and views:
            views[-1][0].append(space.group(1))
        elif piece and views:
            first, last, kind, region, offset = piece.groups()
            views[-1][1].append(
                (int(first, 16), int(last, 16), kind, region, int(offset or "0", 16))
            )
    pieces = next((found for spaces, found in views if "memory" in spaces), None)
    if pieces is None:
        return "'info mtree -f' shows no flat view of the address space 'memory'"
    at, end = address, address + size
    block: Optional[Tuple[str, int]] = None  # the region, and its offset at ``address``
    for first, last, kind, region, offset in pieces:
        if last < at:
            continue
        if first > at:
            break
        if kind != "ram":
            return f"0x{at:x} is {kind} ({region}), not RAM"
        here = (region, offset + at - first - (at - address))
        if block is None:
            block = here
        elif here != block:
            return f"0x{at:x} is in {region} at another offset than 0x{address:x}"
        at = last + 1
        if at >= end:
            return None
    return f"nothing is mapped at 0x{at:x}"


def _read_process(machine: QEMUMachine, host: int, size: int, zero: FrozenSet[int]) -> memoryview:
    """``size`` bytes of ``machine``'s own memory from ``host`` on, into a buffer of ours.

    Pages QEMU has mapped to one of Linux's zero pages (``zero``, their
    frames) are not read: our buffer is fresh anonymous memory, which
    reads as zeros there too, without copying or allocating.  After a
    migration most guest RAM is such pages on both sides (measured: 154
    of ppc64's 256 MiB, the huge zero page), since migration reads every
    page and a read maps the zero page where nothing was written.

    :param zero: frames of Linux's zero pages (see :func:`_zero_frames`).
    :raise _NoDirectRead: Linux refused (see :data:`_REFUSED`).
    """
    pid = machine.pid
    if pid is None:
        raise _NoDirectRead("QEMU is not running")
    memory = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    _madvise_huge(memory)  # unread stretches then read as the huge zero page
    buffer = memoryview(memory)
    try:
        fd = os.open(f"/proc/{pid}/mem", os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno in _REFUSED:
            raise _NoDirectRead(f"cannot open /proc/<pid>/mem: {exc.strerror}") from exc
        raise
    try:
        for start, end in _pages_to_read(pid, host, size, zero):
            done = start
            while done < end:
                try:
                    count = os.preadv(fd, [buffer[done:end]], host + done)
                except OSError as exc:
                    if exc.errno in _REFUSED:
                        raise _NoDirectRead(f"cannot read /proc/<pid>/mem: {exc.strerror}") from exc
                    raise
                if count == 0:
                    raise _NoDirectRead(f"/proc/<pid>/mem ends at 0x{host + done:x}")
                done += count
    finally:
        os.close(fd)
    return buffer.toreadonly()


#: A pagemap entry's bits: the page is present; its frame number.
_PRESENT = 1 << 63
_FRAME = (1 << 55) - 1
#: Frames of Linux's zero pages, and our mappings that hold them (a huge
#: zero page lives while a process maps it): found once, by
#: :func:`_zero_frames`.
_zero_pages: Optional[Tuple[FrozenSet[int], List[mmap.mmap]]] = None


def _pages_to_read(pid: int, host: int, size: int, zero: FrozenSet[int]) -> List[Tuple[int, int]]:
    """The stretches of ``[0, size)`` whose pages are not one of the ``zero`` frames.

    Everything, when the range is not whole pages or QEMU's pagemap
    cannot be read.
    """
    page = mmap.PAGESIZE
    if not zero or host % page or size % page:
        return [(0, size)]
    entries = array.array("Q")
    try:
        with open(f"/proc/{pid}/pagemap", "rb", buffering=0) as pagemap:
            pagemap.seek(host // page * 8)
            wanted = size // page * 8
            while len(entries) * 8 < wanted:
                chunk = pagemap.read(wanted - len(entries) * 8)
                if not chunk:
                    return [(0, size)]
                entries.frombytes(chunk)
    except OSError as exc:
        if exc.errno in _REFUSED:
            return [(0, size)]
        raise
    stretches: List[Tuple[int, int]] = []
    begin: Optional[int] = None
    for index, entry in enumerate(entries):
        if entry & _PRESENT and entry & _FRAME in zero:
            if begin is not None:
                stretches.append((begin * page, index * page))
                begin = None
        elif begin is None:
            begin = index
    if begin is not None:
        stretches.append((begin * page, size))
    return stretches


def _madvise_huge(memory: mmap.mmap) -> None:
    """Ask for transparent huge pages, where Linux has them (else nothing is lost but speed)."""
    try:
        memory.madvise(mmap.MADV_HUGEPAGE)
    except OSError:  # a kernel without transparent huge pages
        pass


def _zero_frames() -> FrozenSet[int]:
    """The frames of Linux's zero page and huge zero page, as our own pagemap shows them.

    Read from pages of ours that only were read (so Linux mapped a zero
    page there), each frame confirmed by ``/proc/kpageflags``
    (``KPF_ZERO_PAGE``).  Empty where frames are hidden from us (no
    CAP_SYS_ADMIN: pagemap shows 0, kpageflags cannot be opened): then
    every page is read.
    """
    global _zero_pages
    if _zero_pages is not None:
        return _zero_pages[0]
    huge = 2 << 20
    private = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS
    small_page = mmap.mmap(-1, mmap.PAGESIZE, flags=private)
    huge_pages = mmap.mmap(-1, 2 * huge, flags=private)
    _madvise_huge(huge_pages)
    frames: Set[int] = set()
    try:
        with (
            open("/proc/self/pagemap", "rb", buffering=0) as pagemap,
            open("/proc/kpageflags", "rb", buffering=0) as flags,
        ):

            def frame(memory: mmap.mmap, offset: int) -> int:
                memory[offset]  # a read: Linux maps a zero page
                address = ctypes.addressof(ctypes.c_char.from_buffer(memory)) + offset
                pagemap.seek(address // mmap.PAGESIZE * 8)
                entry = int.from_bytes(pagemap.read(8), "little")
                return entry & _FRAME if entry & _PRESENT else 0

            def is_zero(number: int) -> bool:
                flags.seek(number * 8)
                return number != 0 and bool(int.from_bytes(flags.read(8), "little") >> 24 & 1)

            small = frame(small_page, 0)
            if is_zero(small):
                frames.add(small)
            start = ctypes.addressof(ctypes.c_char.from_buffer(huge_pages))
            first = frame(huge_pages, -start % huge)  # at a 2 MiB boundary inside
            count = huge // mmap.PAGESIZE
            if first % count == 0 and is_zero(first) and is_zero(first + count - 1):
                frames.update(range(first, first + count))
    except OSError as exc:
        if exc.errno not in (*_REFUSED, errno.ENOENT):
            raise
        frames.clear()
    _zero_pages = (frozenset(frames), [small_page, huge_pages])
    return _zero_pages[0]


def _dump_memories(machines: Sequence[QEMUMachine], address: int, size: int) -> List[memoryview]:
    """Dump the same guest physical range of several machines through ``pmemsave``.

    ``pmemsave`` copies a kilobyte at a time, so each QEMU dumping on its
    own core halves the wait for a pair.  Each writes into an anonymous
    memory file of ours (a memfd, which QEMU opens as ``/proc/<pid>/fd/<n>``):
    nothing goes through the disk, no file name exists to be left behind,
    and the dump is mapped rather than copied into Python.

    :raise QMPError: QEMU could not read the range or write the dump.
    :raise MigtestError: QEMU said it did, but the dump is short.
    """
    fds: List[int] = []
    answered = False
    try:
        for m in machines:
            fds.append(os.memfd_create(f"migtest-{m.name}-dump", os.MFD_CLOEXEC))
        execute_together(
            [
                (m._monitor(), "pmemsave", {"val": address, "size": size, "filename": _path(fd)})
                for m, fd in zip(machines, fds)
            ],
            COMMAND_TIMEOUT,
        )
        answered = True
        return [_map(fd, size, m.name) for m, fd in zip(machines, fds)]
    finally:
        for m, fd in zip(machines, fds):
            if answered:
                os.close(fd)
            else:
                # A QEMU that did not answer may still open /proc/<pid>/fd/<n>:
                # that number must not name another file of ours until it is gone.
                m.close_after_exit(fd)


def _path(fd: int) -> str:
    """A name under which another process can open our descriptor ``fd``."""
    return f"/proc/{os.getpid()}/fd/{fd}"


def _map(fd: int, size: int, name: str) -> memoryview:
    """A read-only view of the ``size`` bytes QEMU ``name`` dumped into ``fd``."""
    written = os.fstat(fd).st_size
    if written != size:
        raise MigtestError(f"{name}: pmemsave wrote {written} bytes, not {size}")
    if size == 0:
        return memoryview(b"")
    return memoryview(mmap.mmap(fd, size, prot=mmap.PROT_READ))
