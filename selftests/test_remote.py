"""scripts/remote-run's logic, without hosts: fast, run by every ``make check``.

What makes the remote spawner safe is here: the slot files (our ssh options
before aexpect's, our control socket), the job's configuration, the hook a
slot's shell runs (tried in a real ``sh``), the redirection of a test's
output, the pre-flight's questions (asked of this machine by a real ``sh``)
and its judgement of the answers, the verdict that fails a run where a test
did not run, and the cleanup that finds a run's processes by their
environment.  Each check is shown failing on bad input.  The same code
against real sshd hosts: ``test_remote_lab.py`` (opt-in).
"""

from __future__ import annotations

import argparse
import configparser
import inspect
import json
import os
import shlex
import signal
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Set

import pytest
from conftest import ROOT, load_script

from migtest.errors import ConfigError
from migtest.remote import (
    MARKER,
    PROMPT,
    PROMPT_RE,
    Host,
    LocalState,
    check_host,
    job_config,
    judge,
    parse_answers,
    parse_hosts,
    preflight_script,
    redirect_output,
    run_dir,
    setup_hook,
    slot_login,
    status_address,
)

remote_run = load_script("remote-run")
HOST = Host(
    user="tester",
    address="host-a",
    port=2222,
    identity=Path("/keys/id"),
    known_hosts=Path("/keys/known"),
)


# -- the hosts file --


def test_hosts_file_lines_become_hosts() -> None:
    text = """
    # the lab
    root@10.0.0.5  identity=/k/id known_hosts=/k/kh slots=2   # two at once
    host-b:2222
    """
    a, b = parse_hosts(text, "hosts", user="me")
    assert a == Host("root", "10.0.0.5", 22, Path("/k/id"), Path("/k/kh"), 2)
    assert (b.user, b.address, b.port, b.identity, b.slots) == ("me", "host-b", 2222, None, 1)
    assert b.known_hosts == Path("~/.ssh/known_hosts").expanduser()


