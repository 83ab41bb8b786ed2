"""Running Avocado jobs of the migration suite from a script: shared by
``soak`` and ``bench``, which both run one job per architecture and read
what it wrote."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from contextlib import suppress
from pathlib import Path
from typing import Any, Collection, Dict, List, Optional, Sequence

from migtest.arch import PROFILES

#: The top of the source tree: Avocado runs there, with the suite's config.
ROOT = Path(__file__).resolve().parent.parent
#: Every architecture the suite knows.
ARCHES = tuple(PROFILES)
#: Seconds Avocado gets to clean up after SIGINT before it is killed.
INTERRUPT_GRACE = 30.0


def avocado_binary() -> str:
    """Avocado from the running interpreter's venv, else ours, else PATH."""
    for candidate in (Path(sys.executable).parent / "avocado", ROOT / ".venv/bin/avocado"):
        if candidate.exists():
            return str(candidate)
    return shutil.which("avocado") or "avocado"


def job_command(
    jobs_dir: Path,
    arch: str,
    accel: str,
    tests: Sequence[str],
    job_timeout: float,
    extra: Sequence[str] = (),
) -> List[str]:
    """The ``avocado run`` of ``tests`` on one architecture.

    :param extra: more arguments, each split like a shell would; last,
        because ``-m`` takes every file name after it.
    """
    return [
        avocado_binary(), "--config", str(ROOT / "avocado.conf"), "run",
        "--job-results-dir", str(jobs_dir), "--disable-sysinfo",
        "--job-timeout", str(job_timeout),
        "-p", f"arch={arch}", "-p", f"accel={accel}", *tests,
        *[word for argument in extra for word in shlex.split(argument)],
    ]  # fmt: skip


def run_job(command: Sequence[str], output: Path, timeout: float) -> Optional[int]:
    """Run one Avocado job with its output in ``output``.

    Avocado runs in a session of its own, so that on Ctrl-C or a hang it can
    be asked to stop (SIGINT, which makes it interrupt its tests and clean
    up) and, if it does not, killed; then whatever it left behind is too.

    :return: Avocado's exit status, or None when it had to be stopped.
    :raise KeyboardInterrupt: (or the caller's SIGTERM exception) after
        Avocado was stopped.
    """
    with open(output, "wb") as out:
        proc = subprocess.Popen(
            command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        stop_job(proc)
        return None
    except BaseException:
        stop_job(proc)
        raise
    finally:
        end_group(proc.pid)


def stop_job(proc: subprocess.Popen[bytes]) -> None:
    """Interrupt Avocado, and kill it if it lingers."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(INTERRUPT_GRACE)
        except (subprocess.TimeoutExpired, KeyboardInterrupt):  # a second Ctrl-C: at once
            proc.kill()
            proc.wait()


def end_group(pgid: int, timeout: float = 5.0) -> None:
    """Kill what is left of Avocado's process group, and see it gone.

    The group outlives Avocado only through its leftovers (an interrupted
    Avocado 113 can leave its test runner and QEMUs); while any is alive the
    group's id cannot be reused, so this never reaches anyone else.
    """
    deadline = time.monotonic() + timeout
    with suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)
        while time.monotonic() < deadline:  # until the kernel has ended them all
            time.sleep(0.05)
            os.killpg(pgid, 0)


def load_results(jobs_dir: Path) -> Optional[Dict[str, Any]]:
    """The results.json of the one job in ``jobs_dir``, if it wrote a readable one.

    A job stopped midway can leave the file cut short: that is no results,
    not a reason to lose every other run's.
    """
    for path in sorted(jobs_dir.glob("job-*/results.json")):
        try:
            results: Dict[str, Any] = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        return results
    return None


def table(rows: Sequence[Sequence[str]], right: Collection[int]) -> str:
    """Plain columns; the columns numbered in ``right`` are right-aligned."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for row in rows:
        cells = [
            cell.rjust(width) if i in right else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(row, widths))
        ]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)
