"""The pause the guest felt across a switchover, from its console's B's.

Mostly pure: made-up arrival series and QMP events, where the right answer
is known by construction.  Then the console recorder, first against a
socket we write to ourselves, then against a real QEMU booting the x86_64
guest.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Dict, List, Optional, Sequence

import pytest

from migtest.arch import get_profile
from migtest.console import ConsoleRecorder
from migtest.downtime import (
    PASS_MARK,
    Switchover,
    felt_downtime,
    felt_downtime_of,
    switchover_from_events,
)
from migtest.machine import QEMUMachine
from migtest.metrics import summarize
from migtest.pair import MigrationPair
from migtest.params import SuiteParams
from migtest.report.downtime import compare, comparison_text, kind_of, row_of
from migtest.report.downtime import main as downtime_main
from migtest.report.timeline import HEIGHT, WIDTH, render_timeline_svg
from migtest.verify import verify_migration
from migtest.wait import wait_for

#: A wall clock large enough that float rounding would show.
T0 = 1_700_000_000.0
SVG = "{http://www.w3.org/2000/svg}"


def passes(start: float, end: float, period: float) -> List[float]:
    """A B every ``period`` seconds from ``start``, up to ``end``."""
    return [start + i * period for i in range(int((end - start) / period + 1e-6) + 1)]


def passes_until(last: float, since: float, period: float) -> List[float]:
    """A B every ``period`` seconds, the last one at ``last``, from ``since`` on."""
    return sorted(last - i * period for i in range(int((last - since) / period + 1e-6) + 1))


def precopy(
    *,
    pause: float = 0.055,
    src_period: float = 0.010,
    dst_period: float = 0.010,
    held: float = 0.0,
    into_pass: float = 0.005,
) -> Switchover:
    """A switchover at T0 + 1 s: the guest stops ``into_pass`` after a B, is
    paused ``pause`` s, and (after ``held`` s more, if the test held the
    destination) finishes its pass on the destination."""
    stop = T0 + 1.0
    last = stop - into_pass
    done_on_src = into_pass / src_period  # fraction of a pass run on the source
    resume = stop + pause + held
    first_dst = resume + (1 - done_on_src) * dst_period
    return Switchover(
        src_b=passes_until(last, T0, src_period),
        dst_b=passes(first_dst, first_dst + 0.3, dst_period),
        src_migrating=T0 + 0.5025,
        src_stop=stop,
        src_completed=stop + pause - 0.004,
        dst_resume=resume,
        dst_completed=stop + pause,
        dst_console_end=resume + 3.0,
    )


# -- the measure, on made-up series ---------------------------------------------


def test_the_gap_less_one_pass_is_the_pause() -> None:
    felt = felt_downtime(precopy())
    assert felt["felt_ms"] == pytest.approx(55.0, abs=0.01)
    assert felt["gap_ms"] == pytest.approx(65.0, abs=0.01)
    assert felt["pass_ms"] == pytest.approx(10.0, abs=0.01)
    assert felt["uncertainty_ms"] == pytest.approx(0.0, abs=0.01)  # perfectly regular passes
    assert felt["stop_to_resume_ms"] == pytest.approx(55.0, abs=0.01)
    assert felt["dst_tail_ms"] == pytest.approx(4.0, abs=0.01)
    assert felt["held_by_test_ms"] == 0.0


@pytest.mark.parametrize("into_pass", [0.0005, 0.005, 0.0095])
def test_where_in_its_pass_the_guest_stopped_does_not_matter(into_pass: float) -> None:
    assert felt_downtime(precopy(into_pass=into_pass))["felt_ms"] == pytest.approx(55.0, abs=0.01)


def test_a_destination_the_test_held_paused_does_not_count_its_hold() -> None:
    felt = felt_downtime(precopy(held=1.8))
    assert felt["gap_ms"] == pytest.approx(1865.0, abs=0.01)
    assert felt["held_by_test_ms"] == pytest.approx(1800.0, abs=0.01)
    assert felt["felt_ms"] == pytest.approx(55.0, abs=0.01)
    assert felt["stop_to_resume_ms"] == pytest.approx(55.0, abs=0.01)


def test_different_paces_on_each_side_widen_the_uncertainty() -> None:
    """Which share of the gap's pass ran at which pace is unknown: half the difference."""
    felt = felt_downtime(precopy(src_period=0.010, dst_period=0.020))
    assert felt["pass_src_ms"] == pytest.approx(10.0, abs=0.01)
    assert felt["pass_dst_ms"] == pytest.approx(20.0, abs=0.01)
    assert felt["uncertainty_ms"] == pytest.approx(5.0, abs=0.01)
    assert abs(felt["felt_ms"] - 55.0) <= felt["uncertainty_ms"] + 0.01


