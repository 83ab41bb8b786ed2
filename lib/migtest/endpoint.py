"""The migration commands of one side, source or destination.

An :class:`Endpoint` wraps a :class:`~migtest.machine.QEMUMachine` and is
the one place that talks migration to it: every migration QMP command the
suite sends goes out from here.  Names are spelled as QMP spells them and
typed (:mod:`migtest.qapi`), so a misspelt capability is a type error;
every setting is read back, because a QEMU that accepts a value and then
ignores it is a bug this suite should catch; and what the QEMU lacks is an
:class:`~migtest.errors.Unavailable` naming it, the binary and its version.
"""

from __future__ import annotations

import os
from typing import (
    Any,
    Dict,
    FrozenSet,
    Iterable,
    List,
    Mapping,
    NoReturn,
    Optional,
    Sequence,
    Tuple,
    cast,
)

from . import probe_store
from .checks import check_switchover_budget
from .errors import (
    CheckFailure,
    ConfigError,
    MigtestError,
    QMPConnectionLost,
    QMPError,
    Unavailable,
    WaitTimeout,
)
from .machine import QEMUMachine
from .metrics import MigrationRecorder
from .qapi import (
    WORKS_FROM,
    Capability,
    MigrationInfo,
    MigrationParameters,
    Target,
    TlsCredsArguments,
    expected_in,
    lifetime,
    target_arguments,
)
from .status import SWITCHING_OVER, UNSUCCESSFUL, Status
from .wait import wait_for

#: Seconds a migration status may take to be reached (QEMU's own tests cap
#: their status waits at 120 s after unlimited waits hung CI).
STATUS_TIMEOUT = 120.0
#: Seconds a QEMU whose monitor went away is given to finish exiting, so
#: that a failure says how it ended (a crash's signal) rather than "no answer".
DYING_TIMEOUT = 5.0
#: Seconds a cancelled migration may take to end (see :meth:`Endpoint.wait_for_cancelled`).
CANCEL_TIMEOUT = 30.0
#: Seconds a guest may take to suspend itself or be woken: the suspending
#: guest suspends after its first pass, a second or so after SeaBIOS.
RUN_STATE_TIMEOUT = 30.0


