"""One test's migration as an SVG picture, drawn from its ``migration.json``.

The SVG is written by hand: the suite needs no plotting library, and the
result is one self-contained file any browser opens, that a job report can
link to.  It shows what decides whether a precopy converges: the source's
remaining RAM against the transfer rate and the rate at which the guest
dirties memory.  The dirty rate is drawn in Mbit/s (pages/s times the page
size), on the same axis as the throughput, because migration converges only
when the first stays below the second.  Above the plot, one lane per side
shows its statuses over time, the sides aligned on their wall clocks, so a
destination that paused or failed on its own is visible too.  Under them,
the guest's own lane: a tick for each ``B`` it printed (one per pass over
its range) on the source and then on the destination, the gap between them
across the switchover, the pause the guest felt
(:func:`migtest.metrics.felt_downtime`), and QEMU's downtime beside it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple
from xml.sax.saxutils import escape

from ..arch import MiB
from .panels import feature_panels, panel_data
from .svg import (
    CHAR_W,
    GRID_INK,
    LEFT,
    MUTED_INK,
    RIGHT,
    TEXT_INK,
    WIDTH,
    Point,
    Scale,
    fmt_tick,
    nice_ticks,
    points_attr,
    svg_text,
    time_ticks,
)

#: The size the picture is drawn for, in pixels (feature panels add height).
HEIGHT = 360
#: QEMU's target page size when ``migration.json`` does not say.
DEFAULT_PAGE_SIZE = 4096
#: The shortest time axis, so one sample still gets a readable scale.
MIN_SPAN = 0.1

#: Per migration status: the fill of its lane segment, the ink of its
#: marks, and its label.
PHASES: Dict[str, Tuple[str, str, str]] = {
    "setup": ("#dde2e8", "#7d8896", "setup"),
    "active": ("#cde0fa", "#3a78d0", "active"),
    "pre-switchover": ("#d3eef0", "#2f8f99", "pre-switchover"),
    "device": ("#d9eed3", "#4d8f3b", "device"),
    "postcopy-active": ("#dccff4", "#7453c4", "postcopy"),
    "postcopy-paused": ("#fbd3a2", "#d27a1c", "paused"),
    "postcopy-recover": ("#f6e48e", "#a88a0c", "recover"),
    "completed": ("#c5eacc", "#2b9a4b", "completed"),
    "failed": ("#f6baba", "#cc3333", "failed"),
    "cancelling": ("#e4e4e4", "#808080", "cancelling"),
    "cancelled": ("#e4e4e4", "#808080", "cancelled"),
}
_OTHER_PHASE = ("#ececec", "#888888")

REMAINING_INK, THROUGHPUT_INK, DIRTY_INK = "#1f5fc0", "#e07800", "#9b3fcf"
#: The guest lane: its B's on each side, the felt pause, the time the
#: test held the destination paused, and QEMU's downtime.
SRC_B_INK, DST_B_INK, FELT_INK, HELD_INK, QEMU_DOWNTIME_INK = (
    "#6e7781",
    "#2b9a4b",
    "#cc3333",
    "#b0b7bf",
    "#24292f",
)

_TITLE_Y, _LANE_TOP, _LANE_H, _LANE_GAP = 22, 36, 14, 3
_LEFT, _RIGHT, _BOTTOM = LEFT, RIGHT, HEIGHT - 66


@dataclass(frozen=True)
class _Phase:
    side: str
    status: str
    start: float
    end: float


@dataclass(frozen=True)
class _Felt:
    """The guest lane, on the timeline's clock (seconds)."""

    src_b: List[float]
    dst_b: List[float]
    last_src_b: float
    first_dst_b: float
    #: The destination's resume, and when it would have resumed had the
    #: test not held it paused (the same when it did not).
    resume: float
    resumed: float
    #: QEMU's downtime, drawn from the source's STOP: QEMU starts counting
    #: just before it stops the guest.
    downtime: Optional[Tuple[float, float]]
    label: str