def test_one_slow_pass_does_not_inflate_the_spread() -> None:
    s = precopy()
    src = list(s.src_b)
    src[-8:] = [t + 0.004 for t in src[-8:]]  # one interval 14 ms, the next 10 ms again
    felt = felt_downtime(Switchover(**{**vars(s), "src_b": src}))
    assert felt["spread_ms"] == pytest.approx(0.0, abs=0.01)
    assert felt["pass_src_ms"] == pytest.approx(10.0, abs=0.01)


def test_a_postcopy_destination_is_paced_once_all_ram_arrived() -> None:
    """While pages are pulled, the guest is slowed: those passes are felt, not a pace."""
    s = precopy()
    first = s.dst_b[0]
    slow = [first + 0.040 * i for i in range(4)]  # four slow passes under postcopy
    fast = passes(slow[-1] + 0.010, slow[-1] + 0.3, 0.010)
    completed = slow[-1] + 0.001
    felt = felt_downtime(
        Switchover(
            **{**vars(s), "dst_b": slow + fast, "dst_completed": completed,
               "src_completed": completed}
        )
    )  # fmt: skip
    assert felt["pass_dst_ms"] == pytest.approx(10.0, abs=0.01)
    assert felt["longest_gap_ms"] == pytest.approx(65.0, abs=0.01)
    assert "dst_tail_ms" not in felt  # the source completed long after the guest ran again


def test_a_destination_held_paused_through_postcopy_is_the_tests_pause() -> None:
    """Started running, it would have resumed at the switch, not at the end."""
    s = precopy(held=0.3)
    felt = felt_downtime(Switchover(**{**vars(s), "dst_postcopy": True}))
    assert "felt_ms" not in felt
    assert felt["not_measured"].startswith("the test held the destination paused through postcopy")
    assert felt_downtime(Switchover(**{**vars(precopy()), "dst_postcopy": True}))["felt_ms"]


def test_the_gap_is_told_apart_around_qemus_pause() -> None:
    felt = felt_downtime(precopy(into_pass=0.003, held=1.0))
    assert felt["before_stop_ms"] == pytest.approx(3.0, abs=0.01)
    assert felt["after_resume_ms"] == pytest.approx(7.0, abs=0.01)


def test_the_steady_state_before_the_migration_is_reported() -> None:
    steady = felt_downtime(precopy())["steady_pass_ms"]
    assert steady["n"] == 49 and steady["median"] == pytest.approx(10.0, abs=0.01)


def test_no_b_from_the_destination_is_not_a_number() -> None:
    s = precopy()
    felt = felt_downtime(Switchover(**{**vars(s), "dst_b": []}))
    assert felt["not_measured"] == "no 'B' from the destination within 3.0 s of its resume"
    assert "felt_ms" not in felt
    assert felt["stop_to_resume_ms"] == pytest.approx(55.0, abs=0.01)  # QEMU's side still told


def test_no_b_from_the_source_before_it_stopped_is_not_a_number() -> None:
    s = precopy()
    felt = felt_downtime(Switchover(**{**vars(s), "src_b": [t + 5 for t in s.src_b]}))
    assert felt["not_measured"] == "no 'B' from the source before it stopped"
    assert "felt_ms" not in felt


