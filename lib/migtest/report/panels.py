"""Strips under a test's timeline that show the feature its migration used.

The timeline (:mod:`migtest.report.timeline`) is the same for every test:
remaining RAM against throughput and dirty rate.  What a multifd, TLS,
auto-converge or postcopy test is about needs more, and each gets a strip
of its own under the timeline, on the same time axis.  A strip is chosen
from the data alone, never from the test's name: a test that set up
multifd but whose bytes all went over the main channel gets no multifd
strip, and a plain precopy gets none at all (its picture is unchanged).

What QEMU gives, and so what is drawn:

- multifd: ``ram.multifd-bytes``, all channels together (QMP has no
  per-channel figure), under ``ram.transferred``, all channels' bytes; the
  channel count and compression come from the recorded parameters, zero
  pages from ``ram.duplicate``.
- auto-converge: ``cpu-throttle-percentage``, only present once QEMU
  throttles, against ``max-cpu-throttle``.
- postcopy: ``ram.postcopy-bytes`` and ``ram.postcopy-requests``, and the
  destination's ``postcopy-blocktime`` when its capability was on.
- TLS: QMP gives no handshake time.  The source's ``setup`` status, from
  the migrate command to ``active``, includes the connection and its TLS
  handshake; QEMU's ``setup-time`` does not include the main channel's, as
  QEMU starts counting it in its migration thread, which begins once that
  handshake is done.  Both are shown, named for what they are.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from ..arch import MiB
from ..metrics import multifd_share
from .svg import (
    CHAR_W,
    GRID_INK,
    LEFT,
    MUTED_INK,
    RIGHT,
    Point,
    Scale,
    fmt_tick,
    nice_ticks,
    points_attr,
    svg_text,
    time_ticks,
)

#: Heights of a strip with a plot and of the TLS strip, in pixels.
STRIP_H, TLS_H = 136, 58
#: Where a strip's plot area lies, from the strip's top.
_PLOT_TOP, _PLOT_BOTTOM = 28, 96

MULTIFD_INK, TOTAL_INK, ZERO_INK = "#0f8a7e", "#57606a", "#b08800"
THROTTLE_INK, POSTCOPY_INK, REQUESTS_INK, TLS_INK = "#c2410c", "#7453c4", "#d0568a", "#1a7f37"

#: A strip: how tall it is, and what draws it at a given top on the time scale.
Draw = Callable[[Scale, float], List[str]]


@dataclass(frozen=True)
class Panel:
    """One feature's strip."""

    #: What the strip shows, for tests and tooltips: ``multifd``, ``tls``...
    feature: str
    height: int
    draw: Draw


@dataclass(frozen=True)
class Curve:
    """One series of a strip; ``right`` puts it on the strip's right axis."""

    label: str
    ink: str
    points: List[Point]
    right: bool = False
    fill: bool = False
    dash: str = ""
    step: bool = False


@dataclass(frozen=True)
class Data:
    """What the strips are drawn from, on the timeline's clock."""

    #: The source's samples, each with its time on the plot's axis.
    samples: List[Tuple[float, Mapping[str, Any]]]
    #: Every side's final answer and samples, for the destination's blocktime.
    sides: Mapping[str, Mapping[str, Any]]
    parameters: Mapping[str, Any] = field(default_factory=dict)
    #: The source's ``setup`` status: start and end on the plot's axis.
    setup: Optional[Tuple[float, float]] = None
    page_size: int = 4096

    def series(self, key: str, factor: float = 1.0) -> List[Point]:
        return [(t, float(s[key]) * factor) for t, s in self.samples if s.get(key) is not None]

    def final_ram(self) -> Mapping[str, Any]:
        final = (self.sides.get("src") or {}).get("final") or {}
        ram = final.get("ram") or {}
        return ram if ram else (self.samples[-1][1] if self.samples else {})


def feature_panels(data: Data) -> List[Panel]:
    """The strips the data calls for, in a fixed order."""
    builders = (_multifd, _throttle, _postcopy, _tls)
    return [panel for build in builders if (panel := build(data)) is not None]


