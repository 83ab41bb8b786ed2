"""What a QEMU process's threads are doing, for the log when a wait on it times out.

A migration that never ends is either busy or stuck, and QMP cannot tell
which: ``query-migrate`` answers the same either way.  Linux can: each
thread's name (QEMU names its own: ``live_migration``, ``multifdsend_3``,
``CPU 0/TCG``), its state, and the kernel function it sleeps in (a futex
for a semaphore or a lock, a socket for I/O).  One look, not a proof:
idle threads sleep in futexes too; but a migration thread asleep in one
long after a cancel, with the threads it waits for gone, is what a
deadlock looks like, and the names say whose.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import List


@dataclass(frozen=True)
class ThreadState:
    """One thread of a process, as ``/proc/<pid>/task/<tid>`` shows it."""

    tid: int
    #: The thread's name (``comm``), e.g. ``live_migration``.
    name: str
    #: Linux's one-letter state: ``R`` running, ``S`` sleeping, ``D`` in I/O...
    state: str
    #: The kernel function it sleeps in (``wchan``), ``0`` when it runs;
    #: ``?`` where Linux does not say.
    waits_in: str

    def describe(self) -> str:
        return f"{self.tid} {self.name!r} {self.state} {self.waits_in}"


def thread_states(pid: int, proc: Path = Path("/proc")) -> List[ThreadState]:
    """The threads of process ``pid``, by thread id; empty if it is gone.

    A thread that ends while it is read is left out.
    """
    try:
        tids = sorted(int(entry.name) for entry in (proc / str(pid) / "task").iterdir())
    except (OSError, ValueError):
        return []
    states: List[ThreadState] = []
    for tid in tids:
        task = proc / str(pid) / "task" / str(tid)
        try:
            name = (task / "comm").read_text().rstrip("\n")
            stat = (task / "stat").read_text()
        except OSError:
            continue
        # "tid (name) S ...": the name may hold spaces and parentheses.
        state = stat[stat.rfind(")") + 2 :].split(" ", 1)[0]
        try:
            waits_in = (task / "wchan").read_text().strip() or "?"
        except OSError:
            waits_in = "?"
        states.append(ThreadState(tid, name, state, waits_in))
    return states
