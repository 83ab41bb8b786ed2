"""QEMU's own numbers about a migration, kept over time.

Every ``query-migrate`` the suite makes while it waits passes through a
:class:`MigrationRecorder`, which keeps a sample at most every
:data:`SAMPLE_INTERVAL` seconds and at every status change.  So the
timeline costs no extra QMP traffic, and a test gets its metrics without
asking for them.
"""

from __future__ import annotations

import ast
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence

#: Seconds between two kept samples (status changes are always kept).
SAMPLE_INTERVAL = 0.05

#: Numbers kept from ``query-migrate``'s ``ram`` member in each sample.
RAM_FIELDS = (
    "remaining", "transferred", "mbps", "dirty-pages-rate", "dirty-sync-count",
    "precopy-bytes", "postcopy-bytes", "postcopy-requests", "pages-per-second",
    # What the feature panels draw: the bytes all multifd channels sent
    # together (QEMU counts no channel apart), and the zero pages found.
    "multifd-bytes", "normal-bytes", "duplicate",
)  # fmt: skip
#: Numbers kept from the top level of ``query-migrate`` (the blocktime is
#: a postcopy destination's, with the postcopy-blocktime capability).
TOP_FIELDS = ("expected-downtime", "cpu-throttle-percentage", "total-time", "postcopy-blocktime")

#: The migration parameters ``migration.json`` keeps: those that say what
#: a test exercised (the feature panels and the summary name them).
SETTINGS_PARAMETERS = (
    "multifd-channels", "multifd-compression", "multifd-zlib-level", "multifd-zstd-level",
    "multifd-qatzip-level", "zero-page-detection", "tls-creds", "tls-hostname",
    "cpu-throttle-initial", "cpu-throttle-increment", "max-cpu-throttle", "max-bandwidth",
    "downtime-limit", "max-postcopy-bandwidth", "xbzrle-cache-size",
)  # fmt: skip


class MigrationRecorder:
    """The timeline of one side's migration, from its ``query-migrate`` answers.

    :param clock: wall-clock seconds, as QMP event timestamps are;
        replaceable for tests.
    """

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._start: Optional[float] = None
        self._last_kept = float("-inf")
        self._last_status: Optional[str] = None
        self.samples: List[Dict[str, Any]] = []
        #: ``{"t": seconds, "status": status}`` at each status change.
        self.phases: List[Dict[str, Any]] = []
        #: The last answer after the migration ended, read again to be exact.
        self.final: Dict[str, Any] = {}

    def record(self, info: Mapping[str, Any]) -> None:
        """Take note of one ``query-migrate`` answer."""
        status = info.get("status", "none")
        if status == "none":
            return
        now = self._clock()
        if self._start is None:
            self._start = now
        changed = status != self._last_status
        if not changed and now - self._last_kept < SAMPLE_INTERVAL:
            return
        t = round(now - self._start, 4)
        sample: Dict[str, Any] = {"t": t, "status": status}
        sample.update({k: info[k] for k in TOP_FIELDS if k in info})
        ram = info.get("ram", {})
        sample.update({k: ram[k] for k in RAM_FIELDS if k in ram})
        self.samples.append(sample)
        self._last_kept = now
        if changed:
            self.phases.append({"t": t, "status": status})
            self._last_status = status

    def as_dict(self, events: Sequence[Mapping[str, Any]] = ()) -> Dict[str, Any]:
        """Everything recorded, ready for JSON.

        :param events: the side's MIGRATION events; when given, they time
            the phases exactly (polling can miss a short status).
        """
        phases = self.phases
        if events and self._start is not None:
            start = self._start
            phases = [
                {"t": round(event_time(e) - start, 4), "status": e["data"]["status"]}
                for e in events
            ]
        return {
            "start": self._start,
            "phases": phases,
            "samples": self.samples,
            "final": self.final,
        }


def event_time(event: Mapping[str, Any]) -> float:
    """When QEMU sent a QMP event: wall-clock seconds."""
    stamp = event["timestamp"]
    return float(stamp["seconds"]) + float(stamp["microseconds"]) / 1e6


def read_settings(trace: Path, side: str = "src") -> Dict[str, Any]:
    """What ``side`` was set to migrate with, read back from the test's QMP trace.

    See :func:`settings_from_trace`; a trace that cannot be read gives ``{}``.
    """
    try:
        with trace.open(encoding="utf-8", errors="replace") as lines:
            return settings_from_trace(lines, side)
    except OSError:
        return {}