def test_a_destination_with_one_b_keeps_the_pace_the_source_had_before_migrating() -> None:
    s = precopy(dst_period=0.020)  # 20 ms passes on the destination, as 10 ms before migrating
    one = Switchover(**{**vars(s), "dst_b": s.dst_b[:1]})
    felt = felt_downtime(one)
    assert felt["pass_dst_from"] == "the source before it migrated"
    assert felt["pass_dst_ms"] == pytest.approx(10.0, abs=0.01)
    assert felt_downtime(s)["pass_dst_from"] == "the destination"


@pytest.mark.parametrize(
    "src_from, dst_count, counts",
    [(-1, 1, "1 from the source before it stopped (0 before it migrated), 1 from"),
     (-3, 1, "3 from the source before it stopped (0 before it migrated), 1 from"),
     (-1, 5, "1 from the source before it stopped (0 before it migrated), 5 from")],
)  # fmt: skip
def test_too_few_b_to_know_a_pass_is_not_a_number(
    src_from: int, dst_count: int, counts: str
) -> None:
    """Under a slow KVM the source prints one B before it migrates, the destination one."""
    s = precopy()
    few = Switchover(**{**vars(s), "src_b": s.src_b[src_from:], "dst_b": s.dst_b[:dst_count]})
    felt = felt_downtime(few)
    assert "felt_ms" not in felt
    assert felt["not_measured"].startswith("too few 'B's to tell how long a pass takes: " + counts)


# -- the switchover, from the events ----------------------------------------------


def ev(name: str, t: float, status: Optional[str] = None) -> Dict[str, Any]:
    seconds = int(T0 + t)
    event: Dict[str, Any] = {
        "event": name,
        "timestamp": {"seconds": seconds, "microseconds": round((T0 + t - seconds) * 1e6)},
    }
    if status is not None:
        event["data"] = {"status": status}
    return event


SRC_EVENTS = [ev("MIGRATION", 0.5, "setup"), ev("MIGRATION", 0.51, "active"), ev("STOP", 1.0),
              ev("MIGRATION", 1.051, "completed")]  # fmt: skip
DST_EVENTS = [ev("MIGRATION", 0.5, "active"), ev("MIGRATION", 1.055, "completed"),
              ev("RESUME", 2.855)]  # fmt: skip


def test_events_give_the_switchover() -> None:
    s = switchover_from_events(SRC_EVENTS, DST_EVENTS, [], [], T0 + 6)
    assert s.not_measurable == ""
    assert (s.src_migrating, s.src_stop, s.src_completed) == pytest.approx(
        (T0 + 0.5, T0 + 1.0, T0 + 1.051)
    )
    assert (s.dst_resume, s.dst_completed) == pytest.approx((T0 + 2.855, T0 + 1.055))


def test_a_migration_tried_again_is_measured_at_its_own_stop() -> None:
    """A cancelled first attempt (the source went on running) has no stop of its own."""
    first = [ev("MIGRATION", 0.1, "setup"), ev("MIGRATION", 0.2, "cancelled")]
    again = [ev("MIGRATION", 0.4, s) for s in ("setup",)] + SRC_EVENTS[1:]
    s = switchover_from_events(first + again, DST_EVENTS, [], [])
    assert s.src_stop == pytest.approx(T0 + 1.0)


