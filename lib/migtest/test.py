"""The Avocado base class of the migration tests.

It reads the parameters once, turns what the host or QEMU lacks into a
CANCEL (or an ERROR in strict mode), and shuts every QEMU down in tearDown,
so test methods only say what the scenario is.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import platform
import shutil
import signal
from pathlib import Path
from types import FrameType
from typing import Any, Callable, Dict, List, NoReturn, Optional, Sequence, Tuple

from avocado import Test
from avocado.core.exceptions import TestInterrupt

from . import probe_store
from .artifacts import METRICS_FILE, PLOT_FILE, TRACE_FILE
from .downtime import felt_downtime_of
from .errors import MigtestError, QMPError, Unavailable, WaitTimeout
from .findings import FINDINGS_BY_ID, Hit, explain, not_reproduced
from .machine import QEMUMachine, end_with_job, stop_all
from .metrics import read_settings, summarize
from .pair import MigrationPair
from .params import SuiteParams
from .qapi import Capability
from .qmp import TRACE_LOGGER
from .report.timeline import render_timeline_svg
from .threads import thread_states
from .verify import assert_guest_runs, verify_migration
from .wait import limit_all_waits

#: Seconds of the test's timeout kept back when waits are capped: enough for
#: a wait cut short to end the test method before Avocado interrupts it.
TIMEOUT_MARGIN = 5.0

#: How the QMP trace's records are written: ``<time> migtest.qmp.src -> stop {}``.
TRACE_FORMAT = "%(asctime)s %(name)s %(message)s"


#: What QEMU's postcopy_ram_supported_by_host() says when the target's
#: pages are bigger than the host's (loongarch64's 16 KiB on a 4 KiB host):
#: userfaultfd places whole host pages, so this pairing of architecture
#: and host can never do postcopy.  A limit of QEMU's design, not a host
#: set up wrongly: no ERROR in strict mode.
PAGES_TOO_BIG = "target page size bigger than host page size"


def postcopy_refusal(desc: str) -> Optional[Unavailable]:
    """What QEMU's refusal of the destination's postcopy capability means.

    ``None`` for a refusal that is not about support (a failure);
    otherwise the :class:`Unavailable` to end the test with: expected
    (an ERROR in strict mode: userfaultfd missing or forbidden here) but
    for :data:`PAGES_TOO_BIG`.
    """
    if "not supported" not in desc.lower() and PAGES_TOO_BIG not in desc.lower():
        return None
    return Unavailable(
        f"postcopy cannot work on this host: {desc}", expected=PAGES_TOO_BIG not in desc.lower()
    )


def explain_all(
    where: Tuple[str, Tuple[int, ...], Tuple[int, ...]],
    failure: BaseException,
    output: Sequence[str],
) -> Optional[Hit]:
    """The finding behind ``failure`` (and QEMU's ``output``): of each of its problems.

    ``where`` is the architecture and both QEMU versions.  A
    :class:`CheckFailure` that lists its problems is weighed problem by
    problem, each with QEMU's output; any problem no finding explains
    leaves the whole failure unexplained (``None``).
    """
    problems = getattr(failure, "problems", None) or [str(failure)]
    hits = [explain(*where, "\n".join([problem, *output])) for problem in problems]
    if any(hit is None for hit in hits):
        return None
    return hits[0]


def _end_as_the_scenario_says(method: Callable[..., None]) -> Callable[..., None]:
    """``method``, with what is not the test's fault turned into the right status.

    Something missing (:class:`Unavailable`) becomes
    :meth:`MigrationTest.unavailable`; a failure that a known QEMU finding
    explains becomes :meth:`MigrationTest.known_finding`; a pass where a
    finding said it must show is flagged.
    """

    @functools.wraps(method)
    def test(self: MigrationTest, *args: Any, **kwargs: Any) -> None:
        try:
            method(self, *args, **kwargs)
        except Unavailable as exc:
            self.unavailable(str(exc), exc.expected)
        except (MigtestError, AssertionError) as exc:
            if isinstance(exc, WaitTimeout):
                self._log_qemu_threads()
            hit = self._finding_behind(exc)
            if hit is None:
                raise
            self.known_finding(hit)
        self._flag_findings_not_reproduced(f"{type(self).__name__}.{method.__name__}")
        self._flag_findings_shown()

    return test


class MigrationTest(Test):
    """A test that migrates the test guest from a source to a destination QEMU.

    Parameters (variants files or ``-p name=value``): ``arch``, ``accel``
    (``tcg``, ``kvm`` or ``auto``), ``qemu_bin``, ``qemu_bin_src``,
    ``qemu_bin_dst``, ``qemu_version``, ``qemu_version_src``,
    ``qemu_version_dst``, ``machine``, ``cpu``, ``boot_timeout``, ``strict``.
    See README.rst.

    :avocado: disable
    """

    #: Seconds before Avocado interrupts a test; every wait inside ends sooner.
    timeout = 300

    pair: MigrationPair

    def setUp(self) -> None:
        self._lone_machines: List[QEMUMachine] = []
        self._qmp_log = self._start_qmp_log()
        self._limit_waits()
        self._share_probes()
        # First, alone: it decides what a missing binary below becomes.
        self._strict = SuiteParams.strict_from(self.params, os.environ)
        try:
            self.suite = SuiteParams.from_params(self.params)
        except Unavailable as exc:  # setUp is not a test method: see __init_subclass__
            self.unavailable(str(exc), exc.expected)
        self.pair = MigrationPair(self.suite, Path(self.workdir))

    def tearDown(self) -> None:
        """Shut every QEMU down and keep what the test produced.

        Nothing here raises: Avocado would turn the test's FAIL into an
        ERROR and replace its reason.  A step that fails is reported by
        :meth:`_step_failed`: a PASS becomes a WARN that names it.
        """
        self._limit_waits()  # a window of its own: Avocado times tearDown apart
        steps: List[Tuple[str, Callable[[], None]]] = []
        if self.status == "INTERRUPTED":
            # Its method may still run in its thread, holding the monitors:
            # no QEMU could be asked to quit, and Avocado does not wait.
            steps.append(("killing every QEMU", lambda: stop_all("the test was interrupted")))
        for machine in getattr(self, "_lone_machines", []):
            steps.append((f"shutting {machine.name} down", machine.shutdown))
        pair: Optional[MigrationPair] = getattr(self, "pair", None)
        if pair is not None:
            steps += [
                ("shutting the pair down", pair.close),
                ("saving the metrics and the plot", self._save_metrics),
            ]
        steps += [
            ("keeping the logs", self._keep_logs),
            ("stopping the QMP trace", self._stop_qmp_log),
            ("Avocado's tearDown", super().tearDown),
        ]
        for what, step in steps:
            try:
                step()
            except Exception as exc:  # noqa: BLE001 - every step runs; each failure is reported
                self._step_failed(what, exc)

    def _step_failed(self, what: str, exc: Exception) -> None:
        """Report a failed tearDown step without changing a verdict that is not a pass.

        In a test that passed, a warning: Avocado turns the PASS into a WARN,
        so a broken report step cannot go unseen.  A FAIL, ERROR or
        INTERRUPTED keeps its own reason (a warning could not change it
        anyway); a CANCEL would become a WARN, which would hide why it was
        cancelled, so there the step is logged as an error.
        """
        self.log.debug("tearDown: %s failed", what, exc_info=exc)
        report = self.log.warning if self.status in ("PASS", "WARN") else self.log.error
        report("tearDown: %s failed: %s: %s", what, type(exc).__name__, exc)

    def run_avocado(self) -> None:
        """Run the test, in Avocado's test process, and take its QEMUs down with it.

        Avocado calls this in the main thread of the process that runs the
        test, the only thread that may handle signals.  The process is
        interrupted by Ctrl-C, which reaches every process of the job, or
        by SIGTERM: from its runner, which Avocado asks to end the task,
        or, once the runner or Avocado is gone, from :func:`end_with_job`.
        Each kills the QEMUs in the handler itself, at once: Avocado waits
        for a task a second at most before it kills the runner (never the
        test under it), and not at all after a second Ctrl-C.
        """
        self._interrupted = False
        handlers = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
        for signum, previous in handlers.items():
            if previous is not signal.SIG_IGN:  # a job started with Ctrl-C ignored keeps it so
                signal.signal(signum, self._on_signal)
        undo = end_with_job(signal.SIGTERM)
        try:
            super().run_avocado()
        finally:
            undo()
            for signum, previous in handlers.items():
                if previous is not None:  # None: not set from Python, cannot be restored
                    signal.signal(signum, previous)

    def _on_signal(self, signum: int, frame: Optional[FrameType]) -> None:
        """Kill every QEMU now; then end setUp or the test method, once.

        The interruption Avocado understands (as its own SIGTERM handler
        raises it) makes the test INTERRUPTED and runs tearDown, which
        removes sockets and files; Python's KeyboardInterrupt would skip
        tearDown.  Once tearDown runs, the test is ending already: raising
        there would cut its cleanup short.
        """
        name = signal.Signals(signum).name
        stop_all(f"the test process got {name}")
        if self.phase in ("SETUP", "TEST") and not self._interrupted:
            self._interrupted = True
            raise TestInterrupt(f"Test interrupted: {name}")

    def _share_probes(self) -> None:
        """Let this job's tests share what each QEMU binary said of itself.

        Each test runs in a process of its own and would ask every binary
        again (:mod:`~migtest.probe_store`).  Avocado's ``teststmpdir`` is
        the job's and goes with it; without it, each test asks for itself.
        """
        try:
            shared: Optional[Path] = Path(self.teststmpdir)
        except OSError:
            shared = None
        probe_store.share_in(shared)

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
        settings = read_settings(Path(self.logdir) / TRACE_FILE)
        report = {
            "test": str(self.name),
            "arch": self.suite.profile.name,
            "accel": self.suite.accel,
            # Where it ran: a job over several hosts (scripts/remote-run) or a
            # merged report of several jobs tells the cells apart by it.
            "host": platform.node(),
            # The newest destination is the one the migration went to.
            "qemu": {"src": self.pair.src.version_text, "dst": self.pair.dst.version_text},
            # What the source was set to migrate with: the plot shows its features.
            "settings": settings,
            # The pause the guest felt, by its own console, next to QEMU's downtime.
            **felt_downtime_of(
                self.pair.src.machine, self.pair.dst.machine, self.pair.src.recorder.final
            ),
            "sides": sides,
        }
        (Path(self.outputdir) / METRICS_FILE).write_text(json.dumps(report, indent=1))
        (Path(self.outputdir) / PLOT_FILE).write_text(render_timeline_svg(report))
        recorder = self.pair.src.recorder
        line = summarize(
            recorder.final,
            samples=recorder.samples,
            settings=settings,
            felt=report["guest_felt_downtime"],
        )
        self.log.info("migration: %s", line)
        self.whiteboard = line

    def _keep_logs(self) -> None:
        """Keep the consoles and QEMU's output with the results: workdir is removed."""
        for log in Path(self.workdir).glob("*.log"):
            shutil.copy(log, self.outputdir)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Make every test method end in CANCEL when something it needs is missing.

        Whatever a test calls can find the host or the QEMU under test
        without something (a binary, an accelerator, a capability, a
        command): the library raises :class:`Unavailable` naming it, the
        binary and its version, and this is the one place that turns it
        into a CANCEL (or, in strict mode, an ERROR).  It is also the one
        place that weighs a failure against the known QEMU findings.
        """
        super().__init_subclass__(**kwargs)
        for name, method in list(vars(cls).items()):
            if name.startswith("test") and callable(method):
                setattr(cls, name, _end_as_the_scenario_says(method))

    def unavailable(self, reason: str, expected: bool = True) -> NoReturn:
        """End the test because something it needs is missing.

        A CANCEL, or an ERROR in strict mode when it should have been there
        (``expected``), where nothing may be skipped (a CANCEL leaves a job
        green).  A feature newer than the QEMU under test stays a CANCEL.
        """
        if self._strict and expected:
            self.error(f"strict mode: {reason}")
        self.cancel(reason)
        raise AssertionError("unreachable: cancel() returned")

    def known_finding(self, hit: Hit) -> NoReturn:
        """End the test in CANCEL: it failed the way a known QEMU finding says.

        Strict mode too: the finding is precise (architecture, both
        versions, what QEMU said), so this is not a skip of the test but
        the test's verdict; the logs stay with the result as for a FAIL.
        """
        where = self._versions()
        if where is not None:  # it is: a hit needs them
            arch, src, dst = where
            hit_at = f"{hit}; QEMU {'.'.join(map(str, src))} -> {'.'.join(map(str, dst))}, {arch}"
        else:
            hit_at = str(hit)
        self.log.error("%s", hit_at)
        self.cancel(hit_at)
        raise AssertionError("unreachable: cancel() returned")

    def _versions(self) -> Optional[Tuple[str, Tuple[int, ...], Tuple[int, ...]]]:
        """The architecture and both sides' QEMU versions, once the pair started."""
        pair: Optional[MigrationPair] = getattr(self, "pair", None)
        if pair is None or not pair.endpoints():
            return None
        try:
            return self.suite.profile.name, pair.src.version, pair.dst.version
        except MigtestError:  # a side died before anyone asked its version
            return None

    def _log_qemu_threads(self) -> None:
        """Log what each running QEMU's threads are doing: after a wait ran out, busy or stuck?"""
        pair: Optional[MigrationPair] = getattr(self, "pair", None)
        for side in pair.endpoints() if pair else []:
            pid = side.machine.pid
            if pid is None or not side.machine.is_running():
                continue
            threads = thread_states(pid)
            self.log.info(
                "%s (pid %d) threads, as Linux shows them (tid, name, state, waits in):\n%s",
                side.name,
                pid,
                "\n".join(f"  {thread.describe()}" for thread in threads) or "  none",
            )

    def _finding_behind(self, failure: BaseException) -> Optional[Hit]:
        """The known finding that explains ``failure``, from it and what QEMU printed.

        A check that found several problems is explained only if each of
        them is: a known finding must not hide a new one next to it.
        Only the sides of the migration that failed speak: a destination
        replaced after a failure the test expected (a corrupted stream, a
        cancel) may have printed anything.
        """
        where = self._versions()
        if where is None:
            return None
        output = [self.pair.src.machine.output, self.pair.dst.machine.output]
        return explain_all(where, failure, output)

    def _flag_findings_shown(self) -> None:
        """Warn for each known QEMU finding a check saw and allowed (a WARN).

        Every check passed, the one that saw it only as far as the finding
        allows; the WARN names the finding and keeps what showed it.
        """
        pair: Optional[MigrationPair] = getattr(self, "pair", None)
        for finding_id, evidence in (pair.findings_shown if pair else {}).items():
            finding = FINDINGS_BY_ID[finding_id]
            self.log.warning(
                "known QEMU finding %s showed; every check passed, this one as far as the "
                "finding allows: %s",
                finding.describe(),
                "; ".join(evidence),
            )

    def _flag_findings_not_reproduced(self, test: str) -> None:
        """Warn for each finding ``test`` (``Class.method``), which passed, should have hit.

        One that says no migration here completes, or that names this
        test as one that hits it every time here (:func:`not_reproduced`).
        The test passed, and stays passed, but as a WARN: the finding may be
        fixed in the QEMU under test, and the registry must follow.
        """
        where = self._versions()
        if where is None:
            return
        misses = not_reproduced(
            test,
            self.suite.accel,
            *where,
            completed="completed" in self.pair.dst.status_history(),
            shown=self.pair.findings_shown,
        )
        for miss in misses:
            self.log.warning("%s", miss)

    def start_pair(
        self,
        *,
        dst_paused: bool = True,
        src_args: Sequence[str] = (),
        dst_args: Sequence[str] = (),
        shared_memory: bool = False,
        guest: Optional[str] = None,
    ) -> MigrationPair:
        """Start source and destination; return when the guest runs.

        See :meth:`MigrationPair.start` for the arguments.
        """
        self.pair.start(
            dst_paused=dst_paused,
            src_args=src_args,
            dst_args=dst_args,
            shared_memory=shared_memory,
            guest=guest,
        )
        return self.pair

    def start_postcopy_pair(self, *more: Capability) -> MigrationPair:
        """Start a pair whose destination runs, as postcopy needs; enable postcopy (and ``more``).

        :raise Unavailable: see :meth:`enable_postcopy`.
        """
        pair = self.start_pair(dst_paused=False)
        self.enable_postcopy(*more)
        return pair

    def enable_postcopy(self, *more: Capability) -> None:
        """Enable postcopy (and ``more`` capabilities) on both sides.

        QEMU checks userfaultfd when the destination's capability is set,
        which makes its answer the most reliable test of host support.
        With multifd, both QEMUs must be new enough for the two to work
        together (7.2 accepts both, then aborts or hangs: README, Findings).

        :raise Unavailable: a capability or the combination is missing, or
            the host refuses userfaultfd.
        """
        capabilities: Dict[Capability, bool] = {"postcopy-ram": True, **dict.fromkeys(more, True)}
        self.pair.require_capabilities(*capabilities)
        if "multifd" in more:
            for side in (self.pair.src, self.pair.dst):
                side.require_version_for("postcopy-ram+multifd")
        try:
            self.pair.dst.set_capabilities(capabilities)
        except QMPError as exc:
            refusal = postcopy_refusal(exc.desc)
            if refusal is None:
                raise  # QEMU refused for another reason: that is a failure
            raise refusal from exc
        self.pair.src.set_capabilities(capabilities)

    def launch_machine(self, *args: str) -> QEMUMachine:
        """Start a lone QEMU (the source binary) with ``args``; shut down in tearDown."""
        machine = QEMUMachine(
            self.suite.qemu_bin_src, list(args), name="vm", workdir=Path(self.workdir)
        )
        self._lone_machines.append(machine)
        machine.launch()
        return machine

    def verify_migration(self) -> None:
        """Apply every check a successful migration must pass."""
        verify_migration(self.pair)

    def assert_guest_runs(self, machine: QEMUMachine) -> None:
        """The guest on ``machine`` prints and counts on."""
        assert_guest_runs(machine, self.suite.profile)
