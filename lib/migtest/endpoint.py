"""The migration commands of one side, source or destination.

An :class:`Endpoint` wraps a :class:`~migtest.machine.QEMUMachine` with the
verbs migration tests use, in Python terms: capabilities and parameters are
keyword arguments, statuses are strings QEMU defines, and every setting is
read back, because a QEMU that accepts a value and then ignores it is a bug
this suite should catch.
"""

from __future__ import annotations

from typing import Any, Dict, FrozenSet, Iterable, List, Optional, Tuple

from .checks import check_switchover_budget
from .errors import CheckFailure, MigtestError, Unavailable
from .machine import QEMUMachine
from .metrics import MigrationRecorder
from .status import SWITCHING_OVER, UNSUCCESSFUL, Status
from .wait import wait_for

#: Seconds a migration status may take to be reached (QEMU's own tests cap
#: their status waits at 120 s after unlimited waits hung CI).
STATUS_TIMEOUT = 120.0


def _qmp_name(name: str) -> str:
    return name.replace("_", "-")


class Endpoint:
    """One side of a migration."""

    def __init__(self, machine: QEMUMachine) -> None:
        self.machine = machine
        self.name = machine.name
        self._capabilities: Optional[FrozenSet[str]] = None
        #: The migration's timeline, as seen by this side.
        self.recorder = MigrationRecorder()

    def supported_capabilities(self) -> FrozenSet[str]:
        """The migration capabilities this QEMU knows."""
        if self._capabilities is None:
            caps = self.machine.cmd("query-migrate-capabilities")
            self._capabilities = frozenset(c["capability"] for c in caps)
        return self._capabilities

    def require_capabilities(self, names: Iterable[str]) -> None:
        """:raise Unavailable: this QEMU lacks one of the capabilities ``names``."""
        missing = sorted(set(map(_qmp_name, names)) - self.supported_capabilities())
        if missing:
            raise Unavailable(
                f"{self.name} QEMU ({self.machine.binary}) lacks the migration "
                f"capabilities: {', '.join(missing)}"
            )

    def set_capabilities(self, **capabilities: bool) -> None:
        """Set migration capabilities and check that QEMU took them.

        :raise Unavailable: QEMU does not know one of them.
        """
        self.require_capabilities(capabilities)
        wanted = {_qmp_name(k): v for k, v in capabilities.items()}
        self.machine.cmd(
            "migrate-set-capabilities",
            capabilities=[{"capability": k, "state": v} for k, v in wanted.items()],
        )
        current = {
            c["capability"]: c["state"] for c in self.machine.cmd("query-migrate-capabilities")
        }
        wrong = {k: current.get(k) for k, v in wanted.items() if current.get(k) != v}
        if wrong:
            raise CheckFailure(f"{self.name}: capabilities set to {wanted} but read back {wrong}")

    def set_parameters(self, **parameters: Any) -> None:
        """Set migration parameters and check that QEMU took them."""
        wanted = {_qmp_name(k): v for k, v in parameters.items()}
        self.machine.cmd("migrate-set-parameters", **wanted)
        current = self.parameters()
        wrong = {k: current.get(k) for k, v in wanted.items() if current.get(k) != v}
        if wrong:
            raise CheckFailure(f"{self.name}: parameters set to {wanted} but read back {wrong}")

    def parameters(self) -> Dict[str, Any]:
        """The current migration parameters, with QMP names."""
        result: Dict[str, Any] = self.machine.cmd("query-migrate-parameters")
        return result

    def info(self) -> Dict[str, Any]:
        """The answer to ``query-migrate``, also kept in :attr:`recorder`."""
        result: Dict[str, Any] = self.machine.cmd("query-migrate")
        self.recorder.record(result)
        return result

    def read_final_stats(self, timeout: float = 10.0) -> Dict[str, Any]:
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
        self.recorder.final = info
        return info

    def run_state(self) -> str:
        """The guest's run state, as ``query-status`` names it (``running``, ...)."""
        status: str = self.machine.cmd("query-status")["status"]
        return status

    def migrate(self, uri: str, **arguments: Any) -> None:
        """Start migrating to ``uri`` (on the source)."""
        self.machine.cmd("migrate", uri=uri, **arguments)

    def stop(self) -> None:
        """Pause the guest's vCPUs."""
        self.machine.cmd("stop")

    def cont(self) -> None:
        """Resume the guest's vCPUs."""
        self.machine.cmd("cont")

    def cancel(self) -> None:
        """Cancel the outgoing migration."""
        self.machine.cmd("migrate_cancel")

    def continue_switchover(self) -> None:
        """Let a migration held by pause-before-switchover finish."""
        self.machine.cmd("migrate-continue", state="pre-switchover")

    def wait_for_status(
        self, *statuses: Status, timeout: float = STATUS_TIMEOUT, fail_on: Iterable[Status] = ()
    ) -> Dict[str, Any]:
        """Wait until the migration status is one of ``statuses``.

        :param fail_on: statuses that mean the awaited one can no longer
            come; reaching one ends the wait at once.
        :return: the ``query-migrate`` answer that showed the status.
        :raise CheckFailure: a ``fail_on`` status was reached: the migration
            did what the test says it must not.
        :raise WaitTimeout: none of ``statuses`` within ``timeout``.
        """
        doomed = set(fail_on) - set(statuses)

        def check() -> Tuple[bool, Dict[str, Any]]:
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
        info: Dict[str, Any] = wait_for(check, what=what, timeout=timeout)
        return info

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
            self._raise_if_ended(info, f"dirty sync {count} (at {synced})")
            return synced >= count, synced

        synced: int = wait_for(
            check, what=f"dirty-sync-count >= {count} on {self.name}", timeout=timeout
        )
        return synced

    def wait_for_throttle(self, timeout: float = STATUS_TIMEOUT) -> int:
        """Wait until auto-converge throttles the guest; return the percentage.

        :raise CheckFailure: see :meth:`_raise_if_ended`.
        :raise MigtestError: it switched over first.
        """

        def check() -> Tuple[bool, int]:
            info = self.info()
            self._raise_if_ended(info, "CPU throttling")
            percentage = int(info.get("cpu-throttle-percentage", 0))
            return percentage > 0, percentage

        return wait_for(check, what=f"CPU throttling on {self.name}", timeout=timeout)

    def _raise_if_ended(self, info: Dict[str, Any], awaited: str) -> None:
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

    def status_history(self) -> List[str]:
        """Statuses announced by MIGRATION events so far (needs ``events``)."""
        return [e["data"]["status"] for e in self.machine.events("MIGRATION")]
