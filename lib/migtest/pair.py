"""A source and a destination QEMU, and the migration between them."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from types import TracebackType
from typing import Any, Collection, Dict, List, Mapping, Optional, Sequence, Tuple, Type, Union

from .arch import ArchProfile
from .endpoint import STATUS_TIMEOUT, Endpoint
from .errors import CheckFailure, ConfigError, QMPConnectionLost, StateError, WaitTimeout
from .machine import QEMUMachine
from .params import SuiteParams
from .qapi import Capability, MigrationInfo, MigrationParameters, Target
from .status import UNSUCCESSFUL, Status
from .stream import describe_stream
from .transport import LEFTOVER_PATTERNS, Channel, ExecChannel, make_channel
from .wait import wait_for

#: No stop-and-copy fits in 1 ms at 300 MB/s (threshold: 300 KB) while the
#: guest dirties megabytes between two syncs.  Measured under TCG: at 1 GiB/s
#: a migration still converged at its second sync 5 times in 6; at 300 MB/s
#: none did in 24 runs over four architectures, and a pass takes ~0.3 s.
NON_CONVERGING: MigrationParameters = {"downtime-limit": 1, "max-bandwidth": 300_000_000}
#: With 1 GiB/s and 30 s of allowed downtime, any guest here converges.
CONVERGING: MigrationParameters = {"downtime-limit": 30_000, "max-bandwidth": 1 << 30}

#: The monitor socket of a QEMU exec'd by cpr-exec, in the workdir.
EXEC_QMP = "dst-qmp.sock"
#: Where shared guest RAM lives: a tmpfs both QEMUs can map.
SHM_DIR = Path("/dev/shm")


class MigrationPair:
    """Source and destination machines for one architecture profile.

    :param params: what to run (profile, accelerator, binaries).
    :param workdir: private directory for sockets, consoles and dumps.

    Use as a context manager, or call :meth:`close`: every machine is shut
    down, and every file made outside ``workdir`` removed, in every outcome.
    """

    def __init__(self, params: SuiteParams, workdir: Path) -> None:
        self.params = params
        self.profile: ArchProfile = params.profile
        self.workdir = Path(workdir)
        self._src: Optional[Endpoint] = None
        self._dst: Optional[Endpoint] = None
        self._machines: List[QEMUMachine] = []
        self._endpoints: List[Endpoint] = []
        self._channels: List[Channel] = []
        self._shared_memory: Optional[Path] = None
        self._dst_pending: Optional[QEMUMachine] = None
        #: The guest every side boots, from ``guests/<arch>/``.
        self.guest = self.profile.guest
        self._log = logging.getLogger("migtest.pair")
        #: Known QEMU findings a check saw and allowed, as far as they go
        #: (id -> what showed them): the test passes, but must say so.
        self.findings_shown: Dict[str, List[str]] = {}

    @property
    def src(self) -> Endpoint:
        """The source side."""
        if self._src is None:
            raise StateError("the pair has not been started")
        return self._src

    @property
    def dst(self) -> Endpoint:
        """The destination side (the newest, after :meth:`replace_destination`)."""
        if self._dst is None:
            raise StateError("the pair has not been started")
        return self._dst

    @property
    def shared_memory_file(self) -> Optional[Path]:
        """The shared RAM file while it is still linked (:meth:`start_destination`)."""
        path = self._shared_memory
        return path if path is not None and path.exists() else None

    @property
    def shares_memory(self) -> bool:
        """Whether both sides map guest RAM from one file (``shared_memory``)."""
        return self._shared_memory is not None

    # -- machines -----------------------------------------------------------

    def _machine(self, name: str, binary: str, extra: Sequence[str]) -> QEMUMachine:
        """The one place a side's QEMU is made: the guest's arguments, then ``extra``."""
        guest = Path(self.guest)  # relative: QEMU runs in the workdir
        if not (self.workdir / guest).exists():
            shutil.copyfile(self.profile.guest_file(self.guest), self.workdir / guest)
        args = self.params.qemu_args(guest, self._shared_memory)
        machine = QEMUMachine(binary, [*args, *extra], name=name, workdir=self.workdir)
        self._machines.append(machine)
        return machine

    @staticmethod
    def _incoming(paused: bool, extra: Sequence[str]) -> List[str]:
        """A destination's own arguments: it waits for ``migrate-incoming``."""
        return ["-incoming", "defer", *(["-S"] if paused else []), *extra]

    def _launch(self, name: str, binary: str, extra: Sequence[str]) -> Endpoint:
        machine = self._machine(name, binary, extra)
        machine.launch()
        endpoint = Endpoint(machine)
        self._endpoints.append(endpoint)
        endpoint.version  # noqa: B018 - asked now: a failure may leave nobody to ask
        return endpoint

    def _launch_destination(self, name: str, paused: bool, extra: Sequence[str]) -> Endpoint:
        return self._launch(name, self.params.qemu_bin_dst, self._incoming(paused, extra))

    def start(
        self,
        *,
        dst_paused: bool = True,
        src_args: Sequence[str] = (),
        dst_args: Sequence[str] = (),
        shared_memory: bool = False,
        guest: Optional[str] = None,
        later_destination: bool = False,
    ) -> None:
        """Start both machines and wait until the guest runs on the source.

        :param dst_paused: start the destination with ``-S``, so it stays
            paused after the migration and its RAM can be compared with the
            source's before it runs.
        :param src_args: extra QEMU arguments for the source only.
        :param dst_args: extra QEMU arguments for the destination only.
        :param shared_memory: put guest RAM in one file in ``/dev/shm`` that
            both map; it is unlinked as soon as both have opened it.
        :param guest: the guest to boot, a file name in ``guests/<arch>/``
            (the profile's :attr:`~ArchProfile.suspending_guest`); by
            default the profile's own.
        :param later_destination: start only the source; the destination
            comes with :meth:`start_destination`, as a restarted QEMU does
            (CPR).  ``dst_paused`` and ``dst_args`` are then its arguments,
            and a shared RAM file is kept until it has mapped it.
        """
        if self._src is not None:
            raise StateError("start() called twice")
        self.guest = guest or self.profile.guest
        if shared_memory:
            self._shared_memory = SHM_DIR / f"migtest-{os.getpid()}-{id(self):x}"
        try:
            self._src = self._launch("src", self.params.qemu_bin_src, src_args)
            if not later_destination:
                self._dst = self._launch_destination("dst", dst_paused, dst_args)
        finally:
            if not later_destination:
                self._unlink_shared_memory()
        # MIGRATION events give every test the sequence of statuses.
        self._src.set_capabilities({"events": True})
        if self._dst is not None:
            self._dst.set_capabilities({"events": True})
        self.wait_for_guest(self._src.machine, self.params.boot_timeout)

    def start_destination(
        self, *, dst_paused: bool = True, dst_args: Sequence[str] = (), connect: bool = True
    ) -> None:
        """Start the destination of a pair started with ``later_destination``.

        A shared RAM file is unlinked once the destination has mapped it:
        at once, or, with ``connect=False``, in :meth:`connect_destination`.

        :param connect: wait for its monitor now; a cpr-transfer
            destination opens it only once the source has migrated.
        :raise StateError: the pair already has a destination.
        """
        if self._dst is not None:
            raise StateError("the pair already has a destination")
        machine = self._machine(
            "dst", self.params.qemu_bin_dst, self._incoming(dst_paused, dst_args)
        )
        machine.launch(connect=False)
        self._dst_pending = machine
        if connect:
            self.connect_destination()

    def exec_destination(
        self, target: Target, *, dst_paused: bool = True, dst_args: Sequence[str] = ()
    ) -> None:
        """cpr-exec: the source saves into ``target``, then exec's the destination in its process.

        For a pair started with ``later_destination``, whose source is in
        mode ``cpr-exec``.  The destination's command line (its
        ``cpr-exec-command``) is the one :meth:`start_destination` would
        run, with ``-incoming defer``; it opens its monitor on a unix
        socket of the workdir, and has mapped a shared RAM file by the time
        it answers there: the file is unlinked then.

        :raise LaunchError: no new QEMU answered (the exec failed).
        """
        if self._dst is not None:
            raise StateError("the pair already has a destination")
        machine = self._machine(
            "dst", self.params.qemu_bin_dst, self._incoming(dst_paused, dst_args)
        )
        self.src.set_parameters({"cpr-exec-command": machine.exec_command_line(EXEC_QMP)})
        self.src.migrate(target)
        try:
            machine.take_over(self.src.machine, EXEC_QMP, STATUS_TIMEOUT)
        finally:
            self._unlink_shared_memory()
        self._dst = Endpoint(machine)
        self._endpoints.append(self._dst)
        self._dst.set_capabilities({"events": True})

    def connect_destination(self, timeout: float = STATUS_TIMEOUT) -> None:
        """Connect to the monitor of the destination :meth:`start_destination` left waiting.

        QEMU has created its RAM by then: a shared RAM file is unlinked.
        """
        machine, self._dst_pending = self._dst_pending, None
        if machine is None:
            raise StateError("no destination waits for its monitor")
        try:
            machine.connect(timeout)
        finally:
            self._unlink_shared_memory()
        self._dst = Endpoint(machine)
        self._endpoints.append(self._dst)
        self._dst.version  # noqa: B018 - asked now: a failure may leave nobody to ask
        self._dst.set_capabilities({"events": True})

    def replace_destination(self, *, dst_paused: bool = True, dst_args: Sequence[str] = ()) -> None:
        """Start a fresh destination (``dst2``, ...) for another attempt.

        The old one is shut down; it stays in the pair for the logs.

        :raise StateError: guest RAM is shared: its file is gone, so a new
            destination could not map it.
        """
        if self._shared_memory is not None:
            raise StateError("a destination sharing guest RAM cannot be replaced")
        self.dst.machine.shutdown()
        self._dst = self._launch_destination(f"dst{len(self._machines)}", dst_paused, dst_args)
        self._dst.set_capabilities({"events": True})

    def _unlink_shared_memory(self) -> None:
        if self._shared_memory is not None:
            self._shared_memory.unlink(missing_ok=True)

    def wait_for_guest(self, machine: QEMUMachine, timeout: float) -> None:
        """Wait until the guest on ``machine`` has completed a pass ('B').

        Under a software KVM, SeaBIOS alone takes 4-5 s.
        """
        wait_for(
            lambda: ("B" in machine.console_text(), machine.console_text()[-40:]),
            what=f"the guest on {machine.name} to print 'B' (console tail shown)",
            timeout=timeout,
        )

    # -- settings -----------------------------------------------------------

    def require_capabilities(self, *names: Capability) -> None:
        """:raise Unavailable: either side's QEMU lacks one of the capabilities."""
        for side in (self.src, self.dst):
            side.require_capabilities(names)

    def require_commands(self, *names: str) -> None:
        """:raise Unavailable: either side's QEMU lacks one of the QMP commands."""
        for side in (self.src, self.dst):
            side.require_commands(names)

    def set_capabilities(self, capabilities: Mapping[Capability, bool]) -> None:
        """Set migration capabilities on both sides (both must know them first)."""
        self.require_capabilities(*capabilities)
        for side in (self.src, self.dst):
            side.set_capabilities(capabilities)

    def set_parameters(self, parameters: MigrationParameters) -> None:
        """Set migration parameters on both sides, for features that need both."""
        for side in (self.src, self.dst):
            side.set_parameters(parameters)

    def prevent_convergence(self) -> None:
        """Make the source unable to finish until :meth:`allow_convergence`."""
        self.src.set_parameters(NON_CONVERGING)

    def note_finding(self, finding: str, check: str, evidence: Sequence[str]) -> None:
        """Note that ``check`` saw known QEMU finding ``finding`` and allowed it.

        A check confined to what the finding allows (a register's bits)
        passes; the test then ends in WARN naming the finding, so that the
        bug neither passes unseen nor turns every such test red.
        """
        self.findings_shown.setdefault(finding, []).extend(f"{check}: {line}" for line in evidence)

    def allow_convergence(self) -> None:
        """Let the source finish the migration."""
        self.src.set_parameters(CONVERGING)

    # -- migration ----------------------------------------------------------

    def _channel(self, channel: Union[str, Channel], label: str) -> Channel:
        if isinstance(channel, str):
            channel = make_channel(channel, label)
        self._channels.append(channel)
        return channel

    def migrate(self, channel: Union[str, Channel], **migrate_args: Any) -> Channel:
        """Migrate over ``channel``: started, for a live one; written, for one that is not.

        Over a live channel (a stream) the destination listens, then the
        source starts sending; the call returns while it migrates.  A
        channel that is not live holds the whole migration (a file): the
        source writes it all, then the destination starts loading it.

        :param channel: a channel or its name (``unix``, ``tcp``, ``fd``, ``exec``).
        :raise CheckFailure: the source failed to write a non-live channel.
        """
        channel = self._channel(channel, f"migration{len(self._channels)}")
        self._log.debug("migrating over %s", channel.name)
        channel.prepare(self.src, self.dst)
        if channel.live:
            self.dst.listen(channel.listen_target(self.dst))
            self.src.migrate(channel.send_target(self.src, self.dst), **migrate_args)
        else:
            self.src.migrate(channel.send_target(self.src, self.dst), **migrate_args)
            self.src.wait_for_status("completed", fail_on=UNSUCCESSFUL)
            self.dst.listen(channel.listen_target(self.dst))
        return channel

    def start_postcopy(self) -> None:
        """Switch the running migration to postcopy."""
        self.src.start_postcopy()

    def wait_for_switchover(self) -> None:
        """Wait until the guest stopped on the source and resumed on the destination.

        :raise CheckFailure: a side's QEMU died first; the message quotes
            what each side says.
        """
        try:
            self.src.machine.wait_event("STOP", timeout=STATUS_TIMEOUT)
            self.dst.machine.wait_event("RESUME", timeout=STATUS_TIMEOUT)
        except QMPConnectionLost as lost:
            raise self.failure("the switchover failed", lost) from lost

    def wait_for_postcopy(self, *, resumed: bool = True) -> None:
        """Wait until both sides are in postcopy and the destination has its guest.

        Only then can a broken channel pause the migration: a destination
        still loading the device state when the link breaks fails instead
        (seen with QEMU 7.2 on ppc64).  A destination started running
        (``dst_paused=False``) runs the guest by then.

        :param resumed: ``False`` for a destination started paused: QEMU
            then loads the device state and leaves its guest paused
            (``loadvm_postcopy_handle_run_bh()`` starts it only with
            autostart).
        :raise CheckFailure: a paused destination's guest runs.
        """
        for side in (self.src, self.dst):
            side.wait_for_status("postcopy-active", fail_on=("failed", "completed"))
        if resumed:
            self.dst.machine.wait_event("RESUME", timeout=STATUS_TIMEOUT)
            return

        def paused() -> Tuple[bool, str]:
            state = self.dst.run_state()  # inmigrate until QEMU has run the postcopy
            if state == "running":
                raise CheckFailure("dst: its guest runs in postcopy-active, started paused")
            return state == "paused", state

        wait_for(paused, what="the destination's run state paused", timeout=STATUS_TIMEOUT)

    def wait_for_both(self, status: Status, fail_on: Collection[Status]) -> None:
        """Wait until both sides report ``status``, asking each in turn.

        One wait for both: a side whose QEMU died, or whose migration
        reached ``fail_on``, ends it at once, even while the other is the
        one still waited for.

        :raise CheckFailure: as said, or ``status`` did not come in time;
            the message quotes what each side says.
        """

        def check() -> Tuple[bool, Dict[str, str]]:
            seen: Dict[str, str] = {}
            for side in (self.src, self.dst):
                seen[side.name] = side.info().get("status", "none")
                if seen[side.name] in fail_on:
                    raise CheckFailure(f"{side.name}: migration {seen[side.name]}")
            return set(seen.values()) == {status}, seen

        try:
            wait_for(check, what=f"both sides in {status}", timeout=STATUS_TIMEOUT)
        except WaitTimeout as late:
            if late.cut_short:
                raise  # the test ran out of time: no verdict on QEMU
            raise self.failure(f"not both in {status}", late) from late
        except (CheckFailure, QMPConnectionLost) as failed:
            raise self.failure(f"not both in {status}", failed) from failed

    def pause(self) -> None:
        """Pause a postcopy migration from the source, breaking its channel."""
        self.src.pause()

    def recover(self, channel: Union[str, Channel]) -> Channel:
        """Resume a paused postcopy migration over a new (live) channel.

        :raise ConfigError: ``channel`` is not live, or names no URI.
        """
        channel = self.listen_for_recovery(channel)
        self.resume_over(channel)
        return channel

    def listen_for_recovery(self, channel: Union[str, Channel]) -> Channel:
        """Have the paused destination listen for a new channel (``migrate-recover``).

        :raise ConfigError: ``channel`` is not live, or names no URI.
        """
        channel = self._channel(channel, f"recovery{len(self._channels)}")
        channel.prepare(self.src, self.dst)
        target = channel.listen_target(self.dst)
        if not channel.live or not isinstance(target, str):
            raise ConfigError("channel", channel.name, "a live channel with a URI for recovery")
        self.dst.recover(target)
        return channel

    def resume_over(self, channel: Channel) -> None:
        """Have the paused source resume over ``channel``, where the destination listens."""
        self.src.resume(channel.send_target(self.src, self.dst))

    def wait_for_completion(self) -> MigrationInfo:
        """Wait until both sides report the migration completed.

        :return: the source's final ``query-migrate`` answer.
        :raise CheckFailure: a side reached ``failed`` or ``cancelled``, or
            its QEMU died; the message quotes what each side says.
        """
        try:
            self.src.wait_for_status("completed", fail_on=UNSUCCESSFUL)
            self.dst.wait_for_status("completed", fail_on=UNSUCCESSFUL)
        except (CheckFailure, QMPConnectionLost) as failed:
            raise self.failure("the migration failed", failed) from failed
        self.dst.read_final_stats()
        return self.src.read_final_stats()

    def failure(self, what: str, cause: Union[str, Exception]) -> CheckFailure:
        """A FAIL for ``cause`` that quotes both sides: often only one knows why.

        A stream saved in a file is described too (its sections, or where
        it stops being well formed): it tells a source that wrote a bad
        stream from a destination that could not load a good one.
        """
        lines = [f"  {side.account()}" for side in (self.src, self.dst)]
        for channel in self._channels:
            if isinstance(channel, ExecChannel) and (self.workdir / channel.path).is_file():
                lines.append(f"  stream {describe_stream(self.workdir / channel.path, brief=True)}")
        return CheckFailure(f"{what}: {cause}\n" + "\n".join(lines))

    def endpoints(self) -> List[Endpoint]:
        """Every side the pair has had, in order: source, destination(s)."""
        return list(self._endpoints)

    # -- teardown -----------------------------------------------------------

    def close(self) -> None:
        """Shut every machine down; safe to call in every state, and twice."""
        try:
            for machine in self._machines:
                try:
                    machine.shutdown()
                except Exception:  # noqa: BLE001 - shut the others down, then report it
                    self._log.exception("%s: shutdown failed; killing it", machine.name)
                    machine.kill()
        finally:
            for channel in self._channels:
                channel.close()
            self._unlink_shared_memory()
            # Sockets, files and the guest copy are ours; logs stay for the results.
            leftovers = [p for pattern in LEFTOVER_PATTERNS for p in self.workdir.glob(pattern)]
            for leftover in [*leftovers, self.workdir / self.guest]:
                leftover.unlink(missing_ok=True)

    def __enter__(self) -> MigrationPair:
        return self

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.close()
