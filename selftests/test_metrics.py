"""A test's migration metrics, from QEMU's answers: what is kept, when, and how it is summed up.

Pure: a hand-moved clock stands in for time, and the answers are shaped like
QEMU 7.2's ``query-migrate`` and MIGRATION events.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List

from migtest.metrics import (
    SAMPLE_INTERVAL,
    MigrationRecorder,
    multifd_share,
    read_settings,
    settings_from_trace,
    summarize,
)

#: A wall-clock time, as QMP timestamps are: large enough that float
#: rounding shows if the code loses precision subtracting it.
START = 1_700_000_000.0
STEP = SAMPLE_INTERVAL


class Clock:
    """A wall clock that moves only when the test says so."""

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now

    def at(self, steps: float) -> Clock:
        """Move to ``steps`` sample intervals after :data:`START`."""
        self.now = START + steps * STEP
        return self


def feed(answers: List[Any]) -> MigrationRecorder:
    """A recorder fed ``(steps, answer)`` pairs, each at its time."""
    clock = Clock()
    recorder = MigrationRecorder(clock)
    for steps, info in answers:
        clock.at(steps)
        recorder.record(info)
    return recorder


def status(name: str) -> Dict[str, Any]:
    return {"status": name}


def event(name: str, seconds: int, microseconds: int) -> Dict[str, Any]:
    """A MIGRATION event as the machine keeps it."""
    return {
        "event": "MIGRATION",
        "data": {"status": name},
        "timestamp": {"seconds": seconds, "microseconds": microseconds},
    }


#: QEMU 7.2's answer on a source mid-precopy: some members are plotted,
#: others (sizes, most page counts, setup-time) must stay out of the samples.
ACTIVE = {
    "status": "active",
    "setup-time": 12,
    "total-time": 850,
    "expected-downtime": 300,
    "ram": {
        "transferred": 123456789,
        "remaining": 2048000,
        "total": 157351936,
        "duplicate": 30000,
        "skipped": 0,
        "normal": 30000,
        "normal-bytes": 122880000,
        "dirty-pages-rate": 1200,
        "mbps": 1001.5,
        "dirty-sync-count": 2,
        "postcopy-requests": 0,
        "page-size": 4096,
        "multifd-bytes": 0,
        "pages-per-second": 30000,
        "precopy-bytes": 123456789,
        "downtime-bytes": 0,
        "postcopy-bytes": 0,
        "dirty-sync-missed-zero-copy": 0,
    },
}

#: QEMU 7.2's final answer on a source after a precopy migration.
COMPLETED = {
    "status": "completed",
    "setup-time": 12,
    "downtime": 45,
    "total-time": 1234,
    "ram": {
        "transferred": 157286400,
        "remaining": 0,
        "total": 157351936,
        "mbps": 987.4,
        "dirty-sync-count": 3,
        "postcopy-requests": 0,
    },
}


# -- sampling ----------------------------------------------------------------


def test_a_sample_keeps_the_plotted_numbers_flat() -> None:
    recorder = feed([(0, ACTIVE)])
    assert recorder.samples == [
        {
            "t": 0.0,
            "status": "active",
            "expected-downtime": 300,
            "total-time": 850,
            "remaining": 2048000,
            "transferred": 123456789,
            "mbps": 1001.5,
            "dirty-pages-rate": 1200,
            "dirty-sync-count": 2,
            "precopy-bytes": 123456789,
            "postcopy-bytes": 0,
            "postcopy-requests": 0,
            "pages-per-second": 30000,
            "multifd-bytes": 0,
            "normal-bytes": 122880000,
            "duplicate": 30000,
        }
    ]


def test_an_answer_without_ram_is_kept_with_what_it_has() -> None:
    """QEMU leaves ``ram`` out during setup: the sample has no invented zeros."""
    recorder = feed([(0, {"status": "setup", "total-time": 3})])
    assert recorder.samples == [{"t": 0.0, "status": "setup", "total-time": 3}]


def test_no_migration_is_not_recorded_and_does_not_start_the_clock() -> None:
    recorder = feed([(0, status("none")), (1, {}), (7, status("setup"))])
    assert recorder.samples == [{"t": 0.0, "status": "setup"}]
    assert recorder.phases == [{"t": 0.0, "status": "setup"}]
    assert recorder.as_dict()["start"] == START + 7 * STEP


def test_nothing_recorded_is_an_empty_timeline() -> None:
    assert MigrationRecorder(Clock()).as_dict() == {
        "start": None,
        "phases": [],
        "samples": [],
        "final": {},
    }


def test_samples_are_kept_at_most_once_per_interval() -> None:
    """Counted from the last sample kept, not from the last answer.

    Answers every 0.4 interval: counted from the last answer, none after the
    first would be kept; with no limit, all would.
    """
    answers = [(0.4 * k, ACTIVE) for k in range(8)]  # 0, 0.4, ..., 2.8 intervals
    kept = [sample["t"] for sample in feed(answers).samples]
    assert kept == [0.0, round(1.2 * STEP, 4), round(2.4 * STEP, 4)]


def test_a_status_change_is_kept_at_once_and_starts_the_interval_again() -> None:
    recorder = feed(
        [
            (0, status("setup")),
            (0.2, status("active")),  # a change: kept within the interval
            (0.9, status("active")),  # 0.7 after the change: too soon
            (1.5, status("active")),  # 1.3 after the change: kept
            (1.6, status("completed")),  # a change: kept
        ]
    )
    assert [(s["t"], s["status"]) for s in recorder.samples] == [
        (0.0, "setup"),
        (round(0.2 * STEP, 4), "active"),
        (round(1.5 * STEP, 4), "active"),
        (round(1.6 * STEP, 4), "completed"),
    ]
    assert recorder.phases == [
        {"t": 0.0, "status": "setup"},
        {"t": round(0.2 * STEP, 4), "status": "active"},
        {"t": round(1.6 * STEP, 4), "status": "completed"},
    ]


def test_a_status_seen_again_is_a_new_phase() -> None:
    """Postcopy recovery goes back to ``postcopy-active``: both stretches show."""
    names = ["postcopy-active", "postcopy-paused", "postcopy-recover", "postcopy-active"]
    recorder = feed([(k, status(name)) for k, name in enumerate(names)])
    assert [phase["status"] for phase in recorder.phases] == names


# -- phases from events --------------------------------------------------------


def test_events_time_the_phases_even_those_polling_missed() -> None:
    recorder = feed([(0, status("setup")), (2, ACTIVE), (4, status("completed"))])
    polled = list(recorder.phases)
    events = [
        event("setup", int(START) - 1, 998000),  # before the first poll
        event("active", int(START), 10000),
        event("device", int(START), 20500),  # too short for polling to see
        event("completed", int(START), 30000),
    ]
    timeline = recorder.as_dict(events)
    assert timeline["phases"] == [
        {"t": -0.002, "status": "setup"},
        {"t": 0.01, "status": "active"},
        {"t": 0.0205, "status": "device"},
        {"t": 0.03, "status": "completed"},
    ]
    assert timeline["samples"] == recorder.samples
    assert recorder.phases == polled, "the polled phases were overwritten"
    assert recorder.as_dict()["phases"] == polled


def test_events_need_a_poll_to_be_timed_against() -> None:
    """Times are relative to the first poll: with none, there is no timeline."""
    timeline = MigrationRecorder(Clock()).as_dict([event("setup", int(START), 0)])
    assert timeline["start"] is None and timeline["phases"] == []


# -- final stats -----------------------------------------------------------------


def test_final_stats_are_reported_as_read_and_sampling_leaves_them_alone() -> None:
    recorder = feed([(0, ACTIVE)])
    recorder.final = COMPLETED
    recorder.record(COMPLETED)
    recorder.record(status("none"))
    assert recorder.final is COMPLETED
    timeline = recorder.as_dict([event("completed", int(START), 1000)])
    assert timeline["final"] == COMPLETED
    # It goes to a JSON file as it is.
    assert json.loads(json.dumps(timeline)) == timeline


# -- the summary line ----------------------------------------------------------


def test_summary_of_no_migration() -> None:
    assert summarize({}) == "no migration completed"


def test_summary_of_a_completed_precopy() -> None:
    assert summarize(COMPLETED) == (
        "completed, total 1234 ms, downtime 45 ms, setup 12 ms, "
        "150.0 MiB sent at 987 Mbit/s, 3 dirty syncs"
    )


def test_summary_names_what_only_some_migrations_have() -> None:
    final = {
        **COMPLETED,
        "ram": {**COMPLETED["ram"], "postcopy-requests": 17},
        "postcopy-blocktime": 42,
        "xbzrle-cache": {"cache-size": 67108864, "pages": 1000},
        "cpu-throttle-percentage": 20,
    }
    assert summarize(final) == (
        "completed, total 1234 ms, downtime 45 ms, setup 12 ms, "
        "150.0 MiB sent at 987 Mbit/s, 3 dirty syncs, 17 postcopy requests, "
        "blocktime 42 ms, xbzrle 1000 pages, throttle 20%"
    )


def test_zero_figures_are_figures() -> None:
    """QEMU reports a migration under a millisecond as total-time 0 (10.0 on
    s390x): a zero is a measurement, shown as such and never as unknown."""
    final = {
        "status": "completed",
        "total-time": 0,
        "downtime": 0,
        "setup-time": 0,
        "cpu-throttle-percentage": 0,
        "ram": {"transferred": 0, "mbps": 0, "dirty-sync-count": 0, "postcopy-requests": 0},
    }
    assert summarize(final) == (
        "completed, total 0 ms, downtime 0 ms, setup 0 ms, "
        "0.0 MiB sent at 0 Mbit/s, 0 dirty syncs, throttle 0%"
    )


def test_missing_figures_are_unknown_not_zero() -> None:
    """An answer without ``ram`` (a failed migration's, a destination's) says
    nothing about what was sent: the line must not claim nothing was."""
    assert summarize({"status": "failed", "error-desc": "Unable to write"}) == (
        "failed, total ? ms, downtime ? ms, setup ? ms, ? sent at ? Mbit/s, ? dirty syncs"
    )
    assert summarize({"ram": {"transferred": 1 << 20}}) == (
        "?, total ? ms, downtime ? ms, setup ? ms, 1.0 MiB sent at ? Mbit/s, ? dirty syncs"
    )


# -- settings, from the QMP trace ----------------------------------------------


def trace(side: str, message: str) -> str:
    """A record of the QMP trace, as the test's handler writes it."""
    return f"2026-12-01 20:30:29,836 migtest.qmp.{side} {message}\n"


