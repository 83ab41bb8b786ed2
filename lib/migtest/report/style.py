"""The style of the report page: inline, so that it needs nothing from the network.

The grid has to show every architecture at once in a 1400-pixel window
(six of them today, ``x86_64`` to ``loongarch64``), so its layout is
fixed: the test names take a set width, the architectures share the rest
equally, and long words (paths, QEMU's error messages) wrap inside their
cell instead of widening it.  Below :data:`MIN_COLUMN` pixels a column
would be unreadable: the page scrolls sideways instead (from nine
architectures on, at 1400 pixels).
"""

from __future__ import annotations

#: The width of the tests' column, in CSS pixels.
TEST_COLUMN = 200
#: The narrowest an architecture's column may get, in CSS pixels...
MIN_COLUMN = 140
#: ...and the widest: a grid of one or two architectures stays readable.
MAX_COLUMN = 340
#: The statuses with a colour of their own; SKIP and unknown ones look like CANCEL.
COLOURED = ("pass", "fail", "error", "warn", "interrupted")
#: The colours that tell the jobs of a merged page apart, in the order given.
JOB_COLOURS = ("#0969da", "#bf3989", "#1a7f37", "#9a6700", "#8250df", "#0a7f8c", "#cf222e")

CSS = f"""
:root {{ --ink: #1f2328; --muted: #656d76; --line: #d8dee4; --bg: #f6f8fa; --pass: #1a7f37;
  --pass-bg: #fff; --fail: #cf222e; --fail-bg: #ffebe9; --error: #a40e26; --error-bg: #ffe0dc;
  --warn: #9a6700; --warn-bg: #fff5cc; --interrupted: #8250df; --interrupted-bg: #f5edff;
  --cancel: #57606a; --cancel-bg: #eef1f4; }}
* {{ box-sizing: border-box; }}
body {{ margin: 0; background: var(--bg); color: var(--ink);
  font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; }}
header {{ background: #fff; border-bottom: 1px solid var(--line); padding: 18px 28px 14px; }}
h1 {{ font-size: 20px; margin: 0 0 4px; font-weight: 600; }}
h2 {{ font-size: 16px; font-weight: 600; margin: 28px 0 10px; }}
.meta {{ margin: 0; color: var(--muted); overflow-wrap: anywhere; }}
code {{ font: 12.5px ui-monospace, "DejaVu Sans Mono", monospace; background: var(--bg);
  padding: 1px 5px; border-radius: 4px; }}
a {{ color: #0969da; text-decoration: none; }} a:hover {{ text-decoration: underline; }}
.totals {{ margin: 10px 0 0; display: flex; gap: 8px; flex-wrap: wrap; }}
.chip {{ font-weight: 600; font-size: 13px; padding: 2px 10px; border-radius: 999px;
  background: var(--cancel); color: #fff; white-space: nowrap; }}
.chip.small {{ font-size: 11.5px; padding: 0 7px; }}
main {{ padding: 22px 28px; overflow-x: auto; }}
table.jobs {{ margin-top: 12px; border-collapse: collapse; font-size: 13px; width: 100%; }}
.jobs th, .jobs td {{ text-align: left; padding: 3px 12px 3px 0; vertical-align: top;
  border-bottom: 1px solid var(--line); overflow-wrap: anywhere; }}
.jobs th {{ color: var(--muted); font-weight: 500; }}
.jobs td.totals {{ margin: 0; display: table-cell; }}
.jobs td.totals .chip {{ margin: 0 4px 2px 0; display: inline-block; }}
table.grid {{ border-collapse: separate; border-spacing: 0; background: #fff; width: 100%;
  table-layout: fixed; border: 1px solid var(--line); border-radius: 8px; overflow: hidden; }}
col.tests {{ width: {TEST_COLUMN}px; }}
.grid th, .grid td {{ border-bottom: 1px solid var(--line); padding: 8px 10px;
  vertical-align: top; text-align: left; overflow-wrap: anywhere; }}
.grid tbody tr:last-child > * {{ border-bottom: none; }}
.grid thead th {{ background: #fafbfc; font-weight: 600; }}
.grid thead th.corner {{ color: var(--muted); font-weight: 500; }}
.grid th[scope=row] {{ font-weight: 400; border-right: 1px solid var(--line); }}
.test, .arch {{ display: block; font-weight: 600; }}
.file, .accel {{ display: block; color: var(--muted); font-size: 12px; font-weight: 400; }}
td.cell {{ padding: 6px; font-size: 13px; }}
td.none {{ color: #afb8c1; text-align: center; vertical-align: middle; }}
.run {{ border-left: 3px solid var(--cancel); background: var(--cancel-bg); border-radius: 4px;
  padding: 5px 7px; }}
.run + .run {{ margin-top: 6px; }}
.head {{ display: flex; justify-content: space-between; gap: 6px; align-items: baseline;
  flex-wrap: wrap; }}
.status {{ font-weight: 700; font-size: 11.5px; letter-spacing: .04em; padding: 1px 6px;
  border-radius: 4px; background: var(--cancel); color: #fff; }}
.elapsed, .outcome {{ color: var(--muted); font-size: 12px; }}
.origin {{ margin-top: 3px; font-size: 12px; color: var(--ink); }}
.origin .chip {{ margin-right: 4px; }}
.numbers {{ margin-top: 3px; color: var(--muted); font-size: 12.5px; }}
.numbers span {{ white-space: nowrap; }}
.numbers b {{ color: var(--ink); font-weight: 600; font-variant-numeric: tabular-nums; }}
.reason {{ margin-top: 3px; font-size: 12px; color: var(--cancel); }}
.links {{ margin-top: 3px; display: flex; flex-wrap: wrap; column-gap: 9px; font-size: 12.5px; }}
.missing {{ color: var(--muted); font-size: 12px; }}
details {{ background: #fff; border: 1px solid var(--line); border-radius: 8px;
  margin-bottom: 8px; }}
summary {{ cursor: pointer; padding: 8px 14px; font-weight: 600; }}
summary .file {{ display: inline; margin-left: 8px; }}
.plots {{ display: flex; flex-wrap: wrap; gap: 12px; padding: 4px 14px 14px; }}
figure {{ margin: 0; max-width: 100%; }}
figcaption {{ color: var(--muted); font-size: 12px; margin-top: 3px; }}
figure img {{ display: block; width: 800px; max-width: 100%; height: auto;
  border: 1px solid var(--line); border-radius: 6px; }}
footer {{ padding: 0 28px 28px; color: var(--muted); font-size: 12.5px; }}
footer code {{ padding: 0; background: none; }}
"""
#: Per status: its run's tint and bar, its badge, chip and reason in its colour.
_STATUS = """
.run.{s} {{ background: var(--{s}-bg); border-left-color: var(--{s}); }}
.{s} .status, .chip.{s} {{ background: var(--{s}); color: #fff; }}
.{s} .reason {{ color: var(--{s}); }}
"""
#: Per job of a merged page: the colour of its letter.
_JOB = ".chip.job-{i} {{ background: {colour}; }}\n"


def css() -> str:
    """The whole style sheet of the page."""
    return (
        CSS
        + "".join(_STATUS.format(s=s) for s in COLOURED)
        + "".join(_JOB.format(i=i, colour=c) for i, c in enumerate(JOB_COLOURS))
    )


def grid_width(columns: int) -> str:
    """The grid's width: the window's, within what its columns may take.

    Below the least, the page scrolls sideways rather than crush the cells.
    """
    least, most = (TEST_COLUMN + columns * width for width in (MIN_COLUMN, MAX_COLUMN))
    return f"min-width: {least}px; width: min(100%, {most}px)"