@dataclass(frozen=True)
class _Timeline:
    """The report reduced to what is drawn, in seconds since the first event."""

    lanes: Dict[str, List[_Phase]]
    remaining: List[Point]
    throughput: List[Point]
    dirty: List[Point]
    span: float
    page_size: int
    #: Where the source's samples start on the common clock.
    shift: float = 0.0
    felt: Optional[_Felt] = None


def render_timeline_svg(report: Mapping[str, Any]) -> str:
    """Draw one test's migration as a self-contained SVG document.

    :param report: the contents of a test's ``migration.json`` (see
        :meth:`migtest.metrics.MigrationRecorder.as_dict` for each side).
        Sides without samples or phases, a single sample, all-zero numbers
        and failed migrations are all drawn.  Every phase and sample needs
        its ``t``, every phase its ``status``; anything else may be missing.
    :raise KeyError, TypeError, ValueError, AttributeError: a report not
        shaped like that.
    :return: the SVG text, ``WIDTH`` x ``HEIGHT`` pixels plus a strip per feature
        the data shows (:mod:`migtest.report.panels`), UTF-8 clean.
    """
    timeline = _timeline(report.get("sides") or {}, report.get("guest_felt_downtime") or {})
    frame = _frame(timeline)
    setup = next(((p.start, p.end) for p in timeline.lanes.get("src", []) if p.status == "setup"),
                 None)  # fmt: skip
    panels = feature_panels(panel_data(report, timeline.shift, setup, timeline.page_size))
    height = HEIGHT + sum(panel.height for panel in panels)
    parts = [
        _header(report),
        *_phase_marks(timeline, frame),
        *_axes(frame),
        *_series(timeline, frame),
        *_lanes(timeline, frame.x),
        *_guest_lane(timeline.felt, len(timeline.lanes), frame.x),
        *_legend(timeline),
    ]
    top = float(HEIGHT)
    for panel in panels:
        parts += panel.draw(frame.x, top)
        top += panel.height
    if not (frame.left_ticks or frame.right_ticks):
        middle = (frame.top + _BOTTOM) / 2
        parts.append(svg_text((_LEFT + _RIGHT) / 2, middle, "no RAM figures recorded",
                           anchor="middle", fill=MUTED_INK, font_size=13))  # fmt: skip
    title = escape(f"Migration timeline of {report.get('test', 'an unnamed test')}")
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
        f'viewBox="0 0 {WIDTH} {height}" font-family="system-ui, -apple-system, '
        f"'Segoe UI', Roboto, 'DejaVu Sans', sans-serif\" font-size=\"11\" "
        f'fill="{TEXT_INK}" role="img">\n<title>{title}</title>\n'
        f'<rect width="{WIDTH}" height="{height}" fill="#ffffff"/>\n'
        + "\n".join(parts)
        + "\n</svg>\n"
    )


@dataclass(frozen=True)
class _Frame:
    """Where things go: the scales, and the ticks of each value axis.

    An axis without data has no tick labels (its grid still shows).
    """

    top: float
    x: Scale
    y_left: Scale
    y_right: Scale
    left_ticks: List[float]
    right_ticks: List[float]
    #: The pixel heights of the horizontal grid lines, from the bottom up.
    grid: List[float]


def _frame(timeline: _Timeline) -> _Frame:
    """Scales whose value axes share grid lines: the same number of intervals."""
    rows = len(timeline.lanes) + (timeline.felt is not None)
    top = _LANE_TOP + rows * (_LANE_H + _LANE_GAP) + 10
    left = nice_ticks(max((v for _, v in timeline.remaining), default=0.0))
    rates = [v for _, v in timeline.throughput + timeline.dirty]
    right = nice_ticks(max(rates, default=0.0), intervals=len(left) - 1)
    return _Frame(
        top=top,
        x=Scale(timeline.span, _LEFT, _RIGHT),
        y_left=Scale(left[-1], _BOTTOM, top),
        y_right=Scale(right[-1], _BOTTOM, top),
        left_ticks=left if timeline.remaining else [],
        right_ticks=right if rates else [],
        grid=[Scale(left[-1], _BOTTOM, top)(v) for v in left],
    )