# -- the features ---------------------------------------------------------------


def _multifd(data: Data) -> Optional[Panel]:
    ram = data.final_ram()
    share = multifd_share(ram)
    multifd = data.series("multifd-bytes", 1 / MiB)
    if share is None and not any(v > 0 for _, v in multifd):
        return None
    parameters = data.parameters
    facts = []
    if parameters.get("multifd-channels"):
        facts.append(f"{parameters['multifd-channels']} channels")
    method = parameters.get("multifd-compression")
    if method and method != "none":
        level = parameters.get(f"multifd-{method}-level")
        facts.append(f"{method} compression" + (f" level {level}" if level is not None else ""))
    if share is not None:
        facts.append(f"{_percent(share)} of all bytes went through multifd channels")
    # The total on top, dashed: where multifd carried nearly everything, it
    # runs on the multifd curve, and the gap between them is the main channel.
    curves = [
        Curve("multifd channels together (MiB; QMP has no per-channel figure)", MULTIFD_INK,
              multifd, fill=True),
        Curve("all channels (MiB)", TOTAL_INK, data.series("transferred", 1 / MiB), dash="5 3"),
    ]  # fmt: skip
    zero = data.series("duplicate", data.page_size / MiB)
    if any(v > 0 for _, v in zero) or "zero-page-detection" in parameters:
        detection = parameters.get("zero-page-detection")
        how = f", detection {detection}" if detection else ""
        curves.append(Curve(f"zero pages (MiB{how})", ZERO_INK, zero, dash="2 3"))
    title = "multifd: " + " · ".join(facts)
    return Panel("multifd", STRIP_H, lambda x, top: _strip(x, top, title, curves, "MiB"))


def _percent(share: float) -> str:
    """A share to one decimal, never rounded up to a whole it is not."""
    return ">99.9%" if 0.999 < share < 1 else f"{share:.1%}"


def _throttle(data: Data) -> Optional[Panel]:
    throttle = data.series("cpu-throttle-percentage")
    if not throttle:
        return None
    parameters = data.parameters
    steps = [f"peak {max(v for _, v in throttle):.0f}%"]
    steps += [
        f"{label} {parameters[key]}%"
        for key, label in (
            ("cpu-throttle-initial", "initial"),
            ("cpu-throttle-increment", "increment"),
            ("max-cpu-throttle", "max"),
        )
        if key in parameters
    ]
    title = "auto-converge: guest CPUs throttled · " + ", ".join(steps)
    curves = [Curve("cpu-throttle-percentage (%)", THROTTLE_INK, throttle, fill=True, step=True)]
    limit = parameters.get("max-cpu-throttle")

    def draw(x: Scale, top: float) -> List[str]:
        out = _strip(x, top, title, curves, "%", hi=100.0)
        if isinstance(limit, (int, float)):
            y = Scale(100.0, top + _PLOT_BOTTOM, top + _PLOT_TOP)(float(limit))
            out.append(
                f'<line x1="{LEFT}" y1="{y}" x2="{RIGHT}" y2="{y}" '
                f'stroke="{THROTTLE_INK}" stroke-dasharray="5 3" opacity="0.7"/>'
            )
            out.append(
                svg_text(
                    RIGHT - 4,
                    y - 3,
                    f"max-cpu-throttle {limit}%",
                    anchor="end",
                    fill=THROTTLE_INK,
                    font_size=10,
                )
            )
        return out

    return Panel("auto-converge", STRIP_H, draw)


def _postcopy(data: Data) -> Optional[Panel]:
    sent = data.series("postcopy-bytes", 1 / MiB)
    requests = data.series("postcopy-requests")
    if not any(v > 0 for _, v in sent + requests):
        return None
    ram = data.final_ram()
    facts = []
    if ram.get("postcopy-bytes") is not None:
        facts.append(f"{ram['postcopy-bytes'] / MiB:.1f} MiB after the switch")
    if ram.get("postcopy-requests") is not None:
        facts.append(f"{ram['postcopy-requests']} page requests")
    blocktime = _blocktime(data.sides)
    if blocktime:
        facts.append(f"blocktime {blocktime[1]} ms ({blocktime[0]})")
    curves = [
        Curve("postcopy bytes (MiB)", POSTCOPY_INK, sent, fill=True),
        Curve("page requests (count, right axis)", REQUESTS_INK, requests, right=True),
    ]
    title = "postcopy: " + " · ".join(facts)
    return Panel(
        "postcopy", STRIP_H, lambda x, top: _strip(x, top, title, curves, "MiB", "requests")
    )