def settings_from_trace(lines: Iterable[str], side: str = "src") -> Dict[str, Any]:
    """The parameters and enabled capabilities ``side`` had at its first ``migrate``.

    The suite reads them back after setting them (``query-migrate-parameters``,
    ``query-migrate-capabilities``), so the last answers before the
    ``migrate`` command are what the migration ran with; they are taken
    from the trace rather than asked for again, as the QEMUs are gone by
    the time the metrics are saved.  Only :data:`SETTINGS_PARAMETERS` are
    kept.

    :param lines: the QMP trace, records as :data:`migtest.test.TRACE_FORMAT`
        writes them (``<date> <time> migtest.qmp.src -> migrate {...}``).
    :return: ``{"parameters": {...}, "capabilities": [enabled, ...]}``, each
        member only when its query was seen; ``{}`` when neither was.
    """
    # Imported here: the report reads metrics without loading the QMP client.
    from .qmp import ANSWER_PREFIX, COMMAND_PREFIX, TRACE_LOGGER

    logger = f"{TRACE_LOGGER}.{side}"
    wanted = ("query-migrate-parameters", "query-migrate-capabilities")
    settings: Dict[str, Any] = {}
    asked = ""
    for line in lines:
        fields = line.rstrip("\n").split(" ", 3)
        if len(fields) < 4 or fields[2] != logger:
            continue
        message = fields[3]
        if message.startswith(COMMAND_PREFIX):
            command = message[len(COMMAND_PREFIX) :].split(" ", 1)[0]
            if command == "migrate":
                break
            asked = command if command in wanted else ""
        elif asked and message.startswith(ANSWER_PREFIX):
            try:
                answer = ast.literal_eval(message[len(ANSWER_PREFIX) :])
            except (ValueError, SyntaxError):
                continue  # a record cut short: the previous answer stands
            if asked == wanted[0] and isinstance(answer, dict):
                settings["parameters"] = {k: answer[k] for k in SETTINGS_PARAMETERS if k in answer}
            elif isinstance(answer, list):
                settings["capabilities"] = sorted(
                    str(c.get("capability")) for c in answer if c.get("state")
                )
            asked = ""
    return settings


def _mib(value: float) -> str:
    return f"{value / (1 << 20):.1f} MiB"


def summarize(
    final: Mapping[str, Any],
    *,
    samples: Sequence[Mapping[str, Any]] = (),
    settings: Optional[Mapping[str, Any]] = None,
    felt: Optional[Mapping[str, Any]] = None,
) -> str:
    """One line of the numbers people look at first.

    :param samples: the source's samples, for the throttle's peak.
    :param settings: what :func:`settings_from_trace` found, for what the
        test exercised (multifd channels and compression, TLS).
    :param felt: what :func:`migtest.downtime.felt_downtime` found: the
        pause the guest felt goes next to QEMU's downtime when measured.
    """
    if not final:
        return "no migration completed"
    ram = final.get("ram", {})
    # A figure QEMU left out is unknown, not zero: an answer without 'ram'
    # (a failed migration's) must not read as nothing sent.
    sent = _mib(ram["transferred"]) if "transferred" in ram else "?"
    mbps = f"{ram['mbps']:.0f}" if "mbps" in ram else "?"
    parts = [
        f"{final.get('status', '?')}",
        f"total {final.get('total-time', '?')} ms",
        f"downtime {final.get('downtime', '?')} ms",
        *([_felt_part(felt)] if felt and "felt_ms" in felt else []),
        f"setup {final.get('setup-time', '?')} ms",
        f"{sent} sent at {mbps} Mbit/s",
        f"{ram.get('dirty-sync-count', '?')} dirty syncs",
    ]
    if ram.get("postcopy-requests"):
        parts.append(f"{ram['postcopy-requests']} postcopy requests")
    if "postcopy-blocktime" in final:
        parts.append(f"blocktime {final['postcopy-blocktime']} ms")
    if "xbzrle-cache" in final:
        parts.append(f"xbzrle {final['xbzrle-cache'].get('pages', 0)} pages")
    if "cpu-throttle-percentage" in final:
        parts.append(f"throttle {final['cpu-throttle-percentage']}%")
    peak = max((s["cpu-throttle-percentage"] for s in samples
                if "cpu-throttle-percentage" in s), default=None)  # fmt: skip
    if peak is not None:
        parts.append(f"throttle peak {peak}%")
    return ", ".join(parts + _feature_parts(ram, settings or {}))


def _felt_part(felt: Mapping[str, Any]) -> str:
    return f"guest felt {felt['felt_ms']:.0f} ± {felt.get('uncertainty_ms', 0):.0f} ms"


def multifd_share(ram: Mapping[str, Any]) -> Optional[float]:
    """The part of all bytes sent that went through the multifd channels.

    ``None`` when QEMU gave no figure, or multifd sent nothing: a share of
    zero is no multifd at all, not a feature to show.
    """
    multifd, total = ram.get("multifd-bytes") or 0, ram.get("transferred") or 0
    return min(multifd / total, 1.0) if multifd > 0 and total > 0 else None


def _feature_parts(ram: Mapping[str, Any], settings: Mapping[str, Any]) -> List[str]:
    """The figures of the features a migration used, as the data shows them."""
    parameters = settings.get("parameters") or {}
    parts = []
    share = multifd_share(ram)
    if share is not None:
        channels = parameters.get("multifd-channels")
        over = f" over {channels} channels" if channels else ""
        share_text = ">99%" if 0.99 < share < 1 else f"{share:.0%}"  # never rounded up to all
        parts.append(f"multifd {share_text} of bytes{over}")
        method = parameters.get("multifd-compression")
        if method and method != "none":
            level = parameters.get(f"multifd-{method}-level")
            parts.append(f"{method}" + (f" level {level}" if level is not None else ""))
        if "duplicate" in ram:
            parts.append(f"{ram['duplicate']} zero pages")
    if parameters.get("tls-creds"):
        parts.append("over TLS")
    return parts
