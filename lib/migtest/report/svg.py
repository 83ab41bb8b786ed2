"""The drawing primitives the report's SVG pictures share.

Hand-written SVG needs only a few: a linear scale, round tick values,
numbers formatted to their tick step, and escaped text.  The timeline
(:mod:`migtest.report.timeline`) and its feature panels
(:mod:`migtest.report.panels`) draw with these, so that their axes match.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, List, Sequence, Tuple
from xml.sax.saxutils import escape, quoteattr

#: The width every picture is drawn for, in pixels, and where its plot
#: areas start and end: panels under the timeline share its time axis.
WIDTH = 800
LEFT, RIGHT = 70, WIDTH - 70
TEXT_INK, MUTED_INK, GRID_INK = "#24292f", "#6e7781", "#e6e8eb"
#: Rough width of one character of the 11 px font, to decide what fits.
CHAR_W = 6.2

Point = Tuple[float, float]


@dataclass(frozen=True)
class Scale:
    """Maps ``[0, hi]`` onto pixels ``a`` to ``b``."""

    hi: float
    a: float
    b: float

    def __call__(self, value: float) -> float:
        return round(self.a + value * (self.b - self.a) / self.hi, 1)


def nice_ticks(hi: float, intervals: int = 0) -> List[float]:
    """Round tick values from 0 to at least ``hi``.

    :param intervals: force this many intervals, so that a second axis puts
        its ticks on the first one's grid lines; 0 chooses about five.
    """
    hi = hi if hi > 0 else 1.0
    wanted = intervals or 5
    raw = hi / wanted
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw * (1 - 1e-9))
    count = intervals or max(1, math.ceil(hi / step - 1e-9))
    return [i * step for i in range(count + 1)]


def time_ticks(span: float) -> List[float]:
    """Ticks inside ``[0, span]``: the time axis ends with the last record."""
    return [t for t in nice_ticks(span) if t <= span * (1 + 1e-9)]


def fmt_tick(value: float, step: float) -> str:
    """``value`` with as many decimals as the tick step needs, thousands grouped."""
    decimals = 0
    while decimals < 6 and abs(step * 10**decimals - round(step * 10**decimals)) > 1e-6:
        decimals += 1
    return f"{value:,.{decimals}f}"


def svg_text(x: float, y: float, content: str, *, anchor: str = "start", **attrs: Any) -> str:
    """A ``<text>`` element; attribute names take ``-`` for ``_`` (``font_size``)."""
    extra = "".join(f" {k.replace('_', '-')}={quoteattr(str(v))}" for k, v in attrs.items())
    return f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}"{extra}>{escape(content)}</text>'


def points_attr(points: Sequence[Point], x: Scale, y: Scale) -> str:
    """The ``points`` of a polyline through ``points`` on these scales."""
    return " ".join(f"{x(t)},{y(v)}" for t, v in points)