def _timeline(sides: Mapping[str, Any], felt: Mapping[str, Any]) -> _Timeline:
    """Put every side on one clock: seconds since the earliest thing recorded.

    :param felt: the report's ``guest_felt_downtime``; its guest lane is
        drawn when it was measured.  The axis stays QEMU's: a destination
        the test held paused prints its first ``B`` after every recorded
        sample, and its lane then runs to the edge.
    """
    starts = {name: side["start"] for name, side in sides.items() if side.get("start") is not None}
    stamps = [
        starts[name] + entry["t"]
        for name in starts
        for entry in [*sides[name].get("phases", []), *sides[name].get("samples", [])]
    ]
    origin = min(stamps, default=0.0)
    guest = _felt(felt, origin, sides) if stamps else None
    span = max(max(stamps, default=0.0) - origin, MIN_SPAN)
    lanes: Dict[str, List[_Phase]] = {}
    for name, start in starts.items():
        moments = [
            (start + p["t"] - origin, str(p["status"])) for p in sides[name].get("phases", [])
        ]
        if moments:
            ends = [t for t, _ in moments[1:]] + [span]
            lanes[name] = [_Phase(name, s, t, end) for (t, s), end in zip(moments, ends)]
    src = sides.get("src") or {}
    page_size = int((src.get("final") or {}).get("ram", {}).get("page-size") or DEFAULT_PAGE_SIZE)
    shift = starts.get("src", origin) - origin
    samples: Sequence[Mapping[str, Any]] = src.get("samples", []) if "src" in starts else []

    def series(key: str, factor: float) -> List[Point]:
        return [(shift + s["t"], float(s[key]) * factor) for s in samples if s.get(key) is not None]

    return _Timeline(
        lanes=lanes,
        remaining=series("remaining", 1 / MiB),
        throughput=series("mbps", 1.0),
        dirty=series("dirty-pages-rate", page_size * 8 / 1e6),
        span=span,
        page_size=page_size,
        shift=shift,
        felt=guest,
    )


def _felt(felt: Mapping[str, Any], origin: float, sides: Mapping[str, Any]) -> Optional[_Felt]:
    """The guest lane from ``guest_felt_downtime`` (ms from the source's stop), if measured."""
    if "felt_ms" not in felt or felt.get("origin") is None:
        return None
    zero = float(felt["origin"]) - origin

    def at(ms: Any) -> float:
        return zero + float(ms) / 1000

    resume = at(felt["dst_resume_ms"])
    qemu = ((sides.get("src") or {}).get("final") or {}).get("downtime")
    downtime = (zero, zero + float(qemu) / 1000) if qemu is not None else None
    label = f"guest felt {felt['felt_ms']:.0f} ± {felt.get('uncertainty_ms', 0):.0f} ms"
    if qemu is not None:
        label += f" · QEMU downtime {qemu} ms"
    return _Felt(
        src_b=[at(t) for t in felt.get("b_src_ms") or ()],
        dst_b=[at(t) for t in felt.get("b_dst_ms") or ()],
        last_src_b=at(felt["last_src_b_ms"]),
        first_dst_b=at(felt["first_dst_b_ms"]),
        resume=resume,
        resumed=resume - float(felt.get("held_by_test_ms") or 0) / 1000,
        downtime=downtime,
        label=label,
    )