PARAMETERS = {"multifd-channels": 4, "multifd-compression": "zstd", "multifd-zstd-level": 2,
              "tls-creds": "", "announce-step": 100, "block-bitmap-mapping": []}  # fmt: skip
CAPABILITIES = [{"capability": "multifd", "state": True}, {"capability": "xbzrle", "state": False},
                {"capability": "events", "state": True}]  # fmt: skip


def test_settings_are_the_last_read_back_before_the_first_migrate() -> None:
    lines = [
        trace("src", "-> query-migrate-parameters {}"),
        trace("src", f"<- {dict(PARAMETERS, **{'multifd-channels': 2})}"),
        trace("src", "-> query-migrate-capabilities {}"),
        trace("dst", "-> query-migrate-parameters {}"),  # the other side, in between
        trace("dst", "<- {'multifd-channels': 16}"),
        trace("src", f"<- {CAPABILITIES}"),
        trace("src", "-> migrate-set-parameters {'multifd-channels': 4}"),
        trace("src", "<- {}"),
        trace("src", "-> query-migrate-parameters {}"),
        trace("src", f"<- {PARAMETERS}"),
        trace("src", "-> migrate {'uri': 'tcp:127.0.0.1:4444'}"),
        trace("src", "<- {}"),
        trace("src", "-> query-migrate-parameters {}"),  # after the start: not the start's
        trace("src", "<- {'multifd-channels': 8}"),
    ]
    assert settings_from_trace(lines) == {
        # Only the parameters that say what was exercised are kept.
        "parameters": {
            "multifd-channels": 4,
            "multifd-compression": "zstd",
            "multifd-zstd-level": 2,
            "tls-creds": "",
        },
        "capabilities": ["events", "multifd"],
    }
    assert settings_from_trace(lines, "dst") == {"parameters": {"multifd-channels": 16}}