@pytest.mark.parametrize(
    "src, dst, reason",
    [
        ([ev("STOP", 1.0)], DST_EVENTS, "the source never migrated"),
        (SRC_EVENTS[:2], DST_EVENTS, "the source never stopped for a switchover"),
        (SRC_EVENTS, DST_EVENTS[:2], "the guest never resumed on the destination"),
        ([ev("STOP", 0.2), *SRC_EVENTS], DST_EVENTS, "stopped before it migrated (not live)"),
        ([ev("RESUME", 0.1), *SRC_EVENTS], [ev("RESUME", 0.9)],
         "the guest never resumed on the destination"),
    ],
)  # fmt: skip
def test_events_without_a_switchover_say_why(
    src: Sequence[Dict[str, Any]], dst: Sequence[Dict[str, Any]], reason: str
) -> None:
    s = switchover_from_events(src, dst, passes(T0, T0 + 3, 0.01), passes(T0, T0 + 3, 0.01))
    assert reason in s.not_measurable
    felt = felt_downtime(s)
    assert list(felt) == ["not_measured"] and reason in felt["not_measured"]


# -- into migration.json -----------------------------------------------------------


class FakeConsole:
    def __init__(self, times: Sequence[float], closed_at: float) -> None:
        self.times, self.closed_at = list(times), closed_at

    def arrivals(self, byte: bytes) -> List[float]:
        assert byte == PASS_MARK
        return self.times


def fake_machine(name: str, events: Sequence[Dict[str, Any]], console: Any) -> Any:
    return SimpleNamespace(name=name, events=lambda: list(events), console=console)


def test_the_report_has_a_number_next_to_qemus_downtime() -> None:
    s = precopy(held=1.8)
    src = fake_machine("src", SRC_EVENTS, FakeConsole(s.src_b, T0 + 9))
    dst = fake_machine("dst", DST_EVENTS, FakeConsole(s.dst_b, T0 + 9))
    report = json.loads(json.dumps(felt_downtime_of(src, dst, {"downtime": 51})))
    assert isinstance(report["guest_felt_downtime_ms"], float)
    assert report["guest_felt_downtime_ms"] == report["guest_felt_downtime"]["felt_ms"]
    assert report["guest_felt_downtime"]["qemu_downtime_ms"] == 51


def test_an_unstamped_console_is_no_number() -> None:
    src = fake_machine("src", SRC_EVENTS, FakeConsole([], T0))
    report = felt_downtime_of(src, fake_machine("dst", DST_EVENTS, None), {"downtime": 51})
    assert "guest_felt_downtime_ms" not in report
    assert "console of dst was not timestamped" in report["guest_felt_downtime"]["not_measured"]


def test_the_summary_line_names_the_felt_pause_only_when_measured() -> None:
    final = {"status": "completed", "downtime": 51}
    felt = felt_downtime(precopy())
    assert "downtime 51 ms, guest felt 55 ± 0 ms" in summarize(final, felt=felt)
    assert "guest felt" not in summarize(final, felt={"not_measured": "no 'B'"})


# -- the plot ---------------------------------------------------------------------


def plotted(felt: Dict[str, Any]) -> ET.Element:
    """A completed precopy's plot, its clock the events', with ``felt`` in its report."""
    start = T0 + 0.5
    report = {
        "test": "1-tests/migration/precopy.py:Precopy.test_unix",
        "guest_felt_downtime": felt,
        "sides": {
            "src": {"start": start, "final": {"status": "completed", "downtime": 51},
                    "phases": [{"t": 0.0, "status": "setup"}, {"t": 0.01, "status": "active"},
                               {"t": 0.551, "status": "completed"}],
                    "samples": [{"t": 0.1 * i, "status": "active", "remaining": 1 << 20}
                                for i in range(6)]},
            "dst": {"start": start, "final": {}, "samples": [],
                    "phases": [{"t": 0.0, "status": "active"},
                               {"t": 0.555, "status": "completed"}]},
        },
    }  # fmt: skip
    root = ET.fromstring(render_timeline_svg(report))
    assert root.get("height") == str(HEIGHT)
    return root


def texts(root: ET.Element) -> List[str]:
    return ["".join(e.itertext()) for e in root.iter() if e.tag in (f"{SVG}text", f"{SVG}title")]