def _header(report: Mapping[str, Any]) -> str:
    """The test's short name, its variant, and how the migration ended."""
    name = str(report.get("test", "?")).split(";")[0].rsplit(":", 1)[-1]
    variant = " / ".join(str(report[k]) for k in ("arch", "accel") if report.get(k))
    sides = report.get("sides") or {}
    src = sides.get("src") or {}
    final = src.get("final") or {}
    phases = src.get("phases") or []
    status = str(final.get("status") or (phases[-1]["status"] if phases else "no migration"))
    outcome = [status]
    for key, label in (("total-time", "total"), ("downtime", "downtime"), ("setup-time", "setup")):
        if key in final:
            outcome.append(f"{label} {final[key]} ms")
    ink = PHASES.get(status, _OTHER_PHASE)[1] if status in ("completed", "failed") else TEXT_INK
    return (
        f'<text x="16" y="{_TITLE_Y}"><tspan font-size="15" font-weight="600">{escape(name)}'
        f'</tspan><tspan dx="10" font-size="12" fill="{MUTED_INK}">{escape(variant)}</tspan>'
        "</text>\n"
        + svg_text(WIDTH - 16, _TITLE_Y, "  ·  ".join(outcome), anchor="end", fill=ink,
                font_size=12, font_weight=600)
    )  # fmt: skip


def _lanes(timeline: _Timeline, x: Scale) -> List[str]:
    """One lane of status segments per side, labelled where the label fits."""
    out = []
    for row, (side, phases) in enumerate(timeline.lanes.items()):
        y = _LANE_TOP + row * (_LANE_H + _LANE_GAP)
        out.append(svg_text(_LEFT - 8, y + _LANE_H - 3, side, anchor="end", fill=MUTED_INK))
        for phase in phases:
            fill, ink, label = PHASES.get(phase.status, (*_OTHER_PHASE, phase.status))
            x0, x1 = x(phase.start), x(phase.end)
            width = max(x1 - x0, 2.0)
            tip = (f"{side}: {phase.status} from {phase.start:.3f} s "
                   f"for {(phase.end - phase.start) * 1000:.0f} ms")  # fmt: skip
            out.append(
                f'<g><title>{escape(tip)}</title><rect x="{x0}" y="{y}" width="{width:.1f}" '
                f'height="{_LANE_H}" rx="2" fill="{fill}" stroke="{ink}" stroke-width="0.6"/>'
            )
            fitting = [t for t in (phase.status, label) if len(t) * CHAR_W * 0.92 + 6 <= width]
            if fitting:
                out.append(svg_text(x0 + 4, y + _LANE_H - 3.5, fitting[0], font_size=10))
            out.append("</g>")
    return out


def _guest_lane(felt: Optional[_Felt], row: int, x: Scale) -> List[str]:
    """The guest's B's, the gap across the switchover, the felt pause and QEMU's downtime.

    One tick per pixel at most: a TCG guest prints hundreds a second.
    What lies outside the axis is cut at its ends.
    """
    if felt is None:
        return []
    y = _LANE_TOP + row * (_LANE_H + _LANE_GAP)

    def at(t: float) -> float:
        return x(min(max(t, 0.0), x.hi))

    def band(start: float, end: float, tip: str, **attrs: Any) -> str:
        paint = " ".join(f'{k.replace("_", "-")}="{v}"' for k, v in attrs.items())
        x0, x1 = at(start), at(end)
        return (f"<g><title>{escape(tip)}</title><rect x=\"{x0}\" y=\"{y}\" "
                f'width="{max(x1 - x0, 1.5):.1f}" height="{_LANE_H}" {paint}/></g>')  # fmt: skip

    gap = (felt.first_dst_b - felt.last_src_b) * 1e3
    out = [
        svg_text(_LEFT - 8, y + _LANE_H - 3, "guest", anchor="end", fill=MUTED_INK),
        band(felt.last_src_b, felt.first_dst_b,
             f"the guest's gap across the switchover: {gap:.1f} ms from the source's last B "
             f"to the destination's first; {felt.label}", fill=FELT_INK, opacity=0.3),
    ]  # fmt: skip
    if felt.resume > felt.resumed:
        held = (felt.resume - felt.resumed) * 1e3
        out.append(band(felt.resumed, felt.resume, f"the destination held paused by the test "
                        f"for {held:.0f} ms: not counted", fill=HELD_INK))  # fmt: skip
    for times, ink in ((felt.src_b, SRC_B_INK), (felt.dst_b, DST_B_INK)):
        for px in sorted({x(t) for t in times if 0 <= t <= x.hi}):
            out.append(f'<line x1="{px}" y1="{y + 6}" x2="{px}" y2="{y + _LANE_H}" '
                       f'stroke="{ink}" stroke-width="1"/>')  # fmt: skip
    if felt.downtime is not None:
        d0, d1 = at(felt.downtime[0]), at(felt.downtime[1])
        out.append(f"<g><title>QEMU's downtime, from the source's stop</title>"
                   f'<rect x="{d0}" y="{y + _LANE_H - 3}" width="{max(d1 - d0, 1.0):.1f}" '
                   f'height="3" fill="{QEMU_DOWNTIME_INK}"/></g>')  # fmt: skip
    width = len(felt.label) * CHAR_W * 0.92
    right = at(felt.first_dst_b) + 6
    halo: Dict[str, Any] = {"stroke": "#ffffff", "stroke_width": 3, "paint_order": "stroke"}
    if right + width <= _RIGHT:
        out.append(svg_text(right, y + 10, felt.label, fill=FELT_INK, font_size=10, **halo))
    else:
        left = max(at(felt.last_src_b) - 6, _LEFT + width)
        out.append(svg_text(left, y + 10, felt.label, anchor="end", fill=FELT_INK,
                            font_size=10, **halo))  # fmt: skip
    return out


