"""QEMU's own numbers about a migration, kept over time.

Every ``query-migrate`` the suite makes while it waits passes through a
:class:`MigrationRecorder`, which keeps a sample at most every
:data:`SAMPLE_INTERVAL` seconds and at every status change.  So the
timeline costs no extra QMP traffic, and a test gets its metrics without
asking for them.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

#: Seconds between two kept samples (status changes are always kept).
SAMPLE_INTERVAL = 0.05

#: Numbers kept from ``query-migrate``'s ``ram`` member in each sample.
RAM_FIELDS = (
    "remaining", "transferred", "mbps", "dirty-pages-rate", "dirty-sync-count",
    "precopy-bytes", "postcopy-bytes", "postcopy-requests", "pages-per-second",
)  # fmt: skip
#: Numbers kept from the top level of ``query-migrate``.
TOP_FIELDS = ("expected-downtime", "cpu-throttle-percentage", "total-time")


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
                {"t": round(_event_time(e) - start, 4), "status": e["data"]["status"]}
                for e in events
            ]
        return {
            "start": self._start,
            "phases": phases,
            "samples": self.samples,
            "final": self.final,
        }


def _event_time(event: Mapping[str, Any]) -> float:
    stamp = event["timestamp"]
    return float(stamp["seconds"]) + float(stamp["microseconds"]) / 1e6


def _mib(value: float) -> str:
    return f"{value / (1 << 20):.1f} MiB"


def summarize(final: Mapping[str, Any]) -> str:
    """One line of the numbers people look at first."""
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
    return ", ".join(parts)