def test_the_plot_marks_the_felt_pause_on_the_guest_lane() -> None:
    root = plotted(felt_downtime(precopy(held=1.8)))
    words = texts(root)
    assert "guest" in words
    assert "guest felt 55 ± 0 ms · QEMU downtime 51 ms" in words
    assert any("held paused by the test for 1800 ms" in w for w in words)
    for element in root.iter():  # the hold runs past the axis: cut at its end
        for name in ("x", "x1", "x2"):
            if element.get(name) is not None:
                assert 0 <= float(element.get(name, "")) <= WIDTH


def test_no_guest_lane_without_a_measure() -> None:
    root = plotted({"not_measured": "no 'B' from the destination within 3.0 s of its resume"})
    assert "guest" not in texts(root)
    assert not any("guest felt" in w for w in texts(root))


# -- the console recorder ------------------------------------------------------------


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_stamps_are_when_written_however_late_read() -> None:
    before = open_fds()
    recorder = ConsoleRecorder("selftest")
    writer = socket.socket(fileno=os.dup(recorder.qemu_fd))
    recorder.start()
    sent = []
    with writer:
        for char in b"ABBB":
            sent.append(time.time())
            writer.send(bytes([char]))
            time.sleep(0.03)  # shorter than a read interval: stamps must still tell them apart
    recorder.close()
    stamps = recorder.arrivals(b"B")
    assert recorder.text() == "ABBB" and recorder.unstamped == 0
    assert stamps == pytest.approx(sent[1:], abs=0.005)
    assert recorder.closed_at is not None and recorder.closed_at >= stamps[-1]
    assert open_fds() == before, "the recorder left a descriptor open"
    with pytest.raises(ValueError, match="byte"):
        recorder.arrivals(b"AB")


def test_a_real_guest_b_is_stamped_as_qemu_writes_it(x86_binary: str, workdir: Path) -> None:
    profile = get_profile("x86_64")
    guest = workdir / "guest.img"
    shutil.copyfile(profile.guest_file(), guest)
    with QEMUMachine(x86_binary, ["-machine", "none"], name="warm", workdir=workdir) as warm:
        warm.launch()  # the QMP client keeps an event loop (three descriptors) once used
    before = open_fds()
    started = time.time()
    with QEMUMachine(x86_binary, profile.qemu_args("tcg", guest), name="vm", workdir=workdir) as vm:
        vm.launch()
        console = vm.console
        assert console is not None
        wait_for(
            lambda: (len(console.arrivals(b"B")) >= 5, console.text()[-20:]),
            what="five B's on the console",
            timeout=30,
        )
    stamps = console.arrivals(b"B")
    assert started < stamps[0] and stamps == sorted(stamps) and stamps[-1] <= time.time()
    # QEMU writes the same bytes into the console file, as its log.
    assert vm.console_text() == console.text()[: len(vm.console_text())]
    assert vm.console_text().startswith("AB")
    assert open_fds() == before, "a console socket was left open"


# -- a real migration ------------------------------------------------------------------


def test_a_real_precopy_is_measured(tcg_params: SuiteParams, workdir: Path) -> None:
    """A live precopy to a destination the test holds paused: measured, the hold taken out."""
    with MigrationPair(tcg_params, workdir) as pair:
        pair.start()
        pair.allow_convergence()
        pair.migrate("unix")
        final = pair.wait_for_completion()
        verify_migration(pair)  # resumes the destination and waits for its B
    report = felt_downtime_of(pair.src.machine, pair.dst.machine, final)
    felt = report["guest_felt_downtime"]
    assert report["guest_felt_downtime_ms"] == felt["felt_ms"], felt.get("not_measured")
    assert felt["last_src_b_ms"] <= 0 < felt["stop_to_resume_ms"] <= felt["dst_resume_ms"]
    assert felt["dst_resume_ms"] < felt["first_dst_b_ms"]
    assert felt["held_by_test_ms"] > 0 and felt["qemu_downtime_ms"] == final["downtime"]