def _phase_marks(timeline: _Timeline, frame: _Frame) -> List[str]:
    """Tint the plot by the source's status; a line at every status change.

    Source changes are solid lines, the other sides' dashed ones.
    """
    out, x, top = [], frame.x, frame.top
    for phase in timeline.lanes.get("src", []):
        fill = PHASES.get(phase.status, _OTHER_PHASE)[0]
        width = max(x(phase.end) - x(phase.start), 0.0)
        out.append(
            f'<rect x="{x(phase.start)}" y="{top}" width="{width:.1f}" '
            f'height="{_BOTTOM - top}" fill="{fill}" opacity="0.22"/>'
        )
    for side, phases in timeline.lanes.items():
        dash = "" if side == "src" else ' stroke-dasharray="4 3"'
        for phase in phases:
            ink = PHASES.get(phase.status, _OTHER_PHASE)[1]
            lane_y = _LANE_TOP + list(timeline.lanes).index(side) * (_LANE_H + _LANE_GAP)
            out.append(
                f'<line x1="{x(phase.start)}" y1="{lane_y + _LANE_H}" x2="{x(phase.start)}" '
                f'y2="{_BOTTOM}" stroke="{ink}" stroke-width="1" opacity="0.55"{dash}/>'
            )
    return out


def _axes(frame: _Frame) -> List[str]:
    """Grid lines, three axes with their ticks, and the units."""
    out, x, top = [], frame.x, frame.top
    for y in frame.grid[1:]:
        out.append(f'<line x1="{_LEFT}" y1="{y}" x2="{_RIGHT}" y2="{y}" stroke="{GRID_INK}"/>')
    for ticks, tick_x, anchor, ink in (
        (frame.left_ticks, _LEFT - 6, "end", REMAINING_INK),
        (frame.right_ticks, _RIGHT + 6, "start", THROUGHPUT_INK),
    ):
        for value, y in zip(ticks, frame.grid):
            out.append(svg_text(tick_x, y + 4, fmt_tick(value, ticks[1]), anchor=anchor, fill=ink))
    times = time_ticks(x.hi)
    for t in times:
        out.append(f'<line x1="{x(t)}" y1="{_BOTTOM}" x2="{x(t)}" y2="{_BOTTOM + 4}" '
                   f'stroke="{MUTED_INK}"/>')  # fmt: skip
        out.append(svg_text(x(t), _BOTTOM + 16, f"{fmt_tick(t, times[1])} s", anchor="middle"))
    mid = (_BOTTOM + top) / 2
    out += [
        f'<path d="M{_LEFT},{top} V{_BOTTOM} H{_RIGHT} V{top}" fill="none" stroke="{MUTED_INK}"/>',
        svg_text(18, mid, "remaining RAM (MiB)", anchor="middle", fill=REMAINING_INK,
              transform=f"rotate(-90 18 {mid})"),
        svg_text(WIDTH - 14, mid, "rate (Mbit/s)", anchor="middle", fill=THROUGHPUT_INK,
              transform=f"rotate(90 {WIDTH - 14} {mid})"),
    ]  # fmt: skip
    return out


