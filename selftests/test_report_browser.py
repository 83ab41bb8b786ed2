"""The report page in a real browser: every architecture's column fits a
1400-pixel window, nothing spills out of its cell.

Chromium, headless, lays the page out; a script added to a copy of the page
(the page itself has none) measures it and writes what it found into the
DOM, which Chromium prints (``--dump-dom``).  Without Chromium these tests
are skipped, saying how to get it.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import signal
import subprocess
from pathlib import Path
from typing import Any, Dict, List

import pytest
from test_report_merge import Run, write_job

from migtest.arch import PROFILES
from migtest.report import jobpage

#: The window the page must fit.
WIDTH, HEIGHT = 1400, 900
#: Seconds Chromium gets to load and lay out one page (it takes 1 to 4 here).
DEADLINE = 120.0
#: Debian 12's chromium with its dependencies, --no-install-recommends (2026-12).
INSTALL = (
    "apt-get install --no-install-recommends chromium: 115 MB to download, 361 MB "
    "installed, 40 s on the project's CI machine"
)

#: Measures the page as laid out; its findings go into <pre id="migtest-measure">.
MEASURE = """<script>
(() => {
  const page = document.documentElement, problems = [];
  const name = (e) => `<${e.tagName.toLowerCase()}> "${e.textContent.trim().slice(0, 40)}"`;
  if (innerWidth !== %(width)d) problems.push(`the window is ${innerWidth} px, not %(width)d`);
  if (page.scrollWidth > page.clientWidth)
    problems.push(`the page is ${page.scrollWidth} px wide in ${page.clientWidth} px`);
  for (const box of document.querySelectorAll("header, main"))
    if (box.scrollWidth > box.clientWidth)
      problems.push(`${name(box)} scrolls sideways: ${box.scrollWidth} px in ${box.clientWidth}`);
  for (const cell of document.querySelectorAll("th, td, .run")) {
    const right = cell.getBoundingClientRect().right;
    if (right > page.clientWidth) problems.push(`${name(cell)} ends at ${right} px, out of sight`);
    if (cell.scrollWidth > cell.clientWidth + 1)
      problems.push(`${name(cell)} spills: ${cell.scrollWidth} px in ${cell.clientWidth} px`);
  }
  const columns = [...document.querySelectorAll(".grid thead th[scope=col] .arch")];
  const out = document.createElement("pre");
  out.id = "migtest-measure";
  out.textContent = JSON.stringify({
    problems,
    columns: columns.map((c) => c.textContent),
    widths: columns.map((c) => Math.round(c.parentElement.getBoundingClientRect().width)),
  });
  document.body.appendChild(out);
})();
</script>"""


@pytest.fixture(scope="module")
def chromium() -> str:
    binary = shutil.which("chromium")
    if binary is None:
        pytest.skip(f"chromium is not installed, the page's width is not checked ({INSTALL})")
    return binary


def measure(chromium: str, page: Path, scratch: Path, style: str = "") -> Dict[str, Any]:
    """Lay ``page`` out in a WIDTH x HEIGHT window; what the script found.

    :param style: CSS added to the copy measured, to make it wrong on purpose.
    """
    text = page.read_text()
    assert text.count("</body>") == 1
    measured = scratch / f"measured-{page.name}"
    extra = f"<style>{style}</style>" if style else ""
    measured.write_text(text.replace("</body>", f"{extra}{MEASURE % {'width': WIDTH}}</body>"))
    home = scratch / "chromium-home"
    home.mkdir(exist_ok=True)
    # Its profile, caches and crash reports in the scratch directory, none in ~.
    env = {**os.environ, "HOME": str(home), "XDG_CONFIG_HOME": str(home / "config"),
           "XDG_CACHE_HOME": str(home / "cache")}  # fmt: skip
    command = [chromium, "--headless", "--no-sandbox", "--disable-gpu",
               f"--user-data-dir={home / 'profile'}", f"--window-size={WIDTH},{HEIGHT}",
               "--dump-dom", measured.as_uri()]  # fmt: skip
    proc = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        start_new_session=True,
    )  # fmt: skip
    try:
        dom, errors = proc.communicate(timeout=DEADLINE)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        dom, errors = proc.communicate()
        pytest.fail(
            f"chromium did not print the DOM of {measured} in {DEADLINE:.0f} s: {errors[-500:]}"
        )
    finally:
        # What Chromium started and left behind, in the session it was started in.
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    found = re.search(r'<pre id="migtest-measure">(.*?)</pre>', dom, re.S)
    assert found, f"chromium (exit {proc.returncode}) printed no measures: {errors[-500:]}"
    result: Dict[str, Any] = json.loads(html.unescape(found.group(1)))
    return result


#: A matrix as wide as the suite makes them: six architectures, KVM and TCG,
#: three hosts on two QEMU versions, long names and long failures.
LONG = ("tests/migration/postcopy.py:RecoveryFailures."
        "test_recovery_fails_when_the_destination_dies_during_postcopy_recover")  # fmt: skip
REASON = ("dst (QEMU 7.2.22, /usr/bin/qemu-system-loongarch64): 'migrate-incoming' lacks the "
          "arguments: channels (added in QEMU 8.2)")  # fmt: skip


def wide_jobs(tmp_path: Path) -> List[Path]:
    jobs = []
    hosts = [("ci-runner-x86-64-builder-03.example.org", "7.2.22"), ("beta", "10.0.13"),
             ("gamma", "11.1.3")]  # fmt: skip
    for index, (host, qemu) in enumerate(hosts):
        runs = [
            Run(test=test, arch=arch, accel=accel, qemu=qemu, felt=1234.5,
                total=123456, downtime=12345,
                status="CANCEL" if arch == "loongarch64" else "PASS",
                reason=REASON if arch == "loongarch64" else "")
            for test in (LONG, "tests/migration/precopy.py:Precopy.test_unix")
            for arch in PROFILES
            for accel in (("tcg", "kvm") if arch == "x86_64" else ("tcg",))
        ]  # fmt: skip
        jobs.append(write_job(tmp_path / f"job-{index}", f"{index}" * 40, runs, host=host))
    return jobs


def test_every_architecture_fits_a_1400_pixel_window(chromium: str, tmp_path: Path) -> None:
    jobs = wide_jobs(tmp_path)
    page = tmp_path / "report.html"
    jobpage.main([*map(str, jobs), "-o", str(page)])
    result = measure(chromium, page, tmp_path)
    assert result["columns"] == list(PROFILES)
    assert result["problems"] == []
    # A column no narrower than the style promises (140 px), in 1400 px.
    assert min(result["widths"]) >= 140, result["widths"]


def test_the_single_job_page_fits_too(chromium: str, tmp_path: Path) -> None:
    (job, *_) = wide_jobs(tmp_path)
    jobpage.main([str(job)])
    result = measure(chromium, job / "migration-report.html", tmp_path)
    assert result["problems"] == [] and len(result["columns"]) == 6


@pytest.mark.parametrize(
    ("style", "problem"),
    [
        ("table.grid { min-width: 2000px !important; }", "scrolls sideways"),
        (".run .origin, .run .reason { white-space: nowrap; }", "spills"),
        (
            "table.grid { table-layout: auto !important; } .run { min-width: 215px; }",
            "out of sight",
        ),
    ],
)
def test_the_width_check_sees_a_page_too_wide(
    chromium: str, tmp_path: Path, style: str, problem: str
) -> None:
    """The page broken three ways: columns that do not shrink, lines that do
    not wrap in a narrow cell, and the cells of the page before (at least
    215 px wide, the table as wide as they ask): ppc64 was cut off."""
    jobs = wide_jobs(tmp_path)
    page = tmp_path / "report.html"
    jobpage.main([*map(str, jobs), "-o", str(page)])
    problems = measure(chromium, page, tmp_path, style=style)["problems"]
    assert any(problem in p for p in problems), problems