def test_a_migration_that_is_not_live_is_not_measured(
    tcg_params: SuiteParams, workdir: Path
) -> None:
    with MigrationPair(tcg_params, workdir) as pair:
        pair.start()
        pair.src.stop()
        pair.allow_convergence()
        pair.migrate("unix")
        final = pair.wait_for_completion()
        verify_migration(pair)
    report = felt_downtime_of(pair.src.machine, pair.dst.machine, final)
    assert "guest_felt_downtime_ms" not in report
    assert "not live" in report["guest_felt_downtime"]["not_measured"]


# -- the comparison over jobs ----------------------------------------------------------


def metrics(
    qemu: int,
    felt: Optional[Dict[str, Any]],
    *,
    postcopy: bool = False,
    dst_loads_after: bool = False,
    total: int = 600,
) -> Dict[str, Any]:
    """A ``migration.json`` reduced to what the comparison reads."""
    src_phases = [{"t": 0.0, "status": "active"}, {"t": 0.5, "status": "completed"}]
    if postcopy:
        src_phases.insert(1, {"t": 0.3, "status": "postcopy-active"})
    dst_active = 0.6 if dst_loads_after else 0.0
    record: Dict[str, Any] = {
        "arch": "x86_64",
        "accel": "tcg",
        "qemu": {"src": "7.2.22", "dst": "7.2.22"},
        "sides": {
            "src": {"start": T0, "phases": src_phases,
                    "final": {"downtime": qemu, "total-time": total}},
            "dst": {"start": T0, "phases": [{"t": dst_active, "status": "active"}], "final": {}},
        },
    }  # fmt: skip
    if felt is not None:
        record["guest_felt_downtime"] = felt
    return record


FELT = {"felt_ms": 60.0, "uncertainty_ms": 5.0, "stop_to_resume_ms": 52.0, "src_completed_ms": 50.0}


def test_the_kind_of_migration_comes_from_the_data() -> None:
    assert kind_of(metrics(50, FELT)) == "precopy"
    assert kind_of(metrics(50, FELT, dst_loads_after=True)) == "precopy, stream loaded after"
    assert kind_of(metrics(50, FELT, postcopy=True)) == "postcopy"


def test_an_impossible_qemu_downtime_is_flagged_and_left_out() -> None:
    uptime = row_of("t", "v", metrics(33_713_664, FELT, postcopy=True))
    assert uptime.flag == "QEMU's downtime is longer than the whole migration"
    whole = row_of("t", "v", metrics(50, {**FELT, "stop_to_resume_ms": 2.0}, postcopy=True))
    assert whole.flag == "QEMU's downtime is the stop to the end of postcopy"
    right = row_of("t", "v", metrics(2, {**FELT, "stop_to_resume_ms": 2.0}, postcopy=True))
    assert right.flag == ""
    summary = compare([uptime, whole, right])["postcopy"]
    assert (summary["runs"], summary["measured"], summary["flagged"]) == (3, 1, 2)


def test_the_comparison_counts_what_felt_more_beyond_its_uncertainty() -> None:
    rows = [
        row_of("more", "v", metrics(50, FELT)),  # 60 ± 5 against 50
        row_of("same", "v", metrics(57, FELT)),  # within 5
        row_of("less", "v", metrics(70, FELT)),
        row_of("none", "v", metrics(50, {"not_measured": "no 'B'"})),
    ]
    assert rows[-1].not_measured == "no 'B'" and rows[-1].felt is None
    summary = compare(rows)["precopy"]
    assert summary["measured"] == 3 and summary["not_measured"] == 1
    assert (summary["felt_more_beyond_uncertainty"], summary["felt_less_beyond_uncertainty"]) == (
        1,
        1,
    )
    assert summary["felt_minus_qemu_median"] == 3.0
    assert summary["events_minus_qemu_median"] == -5.0
    assert "felt - QEMU: median 3.0 ms" in "\n".join(comparison_text(compare(rows)))


def test_not_a_job_directory_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert downtime_main([str(tmp_path)]) == 2
    assert "not an Avocado job results directory" in capsys.readouterr().err