class Endpoint:
    """One side of a migration."""

    def __init__(self, machine: QEMUMachine) -> None:
        self.machine = machine
        self.name = machine.name
        self._capabilities: Optional[FrozenSet[str]] = None
        self._commands: Optional[FrozenSet[str]] = None
        self._schema_entries: Optional[Dict[str, Dict[str, Any]]] = None
        self._version: Optional[Tuple[int, int, int]] = None
        #: The migration's timeline, as seen by this side.
        self.recorder = MigrationRecorder()

    # -- what this QEMU has ---------------------------------------------------

    @property
    def version(self) -> Tuple[int, int, int]:
        """QEMU's version, ``(major, minor, micro)`` (``query-version``)."""
        if self._version is None:
            qemu = self.machine.cmd("query-version")["qemu"]
            self._version = (int(qemu["major"]), int(qemu["minor"]), int(qemu["micro"]))
        return self._version

    @property
    def version_text(self) -> str:
        """QEMU's version as people write it, ``7.2.22``; ``?`` if it died unasked."""
        try:
            return ".".join(map(str, self.version))
        except MigtestError:
            return "?"

    def describe(self) -> str:
        """Which QEMU this side is, for messages: ``src (QEMU 7.2.22, /usr/bin/...)``."""
        return f"{self.name} (QEMU {self.version_text}, {self.machine.binary})"

    def supported_capabilities(self) -> FrozenSet[str]:
        """The migration capabilities this QEMU knows."""
        if self._capabilities is None:
            caps = self.machine.cmd("query-migrate-capabilities")
            self._capabilities = frozenset(c["capability"] for c in caps)
        return self._capabilities

    def supported_commands(self) -> FrozenSet[str]:
        """The QMP commands this QEMU knows."""
        if self._commands is None:
            self._commands = frozenset(c["name"] for c in self.machine.cmd("query-commands"))
        return self._commands

    def _schema(self) -> Dict[str, Dict[str, Any]]:
        """``query-qmp-schema``, by entity name (types have numbers for names).

        The schema is the binary's, not the run's: a test of the job that
        asked the same binary before saves us the 200 KB round trip.
        """
        if self._schema_entries is None:
            question = "query-qmp-schema"
            entries = probe_store.remembered(
                self.machine.binary, question, lambda: self.machine.cmd(question)
            )
            self._schema_entries = {entry["name"]: entry for entry in entries}
        return self._schema_entries

    def command_arguments(self, command: str) -> FrozenSet[str]:
        """The arguments QMP ``command`` takes in this QEMU (``query-qmp-schema``).

        A command gains arguments between versions (``migrate``'s
        ``channels`` in 8.2); the schema says so, not the version number.
        """
        schema = self._schema()
        arguments = schema.get(schema.get(command, {}).get("arg-type", ""), {})
        return frozenset(m["name"] for m in arguments.get("members", []))

    def known_statuses(self) -> FrozenSet[str]:
        """The migration statuses this QEMU can report (``MigrationStatus``).

        They grow between versions: 11.0 passes through ``failing`` on its
        way to ``failed``.  Read from the type of ``query-migrate``'s
        ``status``, in the schema.
        """
        schema = self._schema()
        info = schema.get(schema.get("query-migrate", {}).get("ret-type", ""), {})
        (status,) = [m for m in info.get("members", []) if m["name"] == "status"]
        enum = schema.get(status["type"], {})
        return frozenset(m["name"] for m in enum.get("members", [])) or frozenset(
            enum.get("values", [])
        )

    def argument_values(self, command: str, argument: str) -> FrozenSet[str]:
        """The values an enum argument of ``command`` takes in this QEMU.

        A build option can take a value away (``multifd-compression`` has
        ``zstd`` only where QEMU was built with libzstd): the schema says
        what this binary has.  Empty when the argument is no enum.
        """
        schema = self._schema()
        arguments = schema.get(schema.get(command, {}).get("arg-type", ""), {})
        types = [m["type"] for m in arguments.get("members", []) if m["name"] == argument]
        enum = schema.get(types[0], {}) if types else {}
        return frozenset(m["name"] for m in enum.get("members", [])) or frozenset(
            enum.get("values", [])
        )

    def require_argument_value(self, command: str, argument: str, value: str) -> None:
        """:raise Unavailable: ``argument`` of ``command`` does not take ``value`` here."""
        self.require_arguments(command, [argument])
        values = self.argument_values(command, argument)
        if value not in values:
            feature = f"{argument}={value}"
            why = lifetime(feature) if not expected_in(feature, self.version[:2]) else ""
            raise Unavailable(
                f"{self.describe()}: '{argument}' does not take {value!r} "
                f"(it takes {', '.join(sorted(values))}): {why.strip(' ()') or 'not built in'}",
                expected=False,
            )

    def require_version_for(self, combination: str) -> None:
        """:raise Unavailable: ``combination`` works only in a newer QEMU.

        Only for what the schema cannot show: features that a QEMU accepts
        together before they work together (:data:`~migtest.qapi.WORKS_FROM`).

        :raise ConfigError: ``combination`` is not in that table.
        """
        if combination not in WORKS_FROM:
            raise ConfigError("combination", combination, f"one of {', '.join(WORKS_FROM)}")
        since = WORKS_FROM[combination]
        if self.version[:2] < since:
            raise Unavailable(
                f"{self.describe()}: lacks {combination} (works from QEMU {since[0]}.{since[1]})",
                expected=False,
            )

    def require_arguments(self, command: str, names: Iterable[str]) -> None:
        """:raise Unavailable: QMP ``command`` lacks one of the arguments ``names`` here."""
        missing = sorted(set(names) - self.command_arguments(command))
        if missing:
            self._lacks(f"'{command}' lacks the arguments", [f"{command}.{n}" for n in missing])

    def require_capabilities(self, names: Iterable[Capability]) -> None:
        """:raise Unavailable: this QEMU lacks one of the capabilities ``names``."""
        missing = sorted(set(names) - self.supported_capabilities())
        if missing:
            self._lacks("lacks the migration capabilities", missing)

    def _lacks(self, what: str, features: Sequence[str]) -> NoReturn:
        """:raise Unavailable: naming ``features``, expected if this version should have one."""
        version = self.version[:2]
        expected = any(expected_in(feature, version) for feature in features)
        listed = ", ".join(f"{feature.split('.')[-1]}{lifetime(feature)}" for feature in features)
        raise Unavailable(f"{self.describe()}: {what}: {listed}", expected=expected)

    def require_commands(self, names: Iterable[str]) -> None:
        """:raise Unavailable: this QEMU lacks one of the QMP commands ``names``."""
        missing = sorted(set(names) - self.supported_commands())
        if missing:
            raise Unavailable(f"{self.describe()}: lacks the QMP commands: {', '.join(missing)}")

    def migration_transports(self) -> FrozenSet[str]:
        """The transports ``migrate`` takes here (``MigrationAddressType``, QEMU 8.2 on).

        Read from the schema, down ``migrate``'s ``channels`` argument to the
        type of its address's ``transport`` tag.  The ``file`` transport came
        with that argument: a QEMU without it refuses ``file:`` URIs, and
        this is empty there.
        """
        schema = self._schema()

        def member_type(entity: Dict[str, Any], name: str) -> Dict[str, Any]:
            types = [m["type"] for m in entity.get("members", []) if m["name"] == name]
            return schema.get(types[0], {}) if types else {}

        channels = member_type(
            schema.get(schema.get("migrate", {}).get("arg-type", ""), {}), "channels"
        )
        channel = schema.get(channels.get("element-type", ""), {})
        address = member_type(channel, "addr")
        enum = member_type(address, address.get("tag", ""))
        return frozenset(m["name"] for m in enum.get("members", [])) or frozenset(
            enum.get("values", [])
        )

    def require_transport(self, transport: str) -> None:
        """:raise Unavailable: ``migrate`` does not take ``transport`` here (``file``: 8.2 on)."""
        if transport not in self.migration_transports():
            self._lacks("'migrate' lacks the transport", [f"transport={transport}"])

    def require_mode(self, mode: str) -> None:
        """:raise Unavailable: the ``mode`` parameter does not take ``mode`` here.

        The modes are read from the schema (``MigMode``): ``cpr-reboot``
        8.2 on, ``cpr-transfer`` 10.0, ``cpr-exec`` 10.2.
        """
        arguments = self.command_arguments("migrate-set-parameters")
        if "mode" not in arguments or mode not in self.argument_values(
            "migrate-set-parameters", "mode"
        ):
            self._lacks("lacks the migration mode", [f"mode={mode}"])

    def set_mode(self, mode: str) -> None:
        """Set the migration ``mode`` (``cpr-reboot``...), and check that QEMU took it.

        :raise Unavailable: see :meth:`require_mode`.
        """
        self.require_mode(mode)
        self.set_parameters({"mode": mode})

    def require_together(self, capabilities: Mapping[Capability, bool]) -> None:
        """Set ``capabilities`` together, or raise Unavailable if QEMU says they cannot be.

        For combinations no QEMU version number tells: QEMU refuses them in
        ``migrate-set-capabilities`` (mapped-ram with postcopy: "Mapped-ram
        migration is incompatible with postcopy", every release up to 11.1).
        Its own words are the reason.

        :raise Unavailable: QEMU lacks one of them, or calls them incompatible.
        :raise QMPError: QEMU refused them for another reason.
        """
        try:
            self.set_capabilities(capabilities)
        except QMPError as exc:
            if "incompatible" not in exc.desc:
                raise
            names = "+".join(capabilities)
            raise Unavailable(
                f"{self.describe()}: refuses {names} together: {exc.desc}", expected=False
            ) from exc

    # -- descriptors ----------------------------------------------------------

    def add_fd(self, fd: int, fdset_id: Optional[int] = None) -> int:
        """Put a copy of our ``fd`` in one of QEMU's fd sets (``add-fd``).

        ``file:/dev/fdset/ID`` then opens the file through the set: QEMU
        duplicates a descriptor of it whose access mode (and ``O_DIRECT``)
        matches what it asks for, and closes the duplicate when done.

        :param fdset_id: the set to add to; a new one if not given.
        :return: the set's id.
        :raise Unavailable: this QEMU has no ``add-fd``.
        """
        self.require_commands(["add-fd"])
        arguments = {} if fdset_id is None else {"fdset_id": fdset_id}
        answer = self.machine.cmd_passing_fd(fd, "add-fd", **arguments)
        return int(answer["fdset-id"])

    def remove_fdset(self, fdset_id: int) -> None:
        """Remove fd set ``fdset_id`` (``remove-fd``).

        QEMU frees the set once no duplicate of its descriptors is open: a
        set still listed afterwards (:meth:`fdsets`) is one QEMU still uses.
        """
        self.machine.cmd("remove-fd", fdset_id=fdset_id)

    def fdsets(self) -> List[Dict[str, Any]]:
        """QEMU's fd sets and their descriptors (``query-fdsets``)."""
        fdsets: List[Dict[str, Any]] = self.machine.cmd("query-fdsets")
        return fdsets

    def open_descriptors(self) -> List[str]:
        """What QEMU's process has open: each descriptor's target (``/proc/PID/fd``), sorted.

        :raise MigtestError: QEMU is not running.
        """
        pid = self.machine.pid
        if pid is None or not self.machine.is_running():
            raise MigtestError(f"{self.name}: QEMU is not running: no descriptors to read")
        directory = f"/proc/{pid}/fd"
        targets = []
        for fd in os.listdir(directory):
            try:
                targets.append(os.readlink(f"{directory}/{fd}"))
            except FileNotFoundError:  # closed between the listing and the read
                continue
        return sorted(targets)

    # -- settings -------------------------------------------------------------

    def set_capabilities(self, capabilities: Mapping[Capability, bool]) -> None:
        """Set migration capabilities and check that QEMU took them.

        :raise Unavailable: QEMU does not know one of them.
        :raise CheckFailure: QEMU accepted them but reads back others.
        """
        self.require_capabilities(capabilities)
        self.machine.cmd(
            "migrate-set-capabilities",
            capabilities=[{"capability": k, "state": v} for k, v in capabilities.items()],
        )
        current = {
            c["capability"]: c["state"] for c in self.machine.cmd("query-migrate-capabilities")
        }
        wanted = {str(k): v for k, v in capabilities.items()}
        wrong = {k: current.get(k) for k, v in wanted.items() if current.get(k) != v}
        if wrong:
            raise CheckFailure(
                f"{self.name}: capabilities set to {dict(wanted)} but read back {wrong}"
            )

    def set_parameters(self, parameters: MigrationParameters) -> None:
        """Set migration parameters and check that QEMU took them.

        :raise Unavailable: QEMU does not know one of them.
        :raise CheckFailure: QEMU accepted them but reads back other values.
        """
        wanted: Mapping[str, Any] = parameters
        current: Mapping[str, Any] = self.parameters()
        unknown = sorted(set(wanted) - set(current))
        if unknown:
            self._lacks("lacks the migration parameters", unknown)
        self.machine.cmd("migrate-set-parameters", **wanted)
        current = self.parameters()
        wrong = {k: current.get(k) for k, v in wanted.items() if current.get(k) != v}
        if wrong:
            raise CheckFailure(
                f"{self.name}: parameters set to {dict(wanted)} but read back {wrong}"
            )

    def add_tls_credentials(self, arguments: TlsCredsArguments) -> None:
        """Create TLS credentials (``object-add``) for the ``tls-creds`` parameter.

        QEMU reads and checks the credentials' files now: a refusal here
        is QEMU judging them, a QMPError naming the file.  Whether the type
        exists is asked of the schema, not of ``qom-list-types``: that
        loads every module, and a QEMU run from a fetched root may find the
        host's, of another build, and abort.

        :raise Unavailable: this QEMU has no such credentials type.
        """
        self.require_argument_value("object-add", "qom-type", arguments["qom-type"])
        self.machine.cmd("object-add", **arguments)

    def add_authz(self, object_id: str, identity: str) -> None:
        """Create an ``authz-simple`` object, for the ``tls-authz`` parameter.

        A TLS server given it lets in only the client whose certificate's
        distinguished name is ``identity``.

        :raise Unavailable: this QEMU has no such object type.
        """
        self.require_argument_value("object-add", "qom-type", "authz-simple")
        arguments: Dict[str, Any] = {"qom-type": "authz-simple", "id": object_id}
        self.machine.cmd("object-add", **arguments, identity=identity)

    def parameters(self) -> MigrationParameters:
        """The current migration parameters (``query-migrate-parameters``)."""
        return cast(MigrationParameters, self.machine.cmd("query-migrate-parameters"))

    def send_removed_command(self, command: str, value: Any) -> None:
        """Send one of the migration commands QEMU 6.0 removed (``migrate_set_speed``...).

        Only to check that a QEMU keeps its own version's contract: present
        and working, or gone (``CommandNotFound``).
        """
        self.machine.cmd(command, value=value)

    # -- the migration --------------------------------------------------------

    def info(self) -> MigrationInfo:
        """The answer to ``query-migrate``, also kept in :attr:`recorder`."""
        result = cast(MigrationInfo, self.machine.cmd("query-migrate"))
        self.recorder.record(result)
        return result

    def listen(self, target: Target) -> None:
        """Wait for an incoming migration (``migrate-incoming``, on a destination)."""
        self.machine.cmd("migrate-incoming", **target_arguments(target))

    def migrate(self, target: Target, **arguments: Any) -> None:
        """Start migrating to ``target`` (``migrate``, on the source)."""
        self.machine.cmd("migrate", **target_arguments(target), **arguments)

    def recover(self, uri: str) -> None:
        """Listen for a paused postcopy migration's new channel (``migrate-recover``)."""
        self.machine.cmd("migrate-recover", uri=uri)

    def resume(self, target: Target) -> None:
        """Resume a paused postcopy migration over a new channel (on the source)."""
        self.migrate(target, resume=True)

    def pause(self) -> None:
        """Pause a postcopy migration, breaking its channel (``migrate-pause``)."""
        self.machine.cmd("migrate-pause")

    def start_postcopy(self) -> None:
        """Switch the running migration to postcopy (on the source)."""
        self.machine.cmd("migrate-start-postcopy")

    def cancel(self) -> None:
        """Cancel the outgoing migration."""
        self.machine.cmd("migrate_cancel")

    def continue_switchover(self) -> None:
        """Let a migration held by pause-before-switchover finish."""
        self.machine.cmd("migrate-continue", state="pre-switchover")

    def stop(self) -> None:
        """Pause the guest's vCPUs."""
        self.machine.cmd("stop")

    def cont(self) -> None:
        """Resume the guest's vCPUs."""
        self.machine.cmd("cont")

    def send_migrate_command(self, command: str, arguments: Mapping[str, Any]) -> None:
        """Send ``migrate`` or ``migrate-incoming`` with ``arguments`` exactly as given.

        Only to check how QEMU judges the arguments themselves (``uri``
        and ``channels`` together, or neither): tests migrate through
        :meth:`migrate` and :meth:`listen`.
        """
        self.machine.cmd(command, **arguments)

    # -- the human monitor ----------------------------------------------------

    def hmp(self, command_line: str) -> str:
        """Run an HMP command (``human-monitor-command``); what it printed.

        HMP reports an error by printing it: the answer is its text.
        """
        text: str = self.machine.cmd("human-monitor-command", command_line=command_line)
        return text

    def parameter_names(self) -> FrozenSet[str]:
        """Every migration parameter this QEMU has (``query-migrate-parameters``' type).

        From the schema: the answer leaves out parameters that are unset
        (``block-bitmap-mapping``).
        """
        schema = self._schema()
        answer = schema.get(schema.get("query-migrate-parameters", {}).get("ret-type", ""), {})
        return frozenset(m["name"] for m in answer.get("members", []))

    # -- dirty tracking (KVM's dirty ring) ------------------------------------

    def require_dirty_ring(self) -> None:
        """:raise Unavailable: KVM lacks the dirty ring, so QEMU tracks with a bitmap.

        QEMU asked for ``dirty-ring-size`` does not refuse to start when KVM
        lacks ``KVM_CAP_DIRTY_LOG_RING``: it warns and uses the bitmap.
        """
        if "dirty ring not available" in self.machine.output:
            raise Unavailable(
                f"{self.describe()}: the host's KVM lacks the dirty ring "
                "(KVM_CAP_DIRTY_LOG_RING): QEMU fell back to the dirty bitmap",
                expected=False,
            )

    def measure_dirty_rate(self, mode: str, seconds: int = 1) -> Dict[str, Any]:
        """Measure the guest's dirty page rate (``calc-dirty-rate``), and wait for it.

        :param mode: ``page-sampling``, ``dirty-ring`` or ``dirty-bitmap``.
        :return: ``query-dirty-rate`` once its status is ``measured``.
        :raise Unavailable: this QEMU has no ``calc-dirty-rate``.
        :raise WaitTimeout: the measurement did not end within a minute.
        """
        self.require_commands(["calc-dirty-rate", "query-dirty-rate"])
        self.machine.cmd("calc-dirty-rate", calc_time=seconds, mode=mode)

        def check() -> Tuple[bool, Dict[str, Any]]:
            rate: Dict[str, Any] = self.machine.cmd("query-dirty-rate")
            return rate.get("status") == "measured", rate

        return wait_for(
            check, what=f"{self.name}: a {mode} dirty rate measured", timeout=seconds + 60.0
        )

    def set_vcpu_dirty_limit(self, rate: int) -> None:
        """Limit every vCPU's dirty page rate to ``rate`` MB/s (``set-vcpu-dirty-limit``)."""
        self.require_commands(["set-vcpu-dirty-limit", "cancel-vcpu-dirty-limit"])
        self.machine.cmd("set-vcpu-dirty-limit", dirty_rate=rate)

    def cancel_vcpu_dirty_limit(self) -> None:
        """Lift every vCPU's dirty page rate limit (``cancel-vcpu-dirty-limit``)."""
        self.machine.cmd("cancel-vcpu-dirty-limit")

    def vcpu_dirty_limits(self) -> List[Dict[str, Any]]:
        """The vCPUs' dirty page rate limits in force (``query-vcpu-dirty-limit``)."""
        limits: List[Dict[str, Any]] = self.machine.cmd("query-vcpu-dirty-limit")
        return limits

    def watch_dirty_limit(self, syncs: int, timeout: float = STATUS_TIMEOUT) -> List[int]:
        """Read the dirty-limit throttle time per round until it is above 0, or ``syncs`` syncs.

        :return: every throttle time seen, in microseconds (0 when QEMU
            leaves it out: the limit is not in service).
        :raise CheckFailure: see :meth:`_raise_if_ended`.
        """
        seen: List[int] = []

        def check() -> Tuple[bool, List[int]]:
            info = self.info()
            self._raise_if_ended(info, "the dirty limit to throttle")
            seen.append(int(info.get("dirty-limit-throttle-time-per-round", 0)))
            synced = int(info.get("ram", {}).get("dirty-sync-count", 0))
            return seen[-1] > 0 or synced >= syncs, seen

        what = f"dirty-limit throttle time > 0 or {syncs} syncs on {self.name} (times seen)"
        return wait_for(check, what=what, timeout=timeout, interval=0.05)

    # -- a suspended guest ----------------------------------------------------

    def require_wakeup_support(self) -> None:
        """:raise Unavailable: this machine cannot wake a guest from suspend.

        ``query-current-machine`` says whether ``system_wakeup`` can wake a
        suspended guest (a pc machine whose ACPI has S3 disabled cannot).
        """
        if not self.machine.cmd("query-current-machine").get("wakeup-suspend-support"):
            raise Unavailable(f"{self.describe()}: the machine cannot wake a suspended guest")

    def wakeup(self) -> None:
        """Wake the suspended guest (``system_wakeup``), and wait for QEMU's WAKEUP.

        :raise WaitTimeout: no WAKEUP event within :data:`RUN_STATE_TIMEOUT`.
        """
        self.machine.cmd("system_wakeup")
        self.machine.wait_event("WAKEUP", timeout=RUN_STATE_TIMEOUT)

    def wait_for_suspend(self, timeout: float = RUN_STATE_TIMEOUT) -> None:
        """Wait until the guest has suspended itself: event SUSPEND, run state ``suspended``.

        :raise WaitTimeout: no SUSPEND event within ``timeout`` (the message
            names the latest events).
        :raise CheckFailure: QEMU announced SUSPEND but its run state is another.
        """
        self.machine.wait_event("SUSPEND", timeout=timeout)
        state = self.run_state()
        if state != "suspended":
            raise CheckFailure(f"{self.name}: event SUSPEND, yet run state {state!r}")

    # -- waiting for the migration -------------------------------------------

    def read_final_stats(self, timeout: float = 10.0) -> MigrationInfo:
        """Read the statistics of a completed migration, once they are final.

        QEMU says ``completed`` before a source's figures are final: QEMU
        7.2 computes total-time and downtime just after setting that status,
        under the big lock, in the same step that moves the source's run
        state to ``postmigrate``; later versions compute them before.  So a
        source's figures are read once its run state is ``postmigrate`` (a
        total-time of 0 then means under a millisecond, as QEMU 10.0 shows
        on s390x).  A destination reports no times: its answer is final.
        """

        def check() -> Tuple[bool, str]:
            state = self.run_state()
            return state == "postmigrate", state

        info = self.info()
        if "setup-time" in info:
            what = f"{self.name} to reach run state postmigrate (run state shown)"
            wait_for(check, what=what, timeout=timeout)
            info = self.info()
        self.recorder.final = cast(Dict[str, Any], info)
        return info

    def run_state(self) -> str:
        """The guest's run state, as ``query-status`` names it (``running``, ...)."""
        status: str = self.machine.cmd("query-status")["status"]
        return status

    def wait_for_status(
        self, *statuses: Status, timeout: float = STATUS_TIMEOUT, fail_on: Iterable[Status] = ()
    ) -> MigrationInfo:
        """Wait until the migration status is one of ``statuses``.

        :param fail_on: statuses that mean the awaited one can no longer
            come; reaching one ends the wait at once.
        :return: the ``query-migrate`` answer that showed the status.
        :raise CheckFailure: a ``fail_on`` status was reached: the migration
            did what the test says it must not.
        :raise WaitTimeout: none of ``statuses`` within ``timeout``.
        """
        doomed = set(fail_on) - set(statuses)

        def check() -> Tuple[bool, MigrationInfo]:
            info = self.info()
            status = info.get("status", "none")
            if status in doomed:
                detail = info.get("error-desc", "no error-desc")
                raise CheckFailure(
                    f"{self.name}: migration reached '{status}' while waiting for "
                    f"{'/'.join(statuses)}: {detail}"
                )
            return status in statuses, info

        what = f"migration status {'/'.join(statuses)} on {self.name}"
        info: MigrationInfo = wait_for(check, what=what, timeout=timeout)
        return info

    def wait_for_cancelled(self) -> MigrationInfo:
        """Wait until a cancelled migration has ended, in ``cancelled``.

        A cancel takes milliseconds; :data:`CANCEL_TIMEOUT` leaves a loaded
        machine a thousand times that, and a cancel that never ends (QEMU
        7.2 with multifd: finding ``multifd-cancel-stuck``) is told sooner.

        :raise CheckFailure: it completed or failed instead.
        :raise WaitTimeout: still not ``cancelled`` after :data:`CANCEL_TIMEOUT`.
        """
        return self.wait_for_status(
            "cancelled", fail_on=("completed", "failed"), timeout=CANCEL_TIMEOUT
        )

    def wait_for_dirty_sync(self, count: int, timeout: float = STATUS_TIMEOUT) -> int:
        """Wait until RAM has been synced ``count`` times (first sync is 1).

        A second sync means a first full pass over RAM is complete and the
        pages dirtied meanwhile are found, to be sent again.

        :raise CheckFailure: see :meth:`_raise_if_ended`.
        :raise MigtestError: it switched over first (it was meant not to
            converge).
        """

        def check() -> Tuple[bool, int]:
            info = self.info()
            synced = int(info.get("ram", {}).get("dirty-sync-count", 0))
            if synced >= count:
                # Reached, even if by the switchover's own sync: a migration
                # whose stream shrinks (compression) may converge right there.
                return True, synced
            self._raise_if_ended(info, f"dirty sync {count} (at {synced})")
            return False, synced

        synced: int = wait_for(
            check, what=f"dirty-sync-count >= {count} on {self.name}", timeout=timeout
        )
        return synced

    def wait_for_full_pass(self, timeout: float = STATUS_TIMEOUT) -> int:
        """Wait until precopy has sent every page of RAM once: its first pass is over.

        All of RAM is dirty when a migration starts, so the first pass
        sends every page (a zero one as ``duplicate``), and it is over once
        the pages sent reach RAM's pages.  With postcopy enabled the dirty
        syncs do not tell: QEMU may then sync on every iteration (its
        pending size left for precopy alone is below the threshold), and
        11.1.3 on aarch64 and riscv64 had synced three times after 1153
        and 1794 of the test range's 25344 pages.

        :return: the pages sent.
        :raise CheckFailure: see :meth:`_raise_if_ended`.
        :raise MigtestError: it switched over first.
        """

        def check() -> Tuple[bool, int]:
            info = self.info()
            ram = info.get("ram", {})
            sent = int(ram.get("normal", 0)) + int(ram.get("duplicate", 0))
            pages = int(ram.get("total", 0)) // int(ram.get("page-size", 0) or 1)
            if 0 < pages <= sent:
                return True, sent
            self._raise_if_ended(info, f"a full pass ({sent} of {pages} pages sent)")
            return False, sent

        sent: int = wait_for(
            check, what=f"every page of RAM sent once by {self.name}", timeout=timeout
        )
        return sent

    def wait_for_throttle(self, percentage: int, timeout: float = STATUS_TIMEOUT) -> List[int]:
        """Wait until auto-converge throttles the guest by ``percentage`` or more.

        :return: every throttle percentage seen on the way, in order, each once.
        :raise CheckFailure: see :meth:`_raise_if_ended`.
        :raise MigtestError: it switched over first.
        """
        seen: List[int] = []

        def check() -> Tuple[bool, List[int]]:
            info = self.info()
            self._raise_if_ended(info, f"CPU throttling at {percentage} %")
            current = int(info.get("cpu-throttle-percentage", 0))
            if current and (not seen or seen[-1] != current):
                seen.append(current)
            return current >= percentage, seen

        what = f"CPU throttling at {percentage} % or more on {self.name} (percentages seen)"
        return wait_for(check, what=what, timeout=timeout)

    def _raise_if_ended(self, info: MigrationInfo, awaited: str) -> None:
        """Stop a wait for progress once the migration can make none.

        A failure or cancellation is QEMU's (FAIL).  A switchover held at
        ``pre-switchover`` is checked against the downtime limit then in
        force: more left than that limit allows is QEMU's fault (FAIL).
        Otherwise an early switchover or completion means the guest left
        too little to send for the test's limits to hold it back (ERROR).
        """
        status = info.get("status")
        if status in UNSUCCESSFUL:
            raise CheckFailure(
                f"{self.name}: migration {status} while waiting for {awaited}: "
                f"{info.get('error-desc', 'no error-desc')}"
            )
        if status == "pre-switchover":
            try:
                check_switchover_budget(info, self.parameters())
            except CheckFailure as exc:
                raise CheckFailure(f"{self.name}: {exc}") from None
        if status in SWITCHING_OVER:
            raise MigtestError(f"{self.name}: migration reached '{status}' before {awaited}")

    def account(self, lines: int = 5) -> str:
        """What this side says of its migration, in one line: for a FAIL message.

        The side that knows why a migration failed is often not the one
        that reported it: a source says "Broken pipe" where the destination
        said "Machine type received is 'pc-i440fx-7.2' and local is
        'pc-i440fx-10.0'".  So a failure quotes both sides: their status
        and error-desc, or their exit code, and the last lines QEMU printed.
        """
        if self.machine.is_running():
            try:
                info = self.info()
                state = f"status {info.get('status', 'none')}"
                if "error-desc" in info:
                    state += f" ({info['error-desc']})"
            except QMPConnectionLost as lost:  # dying: say how it ended, once it has
                try:
                    state = f"exited with {self.machine.wait_for_exit(timeout=DYING_TIMEOUT)}"
                except WaitTimeout:
                    state = f"no answer ({lost})"
            except MigtestError as exc:  # it stopped answering
                state = f"no answer ({exc})"
        else:
            state = f"exited with {self.machine.exitcode}"
        printed = [line.strip() for line in self.machine.output.splitlines() if line.strip()]
        said = " | ".join(printed[-lines:]) or "nothing"
        return f"{self.describe()}: {state}; statuses {self.status_history()}; printed: {said}"

    def status_history(self) -> List[str]:
        """Statuses announced by MIGRATION events so far (needs ``events``)."""
        return [e["data"]["status"] for e in self.machine.events("MIGRATION")]

    def wait_for_announcements(
        self, expected: Sequence[Status], since: int, timeout: float = STATUS_TIMEOUT
    ) -> None:
        """Wait until the statuses announced after the first ``since`` are ``expected``.

        For statuses that pass too fast for ``query-migrate`` to see, such
        as a recovery's ``postcopy-recover-setup`` on its way back to
        ``postcopy-paused``: the MIGRATION events keep every one.

        :raise WaitTimeout: they did not come within ``timeout``; the
            message shows those that did.
        """

        def check() -> Tuple[bool, List[str]]:
            announced = self.status_history()[since:]
            return announced == list(expected), announced

        wait_for(check, what=f"{self.name} to announce {list(expected)}", timeout=timeout)