def test_an_unanswered_or_cut_record_leaves_what_was_read() -> None:
    lines = [
        trace("src", "-> query-migrate-parameters {}"),
        trace("src", "<- {'multifd-channels': 4}"),
        trace("src", "-> query-migrate-parameters {}"),  # answered with an error: no record
        trace("src", "-> query-status {}"),
        trace("src", "<- {'status': 'running'}"),  # not an answer to a settings query
        trace("src", "-> query-migrate-parameters {}"),
        trace("src", "<- {'multifd-channels': 8, 'tls-cr"),  # cut short
        "not a record\n",
    ]
    assert settings_from_trace(lines) == {"parameters": {"multifd-channels": 4}}
    assert settings_from_trace([]) == {}


def test_a_missing_trace_has_no_settings(tmp_path: Path) -> None:
    assert read_settings(tmp_path / "qmp.log") == {}
    (tmp_path / "qmp.log").write_text("".join([
        trace("src", "-> query-migrate-parameters {}"), trace("src", "<- {'tls-creds': 'tls0'}")
    ]))  # fmt: skip
    assert read_settings(tmp_path / "qmp.log") == {"parameters": {"tls-creds": "tls0"}}


# -- the figures of the features used ------------------------------------------

MULTIFD = dict(COMPLETED, ram=dict(COMPLETED["ram"], **{"multifd-bytes": 150994944,
                                                       "duplicate": 13073}))  # fmt: skip


def test_summary_names_the_features_the_data_shows() -> None:
    settings = {"parameters": PARAMETERS, "capabilities": ["multifd"]}
    samples = [{"t": 0.0}, {"t": 0.1, "cpu-throttle-percentage": 5},
               {"t": 0.2, "cpu-throttle-percentage": 55}]  # fmt: skip
    line = summarize(MULTIFD, samples=samples, settings=settings)
    assert line.endswith(
        ", throttle peak 55%, multifd 96% of bytes over 4 channels, zstd level 2, 13073 zero pages"
    )


def test_multifd_that_sent_nothing_is_not_claimed() -> None:
    """The multifd capability and channels set are no proof: the bytes are."""
    settings = {"parameters": dict(PARAMETERS, **{"tls-creds": "tls0"}),
                "capabilities": ["multifd"]}  # fmt: skip
    line = summarize(COMPLETED, settings=settings)
    assert "multifd" not in line and "zstd" not in line
    assert line.endswith(", over TLS")
    assert multifd_share({"multifd-bytes": 0, "transferred": 10}) is None
    assert multifd_share({"transferred": 10}) is None
    assert multifd_share({"multifd-bytes": 12, "transferred": 10}) == 1.0