def _blocktime(sides: Mapping[str, Mapping[str, Any]]) -> Optional[Tuple[str, Any]]:
    """The side that measured a blocktime (a destination) and its last figure."""
    for name, side in sides.items():
        final = side.get("final") or {}
        if final.get("postcopy-blocktime") is not None:
            return name, final["postcopy-blocktime"]
        seen = [
            s["postcopy-blocktime"]
            for s in side.get("samples") or ()
            if s.get("postcopy-blocktime") is not None
        ]
        if seen:
            return name, seen[-1]
    return None


def _tls(data: Data) -> Optional[Panel]:
    creds = data.parameters.get("tls-creds")
    if not creds:
        return None
    final = (data.sides.get("src") or {}).get("final") or {}
    title = f"TLS (tls-creds {creds}): QMP gives no handshake time; the setup status includes it"
    label = []
    if data.setup is not None:
        label.append(
            f"setup {(data.setup[1] - data.setup[0]) * 1e3:.1f} ms, TLS handshake included"
        )
    if final.get("setup-time") is not None:
        label.append(
            f"QEMU's setup-time {final['setup-time']} ms starts after the main channel's handshake"
        )

    def draw(x: Scale, top: float) -> List[str]:
        out = [_separator(top), svg_text(16, top + 18, title, font_weight=600)]
        y = top + 28
        out.append(
            f'<line x1="{LEFT}" y1="{y + 7}" x2="{RIGHT}" y2="{y + 7}" stroke="{GRID_INK}"/>'
        )
        end = float(LEFT)
        if data.setup is not None:
            x0, x1 = x(data.setup[0]), x(data.setup[1])
            end = max(x1, x0 + 3)
            out.append(
                f"<g><title>the source's setup status: from the migrate command, through "
                f"connecting and the TLS handshake, to active</title>"
                f'<rect x="{x0}" y="{y}" width="{end - x0:.1f}" height="14" rx="2" '
                f'fill="{TLS_INK}" opacity="0.75"/></g>'
            )
        if label:
            out.append(svg_text(end + 6, y + 11, "; ".join(label), fill=TLS_INK, font_size=10))
        out += _time_marks(x, top + 50, labels=False)
        return out

    return Panel("tls", TLS_H, draw)


# -- drawing ----------------------------------------------------------------------


def _separator(top: float) -> str:
    return f'<line x1="16" y1="{top + 2}" x2="{RIGHT + 54}" y2="{top + 2}" stroke="{GRID_INK}"/>'


def _time_marks(x: Scale, y: float, labels: bool = True) -> List[str]:
    times = time_ticks(x.hi)
    out = []
    for t in times:
        out.append(f'<line x1="{x(t)}" y1="{y - 4}" x2="{x(t)}" y2="{y}" stroke="{MUTED_INK}"/>')
        if labels and len(times) > 1:
            out.append(
                svg_text(
                    x(t),
                    y + 12,
                    f"{fmt_tick(t, times[1])} s",
                    anchor="middle",
                    fill=MUTED_INK,
                    font_size=10,
                )
            )
    return out


