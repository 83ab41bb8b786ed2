"""The Avocado base class of the migration tests.

It reads the parameters once, turns what the host or QEMU lacks into a
CANCEL (or an ERROR in strict mode), and shuts every QEMU down in tearDown,
so test methods only say what the scenario is.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any, Callable, Collection, List, NoReturn, Optional, Sequence

from avocado import Test

from .artifacts import METRICS_FILE, PLOT_FILE, TRACE_FILE
from .endpoint import Endpoint
from .errors import QMPError, Unavailable
from .machine import QEMUMachine
from .metrics import summarize
from .pair import MigrationPair
from .params import SuiteParams
from .qmp import TRACE_LOGGER
from .report.timeline import render_timeline_svg
from .status import Status
from .verify import (
    assert_command_fails,
    assert_guest_runs,
    assert_statuses_after,
    verify_migration,
)
from .wait import limit_all_waits

#: Seconds of the test's timeout kept back when waits are capped: enough for
#: a wait cut short to end the test method before Avocado interrupts it.
TIMEOUT_MARGIN = 5.0

#: How the QMP trace's records are written: ``<time> migtest.qmp.src -> stop {}``.
TRACE_FORMAT = "%(asctime)s %(name)s %(message)s"


class MigrationTest(Test):
    """A test that migrates the test guest from a source to a destination QEMU.

    Parameters (variants files or ``-p name=value``): ``arch``, ``accel``
    (``tcg``, ``kvm`` or ``auto``), ``qemu_bin``, ``qemu_bin_src``,
    ``qemu_bin_dst``, ``boot_timeout``, ``strict``.  See README.rst.

    :avocado: disable
    """

    #: Seconds before Avocado interrupts a test; every wait inside ends sooner.
    timeout = 300

    pair: MigrationPair

    def setUp(self) -> None:
        self._lone_machines: List[QEMUMachine] = []
        self._qmp_log = self._start_qmp_log()
        self._limit_waits()
        # First, alone: it decides what a missing binary below becomes.
        self._strict = SuiteParams.strict_from(self.params, os.environ)
        try:
            self.suite = SuiteParams.from_params(self.params)
        except Unavailable as exc:
            self.unavailable(str(exc))
        self.pair = MigrationPair(self.suite, Path(self.workdir))

    def tearDown(self) -> None:
        """Shut every QEMU down and keep what the test produced.

        Nothing here raises: Avocado would turn the test's FAIL into an
        ERROR and replace its reason.  A step that fails is logged.
        """
        self._limit_waits()  # a window of its own: Avocado times tearDown apart
        pair: Optional[MigrationPair] = getattr(self, "pair", None)
        steps: List[Callable[[], None]] = [m.shutdown for m in getattr(self, "_lone_machines", [])]
        if pair is not None:
            steps += [pair.close, self._save_metrics]
        for step in [*steps, self._keep_logs, self._stop_qmp_log, super().tearDown]:
            try:
                step()
            except Exception:
                self.log.exception("tearDown: %s failed", getattr(step, "__name__", step))

    def _limit_waits(self) -> None:
        """End any wait before the test's timeout does, so the error names it.

        Avocado's timeout (``self.timeout``, times ``timeout_factor``) would
        interrupt the test wherever it is; a test whose timeout is under the
        margin is left to it.
        """
        if self.timeout and self.timeout > TIMEOUT_MARGIN:
            limit_all_waits(
                self.timeout - TIMEOUT_MARGIN, f"the test's {self.timeout:g} s timeout is near"
            )

    def _start_qmp_log(self) -> logging.Handler:
        """Send the QMP trace to its own file rather than to debug.log.

        Avocado relays a test's log records to debug.log one by one, about
        a hundred a second; a migration polled on both sides logs several
        times that, and the test's result then waited seconds for its log.
        debug.log keeps the story: launches, commands that change
        something, events and verdicts.
        """
        handler = logging.FileHandler(Path(self.logdir) / TRACE_FILE)
        handler.setFormatter(logging.Formatter(TRACE_FORMAT))
        trace = logging.getLogger(TRACE_LOGGER)
        trace.setLevel(logging.DEBUG)
        trace.addHandler(handler)
        trace.propagate = False
        return handler

    def _stop_qmp_log(self) -> None:
        trace = logging.getLogger(TRACE_LOGGER)
        trace.removeHandler(self._qmp_log)
        trace.propagate = True
        self._qmp_log.close()

    def _save_metrics(self) -> None:
        """Keep every side's migration timeline as JSON, and say the gist in one line."""
        sides = {
            e.name: e.recorder.as_dict(e.machine.events("MIGRATION")) for e in self.pair.endpoints()
        }
        if not any(side["samples"] for side in sides.values()):
            return
        report = {
            "test": str(self.name),
            "arch": self.suite.profile.name,
            "accel": self.suite.accel,
            "sides": sides,
        }
        (Path(self.outputdir) / METRICS_FILE).write_text(json.dumps(report, indent=1))
        (Path(self.outputdir) / PLOT_FILE).write_text(render_timeline_svg(report))
        line = summarize(self.pair.src.recorder.final)
        self.log.info("migration: %s", line)
        self.whiteboard = line

    def _keep_logs(self) -> None:
        """Keep the consoles and QEMU's output with the results: workdir is removed."""
        for log in Path(self.workdir).glob("*.log"):
            shutil.copy(log, self.outputdir)

    def unavailable(self, reason: str) -> NoReturn:
        """End the test because something it needs is missing.

        A CANCEL, or an ERROR in strict mode, where nothing may be skipped
        (a CANCEL leaves a job green).
        """
        if self._strict:
            self.error(f"strict mode: {reason}")
        self.cancel(reason)
        raise AssertionError("unreachable: cancel() returned")

    def start_pair(
        self,
        *,
        dst_paused: bool = True,
        src_args: Sequence[str] = (),
        dst_args: Sequence[str] = (),
        shared_memory: bool = False,
    ) -> MigrationPair:
        """Start source and destination; return when the guest runs.

        See :meth:`MigrationPair.start` for the arguments.
        """
        try:
            self.pair.start(
                dst_paused=dst_paused,
                src_args=src_args,
                dst_args=dst_args,
                shared_memory=shared_memory,
            )
        except Unavailable as exc:
            self.unavailable(str(exc))
        return self.pair

    def require_capabilities(self, *names: str) -> None:
        """Cancel unless both QEMUs know the migration capabilities ``names``."""
        try:
            self.pair.src.require_capabilities(names)
            self.pair.dst.require_capabilities(names)
        except Unavailable as exc:
            self.unavailable(str(exc))

    def enable_postcopy(self, **more_capabilities: bool) -> None:
        """Enable postcopy on both sides, or cancel saying why it cannot work.

        QEMU checks userfaultfd when the destination's capability is set,
        which makes its answer the most reliable test of host support.
        """
        capabilities = {"postcopy_ram": True, **more_capabilities}
        self.require_capabilities(*capabilities)
        try:
            self.pair.dst.set_capabilities(**capabilities)
        except QMPError as exc:
            if "not supported" not in exc.desc.lower():
                raise  # QEMU refused for another reason: that is a failure
            self.unavailable(f"postcopy cannot work on this host: {exc.desc}")
        self.pair.src.set_capabilities(**capabilities)

    def launch_machine(self, *args: str) -> QEMUMachine:
        """Start a lone QEMU (the source binary) with ``args``; shut down in tearDown."""
        machine = QEMUMachine(
            self.suite.qemu_bin_src, list(args), name="vm", workdir=Path(self.workdir)
        )
        self._lone_machines.append(machine)
        machine.launch()
        return machine

    def require_commands(self, machine: QEMUMachine, *names: str) -> None:
        """Cancel unless ``machine``'s QEMU has the QMP commands ``names``."""
        known = {c["name"] for c in machine.cmd("query-commands")}
        missing = sorted(set(names) - known)
        if missing:
            self.unavailable(f"{machine.binary} lacks the QMP commands: {', '.join(missing)}")

    def verify_migration(self) -> None:
        """Apply every check a successful migration must pass."""
        verify_migration(self.pair)

    def assert_guest_runs(self, machine: QEMUMachine) -> None:
        """The guest on ``machine`` prints and counts on."""
        assert_guest_runs(machine, self.suite.profile)

    def assert_statuses_after(
        self, side: Endpoint, mark: Status, forbidden: Collection[Status]
    ) -> None:
        """Once at ``mark``, ``side`` never went through ``forbidden`` and completed."""
        assert_statuses_after(side, mark, forbidden)

    def assert_command_fails(
        self, machine: QEMUMachine, message: str, command: str, **arguments: Any
    ) -> QMPError:
        """``command`` must fail with an error whose description contains ``message``."""
        return assert_command_fails(machine, message, command, **arguments)