def _series(timeline: _Timeline, frame: _Frame) -> List[str]:
    """The three curves; a lone sample is a dot, as a line needs two."""
    out, x, y_left, y_right = [], frame.x, frame.y_left, frame.y_right
    if len(timeline.remaining) > 1:
        first, last = timeline.remaining[0][0], timeline.remaining[-1][0]
        out.append(
            f'<polygon points="{x(first)},{_BOTTOM} {points_attr(timeline.remaining, x, y_left)} '
            f'{x(last)},{_BOTTOM}" fill="{REMAINING_INK}" opacity="0.10"/>'
        )
    for points, y, ink, dash in (
        (timeline.remaining, y_left, REMAINING_INK, ""),
        (timeline.throughput, y_right, THROUGHPUT_INK, ""),
        (timeline.dirty, y_right, DIRTY_INK, ' stroke-dasharray="6 3"'),
    ):
        if len(points) > 1:
            out.append(
                f'<polyline points="{points_attr(points, x, y)}" fill="none" stroke="{ink}" '
                f'stroke-width="2" stroke-linejoin="round"{dash}/>'
            )
        for t, v in points if len(points) < 4 else ():
            out.append(f'<circle cx="{x(t)}" cy="{y(v)}" r="3" fill="{ink}"/>')
    return out


def _legend(timeline: _Timeline) -> List[str]:
    """Name the curves on one row, and the statuses seen on the next."""
    peak = max((v for _, v in timeline.dirty), default=0.0) * 1e6 / 8 / timeline.page_size
    dirty = "dirty rate (Mbit/s)"
    if timeline.dirty:
        size = timeline.page_size
        page = f"{size // 1024} KiB" if size % 1024 == 0 else f"{size} B"
        dirty = f"dirty rate (Mbit/s; peak {peak:,.0f} pages/s of {page})"
    curves = [
        ("remaining RAM (MiB)", REMAINING_INK, ""),
        ("throughput (Mbit/s)", THROUGHPUT_INK, ""),
        (dirty, DIRTY_INK, ' stroke-dasharray="6 3"'),
    ]
    out, cursor, y = [], float(_LEFT), HEIGHT - 30
    for label, ink, dash in curves:
        out.append(f'<line x1="{cursor}" y1="{y - 4}" x2="{cursor + 22}" y2="{y - 4}" '
                   f'stroke="{ink}" stroke-width="2"{dash}/>')  # fmt: skip
        out.append(svg_text(cursor + 28, y, label))
        cursor += 28 + len(label) * CHAR_W + 22
    seen = {p.status for phases in timeline.lanes.values() for p in phases}
    cursor, y = float(_LEFT), HEIGHT - 10
    for status in [*(s for s in PHASES if s in seen), *sorted(seen - PHASES.keys())]:
        fill, ink = PHASES.get(status, _OTHER_PHASE)[:2]
        out.append(f'<rect x="{cursor}" y="{y - 9}" width="14" height="10" rx="2" '
                   f'fill="{fill}" stroke="{ink}" stroke-width="0.6"/>')  # fmt: skip
        out.append(svg_text(cursor + 19, y, status, fill=MUTED_INK))
        cursor += 19 + len(status) * CHAR_W + 16
    note = "src changes solid, other sides dashed"
    if timeline.lanes.keys() - {"src"} and cursor + len(note) * CHAR_W <= WIDTH - 16:
        out.append(svg_text(WIDTH - 16, y, note, anchor="end", fill=MUTED_INK))
    return out
