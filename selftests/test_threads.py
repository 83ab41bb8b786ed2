"""QEMU's threads as Linux shows them: what a timed-out wait logs."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from migtest.threads import ThreadState, thread_states


def test_a_sleeping_process_shows_its_name_state_and_where_it_waits() -> None:
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        time.sleep(0.2)
        [thread] = thread_states(sleeper.pid)
    finally:
        sleeper.kill()
        sleeper.wait()
    assert (thread.tid, thread.name, thread.state) == (sleeper.pid, "sleep", "S")
    assert "sleep" in thread.waits_in or thread.waits_in == "?"


def test_a_process_that_is_gone_has_no_threads() -> None:
    gone = subprocess.Popen(["true"])
    gone.wait()
    assert thread_states(gone.pid) == []


def fake_task(proc: Path, tid: int, name: str, state: str, wchan: str) -> None:
    task = proc / "42" / "task" / str(tid)
    task.mkdir(parents=True)
    (task / "comm").write_text(name + "\n")
    (task / "stat").write_text(f"{tid} ({name}) {state} 1 42 42 0 -1\n")
    (task / "wchan").write_text(wchan)


def test_names_with_spaces_and_parentheses_keep_the_state_apart(tmp_path: Path) -> None:
    fake_task(tmp_path, 43, "CPU 0/TCG", "R", "0")
    fake_task(tmp_path, 44, "odd) S (name", "S", "futex_wait_queue")
    assert thread_states(42, tmp_path) == [
        ThreadState(43, "CPU 0/TCG", "R", "0"),
        ThreadState(44, "odd) S (name", "S", "futex_wait_queue"),
    ]
    assert ThreadState(44, "live_migration", "S", "futex_wait_queue").describe() == (
        "44 'live_migration' S futex_wait_queue"
    )


def test_a_thread_that_ended_while_read_is_left_out(tmp_path: Path) -> None:
    fake_task(tmp_path, 43, "main", "S", "")
    (tmp_path / "42" / "task" / "44").mkdir()  # listed, then gone: nothing to read
    assert [thread.tid for thread in thread_states(42, tmp_path)] == [43]
    assert thread_states(42, tmp_path)[0].waits_in == "?"