@pytest.mark.parametrize(
    "text, named, accepted",
    [
        ("root@host;rm", "hosts:1 host", "[USER@]ADDRESS[:PORT]"),
        ("h1\n[::1]:22", "hosts:2 host", "[USER@]ADDRESS[:PORT]"),
        ("h1 slot=2", "hosts:1 option", "identity=("),
        ("h1 identity=", "hosts:1 option", "known_hosts=("),
        ("h1 slots=0", "hosts:1 slots", "a whole number from 1"),
        ("h1 slots=two", "hosts:1 slots", "a whole number from 1"),
        ("h1\nroot@h1", "hosts:2 host", "each host once (slots=N for more)"),
        ("# nothing\n", "hosts", "at least one host line"),
    ],
)
def test_a_bad_hosts_file_names_the_line_and_what_it_accepts(
    text: str, named: str, accepted: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_hosts(text, "hosts", user="me")
    assert raised.value.parameter == named
    assert accepted in str(raised.value)


# -- the slot files and the configuration --


def aexpect_command(login: Mapping[str, object]) -> List[str]:
    """The ssh command aexpect's remote_login builds from a slot file, split."""
    from aexpect import remote  # the spawner's dependency: what reads the slot files

    accepted = inspect.signature(remote.remote_login).parameters
    assert set(login) <= set(accepted), f"remote_login takes no {set(login) - set(accepted)}"
    # remote_login's own words (aexpect 1.8), after ours; it runs them through a shell.
    command = (
        f"ssh {login['extra_cmdline']} -o UserKnownHostsFile=/dev/null "
        f"-o StrictHostKeyChecking=no -p {login['port']} "
        f"-o PreferredAuthentications=password {login['username']}@{login['host']}"
    )
    return shlex.split(command)


def first_values(argv: List[str]) -> Dict[str, str]:
    """What ssh makes of ``-o`` options: the first value of each wins."""
    values: Dict[str, str] = {}
    for flag, value in zip(argv, argv[1:]):
        if flag == "-o":
            name, _, setting = value.partition("=")
            values.setdefault(name.lower(), setting)
    return values


def test_a_slot_is_a_strict_session_of_ours_whatever_aexpect_adds(tmp_path: Path) -> None:
    control = tmp_path / "s0"
    login = slot_login(HOST, control, 60.0)
    options = first_values(aexpect_command(login))
    assert options["stricthostkeychecking"] == "yes"
    assert options["userknownhostsfile"] == "/keys/known"
    assert options["preferredauthentications"] == "publickey"
    assert options["batchmode"] == "yes"
    assert (options["controlmaster"], options["controlpath"]) == ("yes", str(control))
    assert options["controlpersist"] == "no"
    assert options["remotecommand"] == f"exec env PS1={PROMPT} sh -i"
    assert "-i" in aexpect_command(login) and "/keys/id" in aexpect_command(login)
    assert (login["host"], login["port"], login["username"]) == ("host-a", 2222, "tester")
    assert json.loads(json.dumps(login)) == login


def test_the_ssh_check_of_slot_options_can_fail() -> None:
    """aexpect's own options, were they first, would win: the check sees it."""
    argv = shlex.split("ssh -o StrictHostKeyChecking=no -o StrictHostKeyChecking=yes h")
    assert first_values(argv)["stricthostkeychecking"] == "no"


def test_the_prompt_pattern_matches_the_prompt_only() -> None:
    import re

    assert re.search(PROMPT_RE, f"output\n{PROMPT}", re.MULTILINE)
    assert not re.search(PROMPT_RE, "root@host:~# ", re.MULTILINE)


def test_the_job_config_keeps_the_suites_and_sets_the_spawners(tmp_path: Path) -> None:
    base = (ROOT / "avocado.conf").read_text()
    slots = [tmp_path / "slot0.json", tmp_path / "slot 1.json"]
    hook = 'cd /x && python3() { /x/.venv/bin/python3 -m m /tmp/r "$@"; } # 100%'
    text = job_config(base, slots, hook, "10.1.2.3:5000", "10.1.2.3:5000")
    parser = configparser.ConfigParser()  # as Avocado reads it: with interpolation
    parser.read_string(text)
    assert parser.get("run", "spawner") == "remote"
    assert parser.getint("run", "max_parallel_tasks") == 2
    assert parser.getboolean("run", "status_server_auto") is False
    assert parser.get("run", "status_server_listen") == "10.1.2.3:5000"
    assert parser.get("run", "status_server_uri") == "10.1.2.3:5000"
    assert json.loads(parser.get("spawner.remote", "slots")) == [str(s) for s in slots]
    assert parser.get("spawner.remote", "setup_hook") == hook
    assert not parser.has_option("spawner.remote", "test_timeout")
    assert parser.get("job.output.testlogs", "statuses")  # the suite's own section stays


# -- the hook and the task wrapper, in a real shell --


def fake_checkout(tmp_path: Path) -> Path:
    """A checkout whose venv's python3 prints its arguments and environment."""
    checkout = tmp_path / "check out"
    (checkout / ".venv" / "bin").mkdir(parents=True)
    python = checkout / ".venv" / "bin" / "python3"
    python.write_text(
        f'#!/bin/sh\necho "cwd=$(pwd)"\nfor a in "$@"; do echo "arg=$a"; done\n'
        f'echo "marker=${MARKER}"\necho "strict=$MIGTEST_STRICT"\n'
        f'echo "binary=$QTEST_QEMU_BINARY"\n'
    )
    python.chmod(0o755)
    return checkout


#: What the spawner types after the hook: the runner's arguments, shell-joined.
SPAWNED = shlex.join(
    [
        "python3",
        "-m",
        "runner",
        "task-run",
        "-i",
        "1-t.py:T.test;v",
        "output_dir=/res/job-1/test-results/1-t.py_T.test",
    ]
)


def spawn(hook: str) -> subprocess.CompletedProcess[str]:
    """A slot's shell: the hook, then the spawner's command."""
    return subprocess.run(
        ["sh", "-c", f"{hook}\n{SPAWNED}"], cwd="/", capture_output=True, text=True, timeout=30
    )


def test_the_hook_makes_the_spawners_python3_ours(tmp_path: Path) -> None:
    checkout = fake_checkout(tmp_path)
    environ = {"MIGTEST_STRICT": "1", "QTEST_QEMU_BINARY": "/opt/q m/qemu", "HOME": "/nope"}
    done = spawn(setup_hook(checkout, "tok", environ))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == f"cwd={checkout}"
    args = [line[4:] for line in lines if line.startswith("arg=")]
    assert args == [
        "-m",
        "migtest.remote",
        run_dir("tok"),
        "-m",
        "runner",
        "task-run",
        "-i",
        "1-t.py:T.test;v",
        "output_dir=/res/job-1/test-results/1-t.py_T.test",
    ]
    assert "marker=tok" in lines and "strict=1" in lines and "binary=/opt/q m/qemu" in lines


def test_without_the_hook_the_spawner_runs_someone_elses_python(tmp_path: Path) -> None:
    """The check above fails on a shell the hook did not prepare."""
    fake_checkout(tmp_path)
    done = spawn("true")
    assert f"cwd={tmp_path}" not in done.stdout and "arg=migtest.remote" not in done.stdout


def test_a_tests_output_goes_to_the_runs_directory() -> None:
    args = ["-m", "r", "task-run", "-c", '{"output_dir=": 1}', "output_dir=/res/j/test-results/1-x"]
    changed, name = redirect_output(args, "/tmp/migtest-remote-tok")
    assert name == "1-x"
    assert changed == [*args[:-1], "output_dir=/tmp/migtest-remote-tok/1-x"]


@pytest.mark.parametrize(
    "args",
    [["task-run", "-i", "1"], ["output_dir=/a/1-x", "output_dir=/b/1-x"], ["output_dir=/"]],
)
def test_a_runner_command_without_one_output_dir_is_refused(args: List[str]) -> None:
    with pytest.raises(ConfigError) as raised:
        redirect_output(args, "/tmp/r")
    assert raised.value.parameter == "output_dir"


def test_the_task_wrapper_runs_this_python_on_the_redirected_arguments(tmp_path: Path) -> None:
    code = "import sys; print(sys.argv[1:])"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "migtest.remote",
            str(tmp_path / "run"),
            "-c",
            code,
            "output_dir=/elsewhere/test-results/1-name",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == repr([f"output_dir={tmp_path}/run/1-name"])
    assert (tmp_path / "run" / "1-name").is_dir()
    refused = subprocess.run(
        [sys.executable, "-m", "migtest.remote", str(tmp_path), "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 2 and "output_dir" in refused.stderr


# -- the pre-flight --


def ask_here(checkout: Path, binaries: List[str]) -> Dict[str, str]:
    """The pre-flight script, run by this machine's sh as a host would run it."""
    done = subprocess.run(
        ["sh", "-s"],
        input=preflight_script(checkout, binaries),
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ, SSH_CLIENT="10.9.8.7 5555 22"),
    )
    assert done.returncode == 0, done.stderr
    return parse_answers(done.stdout)


def local_avocado() -> str:
    code = "from avocado.core.version import VERSION; print(VERSION)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    return done.stdout.strip()


def test_this_checkout_passes_its_own_preflight() -> None:
    binary = "qemu-system-x86_64"
    before = remote_run.local_tree()
    answers = ask_here(ROOT, [binary])
    # As remote-run does: the tree may change while it is asked (other writers).
    here = LocalState(ROOT, local_avocado(), frozenset({before, remote_run.local_tree()}))
    if answers.get(f"qemu:{binary}") == "missing":
        pytest.skip(f"{binary} is not installed")
    assert answers["client"] == "10.9.8.7"
    assert check_host(answers, here, [binary]) == []


def test_the_preflight_finds_a_missing_checkout_and_qemu(tmp_path: Path) -> None:
    here = LocalState(ROOT, local_avocado(), frozenset({remote_run.local_tree()}))
    assert check_host(ask_here(tmp_path / "nowhere", []), here, []) == [
        f"no checkout at {ROOT} (it must be at the same path on every host)"
    ]
    answers = ask_here(ROOT, ["qemu-system-nonesuch"])
    problems = check_host(answers, here, ["qemu-system-nonesuch"])
    assert "no QEMU qemu-system-nonesuch (missing)" in problems


GOOD = {
    "client": "10.0.0.1",
    "checkout": "present",
    "commit": "c1",
    "changes": "d1",
    "python": f"{ROOT}/lib/migtest/__init__.py 113.0",
    "qemu:q": "QEMU emulator version 9.2.0",
    "end": "done",
}
LOCAL = LocalState(ROOT, "113.0", frozenset({("c1", "d1"), ("c2", "d2")}))


@pytest.mark.parametrize(
    "change, problem",
    [
        ({}, None),
        ({"commit": "c2", "changes": "d2"}, None),  # the tree changed while asked
        ({"commit": "c0"}, "checkout at commit 'c0', here c1 or c2"),
        ({"changes": "d2"}, "uncommitted changes to lib, tests, guests differ"),
        ({"python": "/usr/lib/python3/dist-packages/migtest/__init__.py 113.0"}, "cannot import"),
        ({"python": "ModuleNotFoundError: No module named 'avocado'"}, "cannot import"),
        ({"python": f"{ROOT}/lib/migtest/__init__.py 112.0"}, "Avocado 112.0 in its venv"),
        ({"qemu:q": "missing"}, "no QEMU q (missing)"),
        ({"qemu:q": "sh: 1: q: Permission denied"}, "no QEMU q"),
        ({"end": ""}, "the check did not finish"),
    ],
)
def test_each_preflight_check_can_fail(change: Dict[str, str], problem: Optional[str]) -> None:
    problems = check_host({**GOOD, **change}, LOCAL, ["q"])
    if problem is None:
        assert problems == []
    else:
        assert len(problems) == 1 and problem in problems[0], problems


def test_the_status_server_is_where_every_host_sees_us() -> None:
    a, b = HOST, Host("u", "host-b")
    assert status_address({a: "10.0.0.1", b: "10.0.0.1"}) == "10.0.0.1"
    for seen in ({a: "10.0.0.1", b: "10.0.1.1"}, {a: ""}, {a: "fd00::1"}):
        with pytest.raises(ConfigError) as raised:
            status_address(seen)
        assert "--status-listen HOST:PORT" in str(raised.value)


# -- arguments --


@pytest.mark.parametrize(
    "args, binaries",
    [
        ([], ["qemu-system-x86_64"]),
        (["-p", "arch=s390x"], ["qemu-system-s390x"]),
        (["-p", "qemu_bin=/q/a", "-p", "qemu_bin_dst=/q/b"], ["/q/a", "/q/b"]),
    ],
)
def test_the_binaries_the_preflight_asks_for(
    args: List[str], binaries: List[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("QTEST_QEMU_BINARY", raising=False)
    assert remote_run.required_binaries(args, []) == binaries
    assert remote_run.required_binaries(args, ["extra"])[-1] == "extra"


@pytest.mark.parametrize(
    "argv, said",
    [
        (["hosts", "tests"], "give Avocado's arguments after --"),
        (["hosts", "--", "t", "--job-results-dir", "x"], "use --results"),
        (["hosts", "--", "t", "--max-parallel-tasks=4"], "use slots= in HOSTS-FILE"),
        (["hosts", "--", "t", "--spawner", "process"], "--spawner is this script's"),
        (["hosts", "--status-uri", "a:1", "--", "t"], "--status-uri needs --status-listen"),
    ],
)
def test_arguments_the_script_must_own_are_refused(
    argv: List[str], said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as raised:
        remote_run.parse_args(argv)
    assert raised.value.code == 2
    assert said in capsys.readouterr().err


# -- the verdict --


def entry(status: str, name: str = "1-t", reason: str = "") -> Dict[str, str]:
    return {
        "id": name,
        "status": status,
        "logdir": f"/res/job/test-results/{name}",
        "fail_reason": reason,
    }


@pytest.mark.parametrize(
    "tests, fetched, problem",
    [
        ([entry("PASS")], {"1-t"}, None),
        ([entry("WARN")], {"1-t"}, None),
        ([entry("CANCEL", reason="no qemu-system-s390x")], set(), None),
        ([entry("PASS")], set(), "1-t: PASS, but its files did not come back"),
        ([entry("SKIP")], set(), "1-t: SKIP"),
        ([entry("CANCEL")], set(), "1-t: CANCEL without a reason"),
        ([entry("FAIL", reason="RAM differs")], {"1-t"}, "1-t: FAIL: RAM differs"),
        ([entry("INTERRUPTED")], {"1-t"}, "1-t: INTERRUPTED"),
        ([], set(), "the job ran no test: no reference matched"),
    ],
)
def test_a_test_that_did_not_run_fails_the_run(
    tests: List[Dict[str, str]], fetched: Set[str], problem: Optional[str]
) -> None:
    verdict = judge({"tests": tests}, fetched)
    if problem is None:
        assert verdict.passed, verdict.problems
    else:
        assert not verdict.passed and problem in verdict.problems


def test_one_skip_among_passes_fails_the_run_and_is_counted() -> None:
    tests = [entry("PASS", "1-a"), entry("SKIP", "2-b"), entry("PASS", "3-c")]
    verdict = judge({"tests": tests}, {"1-a", "3-c"})
    assert verdict.counts == {"PASS": 2, "SKIP": 1}
    assert verdict.problems == ["2-b: SKIP"]
    assert judge(None, set()).problems == ["the job wrote no readable results.json"]


# -- fetch-back and cleanup --


def test_fetched_files_join_the_local_test_directory(tmp_path: Path) -> None:
    job, staging = tmp_path / "job", tmp_path / "staging"
    local = job / "test-results" / "1-t"
    (local / "data").mkdir(parents=True)
    (local / "debug.log").write_text("relayed\n")
    (local / "whiteboard").write_text("same")
    fetched = staging / "1-t"
    (fetched / "data").mkdir(parents=True)
    (fetched / "data" / "migration.json").write_text("{}")
    (fetched / "qmp.log").write_text("-> qmp\n")
    (fetched / "debug.log").write_text("written there\n")
    (fetched / "whiteboard").write_text("same")
    (staging / "9-stranger").mkdir()
    names, problems = remote_run.merge(staging, job)
    assert names == {"1-t"}
    assert problems == ["fetched 9-stranger, a test this job does not have"]
    assert (local / "data" / "migration.json").read_text() == "{}"
    assert (local / "qmp.log").read_text() == "-> qmp\n"
    assert (local / "debug.log").read_text() == "relayed\n"
    assert (local / "debug.log.remote").read_text() == "written there\n"
    assert not (local / "whiteboard.remote").exists()


def marked(marker: str) -> subprocess.Popen[bytes]:
    """A process of "the run": ``marker`` in its environment."""
    name, _, value = marker.partition("=")
    return subprocess.Popen(["sleep", "60"], env=dict(os.environ, **{name: value}))


def test_the_runs_local_processes_are_found_by_their_environment() -> None:
    ours = marked("TMPDIR=/tmp/migtest-remote-selftest")
    other = marked("TMPDIR=/tmp/migtest-remote-selftest-other")
    try:
        found = remote_run.ours("TMPDIR=/tmp/migtest-remote-selftest")
        assert ours.pid in found and other.pid not in found
    finally:
        for process in (ours, other):
            process.kill()
            process.wait()
    assert ours.pid not in remote_run.ours("TMPDIR=/tmp/migtest-remote-selftest")


def test_the_host_cleanup_kills_what_the_run_left_and_says_so(tmp_path: Path) -> None:
    """The cleanup script, run by this machine's sh as a host runs it."""
    token = f"selftest{os.getpid()}"
    leftover = marked(f"{MARKER}={token}")
    bystander = marked(f"{MARKER}={token}x")
    script = remote_run.REMOTE_CLEANUP.format(
        dir=shlex.quote(str(tmp_path / "run")), marker=shlex.quote(f"{MARKER}={token}"), tries=2
    )
    (tmp_path / "run" / "1-t").mkdir(parents=True)
    try:
        done = subprocess.run(
            ["sh", "-s"], input=script, capture_output=True, text=True, timeout=60
        )
        assert leftover.wait(10) == -signal.SIGKILL
        assert bystander.poll() is None
    finally:
        for process in (leftover, bystander):
            if process.poll() is None:
                process.kill()
            process.wait()
    lines = done.stdout.splitlines()
    assert lines == [f"left {leftover.pid} sleep 60 ", "cleaned"], done.stderr
    assert not (tmp_path / "run").exists()


def test_the_status_server_listens_where_the_hosts_see_us() -> None:
    default = argparse.Namespace(status_listen=None, status_uri=None)
    listen, uri = remote_run.status_server(default, {HOST: "127.0.0.1"})
    assert listen == uri and listen.startswith("127.0.0.1:") and int(listen[10:]) > 0
    with pytest.raises(ConfigError) as raised:  # TEST-NET-1: never this machine's (bind only)
        remote_run.status_server(default, {HOST: "192.0.2.1"})
    assert "give --status-listen and --status-uri" in str(raised.value)
    told = argparse.Namespace(status_listen="0.0.0.0:7000", status_uri="10.0.0.1:7000")
    assert remote_run.status_server(told, {}) == ("0.0.0.0:7000", "10.0.0.1:7000")


def test_the_job_is_found_by_its_whole_id(tmp_path: Path) -> None:
    job_id = "abcdef0" + "1" * 33
    for name, recorded in (("job-1-abcdef0", "abcdef0" + "2" * 33), ("job-2-abcdef0", job_id)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "results.json").write_text(json.dumps({"job_id": recorded}))
    assert remote_run.find_job(tmp_path, job_id) == tmp_path / "job-2-abcdef0"
    assert remote_run.find_job(tmp_path, "f" * 40) is None