def _strip(
    x: Scale,
    top: float,
    title: str,
    curves: Sequence[Curve],
    unit: str,
    right_unit: str = "",
    hi: float = 0.0,
) -> List[str]:
    """A titled plot of ``curves`` on the timeline's time axis, with its legend."""
    y0, y1 = top + _PLOT_BOTTOM, top + _PLOT_TOP
    left = nice_ticks(
        hi or max((v for c in curves if not c.right for _, v in c.points), default=0), intervals=4
    )
    rights = [v for c in curves if c.right for _, v in c.points]
    right = nice_ticks(max(rights, default=0), intervals=4)
    scales = {False: Scale(left[-1], y0, y1), True: Scale(right[-1], y0, y1)}
    out = [_separator(top), svg_text(16, top + 18, title, font_weight=600)]
    for value in left:
        y = scales[False](value)
        out.append(f'<line x1="{LEFT}" y1="{y}" x2="{RIGHT}" y2="{y}" stroke="{GRID_INK}"/>')
        out.append(
            svg_text(
                LEFT - 6,
                y + 4,
                fmt_tick(value, left[1]),
                anchor="end",
                fill=MUTED_INK,
                font_size=10,
            )
        )
    if rights:
        for value in right:
            out.append(
                svg_text(
                    RIGHT + 6,
                    scales[True](value) + 4,
                    fmt_tick(value, right[1]),
                    fill=REQUESTS_INK,
                    font_size=10,
                )
            )
    middle = (y0 + y1) / 2
    out.append(
        svg_text(
            LEFT - 46,
            middle,
            unit,
            anchor="middle",
            fill=MUTED_INK,
            font_size=10,
            transform=f"rotate(-90 {LEFT - 46} {middle})",
        )
    )
    if right_unit and rights:
        out.append(
            svg_text(
                RIGHT + 50,
                middle,
                right_unit,
                anchor="middle",
                fill=REQUESTS_INK,
                font_size=10,
                transform=f"rotate(90 {RIGHT + 50} {middle})",
            )
        )
    for curve in curves:
        out += _curve(curve, x, scales[curve.right], y0)
    out += _time_marks(x, y0 + 4)
    out += _legend(curves, top + STRIP_H - 10)
    return out


def _curve(curve: Curve, x: Scale, y: Scale, bottom: float) -> List[str]:
    points = curve.points
    if curve.step:  # a percentage holds until the next sample says otherwise
        points = [
            p
            for (t, v), (t2, _) in zip(points, [*points[1:], points[-1]])
            for p in ((t, v), (t2, v))
        ]
    if len(points) < 2:
        return [f'<circle cx="{x(t)}" cy="{y(v)}" r="3" fill="{curve.ink}"/>' for t, v in points]
    out = []
    if curve.fill:
        out.append(
            f'<polygon points="{x(points[0][0])},{bottom} {points_attr(points, x, y)} '
            f'{x(points[-1][0])},{bottom}" fill="{curve.ink}" opacity="0.18"/>'
        )
    dash = f' stroke-dasharray="{curve.dash}"' if curve.dash else ""
    out.append(
        f'<polyline points="{points_attr(points, x, y)}" fill="none" stroke="{curve.ink}" '
        f'stroke-width="1.8" stroke-linejoin="round"{dash}/>'
    )
    return out


def _legend(curves: Sequence[Curve], y: float) -> List[str]:
    out, cursor = [], float(LEFT)
    for curve in curves:
        dash = f' stroke-dasharray="{curve.dash}"' if curve.dash else ""
        out.append(
            f'<line x1="{cursor:.1f}" y1="{y - 4}" x2="{cursor + 18:.1f}" y2="{y - 4}" '
            f'stroke="{curve.ink}" stroke-width="2"{dash}/>'
        )
        out.append(svg_text(cursor + 23, y, curve.label, font_size=10))
        cursor += 23 + len(curve.label) * CHAR_W * 0.92 + 18
    return out


def panel_data(
    report: Mapping[str, Any], shift: float, setup: Optional[Tuple[float, float]], page_size: int
) -> Data:
    """The strips' input from a ``migration.json``, its source samples moved by ``shift``."""
    sides: Dict[str, Mapping[str, Any]] = dict(report.get("sides") or {})
    src = sides.get("src") or {}
    settings = report.get("settings") or {}
    return Data(
        samples=[(shift + s["t"], s) for s in src.get("samples") or ()]
        if src.get("start") is not None
        else [],
        sides=sides,
        parameters=settings.get("parameters") or {},
        setup=setup,
        page_size=page_size,
    )
