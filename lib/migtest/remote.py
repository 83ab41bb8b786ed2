"""One Avocado job of the suite over several hosts: what ``scripts/remote-run`` writes and judges.

Avocado's remote spawner (``avocado-framework-plugin-spawner-remote``)
logs into each host over ssh (aexpect's ``remote_login``), keeps that
shell open as a *slot*, and for every test types ``python3 -m <runner>
task-run ...`` into it.  Used as it comes, it is unsafe for this suite:

- a host it cannot use, or a test it could not start, is a SKIP, and the
  job exits 0: a job can be green while no test ran;
- the test writes its files (``migration.json``, the plots, ``qmp.log``,
  the consoles) on the remote host, at the local job's path, where they
  stay;
- it never closes its ssh sessions.

This module holds the parts that need no host: the hosts file, the slot
files and the Avocado configuration that make every session one of *ours*
(an ssh ControlMaster socket of our own per slot, a known prompt, strict
host key checking), the pre-flight checks of each host's answers, the
remote side's redirection of each test's output into a directory of this
run, and the verdict that counts a test that did not run as a failure.
"""

from __future__ import annotations

import configparser
import io
import json
import os
import re
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, FrozenSet, List, Mapping, Optional, Sequence, Set, Tuple

from .errors import ConfigError
from .params import ENV_BINARY, ENV_STRICT
from .versions import ENV_CACHE

#: This module, as a host's Python runs it (:func:`task_main`).
MODULE = "migtest.remote"
#: The prompt of a slot's shell: ours, not whatever the remote user's
#: shell prints, so that aexpect finds it whatever the host's rc files do.
PROMPT = "migtest-remote:"
PROMPT_RE = rf"^{PROMPT}\s*$"
#: On each host, the directory of one run (``RUN_DIR_PREFIX`` + token):
#: every test's output directory goes under it, and it is removed after
#: the artifacts are fetched.
RUN_DIR_PREFIX = "/tmp/migtest-remote-"
#: Exported in every slot's shell: every process a test starts on a host
#: inherits it, so that what outlives the job there can be found.
MARKER = "MIGTEST_REMOTE_RUN"
#: The local environment the tests read (README, "Parameters"), passed on to
#: every host: a remote test does not inherit the controller's environment.
FORWARDED_ENV = (ENV_BINARY, f"{ENV_BINARY}_SRC", f"{ENV_BINARY}_DST", ENV_STRICT, ENV_CACHE)
#: What a test's files are compared by: the code a host runs.
CODE_PATHS = ("lib", "tests", "guests")
#: Statuses of a test that ran to its end and passed.
PASSED = ("PASS", "WARN")
#: Options of a hosts file line, with what each accepts.
HOST_OPTIONS = {
    "identity": "a private key file",
    "known_hosts": "a known_hosts file holding the host's key",
    "slots": "tests at once on this host, a whole number from 1",
}
#: ``[USER@]ADDRESS[:PORT]``: words the ssh command line aexpect builds
#: (unquoted) can carry, so no IPv6 literal; a name from ~/.ssh/config is fine.
_DESTINATION = re.compile(
    r"^(?:(?P<user>[A-Za-z0-9._-]+)@)?(?P<address>[A-Za-z0-9._-]+)(?::(?P<port>\d+))?$"
)
#: ssh's own default.
DEFAULT_KNOWN_HOSTS = "~/.ssh/known_hosts"


@dataclass(frozen=True)
class Host:
    """One line of the hosts file."""

    user: str
    address: str
    port: int = 22
    identity: Optional[Path] = None
    known_hosts: Path = Path(DEFAULT_KNOWN_HOSTS)
    slots: int = 1

    @property
    def destination(self) -> str:
        return f"{self.user}@{self.address}"

    def __str__(self) -> str:
        return f"{self.destination}:{self.port}"

    def ssh_options(self) -> List[str]:
        """What every ssh of ours to this host says.

        The host's key must be known (no trust on first use, no password):
        an unattended run cannot answer either question.  The server is
        pinged, so that a host that vanished ends its session instead of
        leaving it hanging until the spawner's four-hour timeout.
        """
        options = [
            "-p", str(self.port), "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
            "-o", f"UserKnownHostsFile={self.known_hosts}", "-o", "ConnectTimeout=15",
            "-o", "ServerAliveInterval=30", "-o", "ServerAliveCountMax=4",
        ]  # fmt: skip
        if self.identity is not None:
            options += ["-i", str(self.identity), "-o", "IdentitiesOnly=yes"]
        return options

    def one_shot(self, control: Optional[Path] = None) -> List[str]:
        """``ssh`` and its options for one command, over ``control`` if it is up.

        Never a master of its own, and never one of the user's: a
        ControlPersist in their ssh config would leave it running.
        """
        path = "none" if control is None else str(control)
        return ["ssh", *self.ssh_options(), "-o", "ControlMaster=no", "-o", f"ControlPath={path}"]


def parse_hosts(text: str, source: str, user: str) -> List[Host]:
    """The hosts of a hosts file: ``[USER@]ADDRESS[:PORT] [NAME=VALUE...]`` a line.

    :param source: the file's name, for errors.
    :param user: the user when a line names none (ssh's default: ours).
    :raise ConfigError: naming the line and what it accepts.
    """
    hosts: List[Host] = []
    for number, line in enumerate(text.splitlines(), 1):
        words = line.split("#", 1)[0].split()
        if not words:
            continue
        where = f"{source}:{number}"
        match = _DESTINATION.match(words[0])
        if match is None:
            raise ConfigError(f"{where} host", words[0], "[USER@]ADDRESS[:PORT]")
        options: Dict[str, str] = {}
        for word in words[1:]:
            name, equals, value = word.partition("=")
            if name not in HOST_OPTIONS or not equals or not value:
                accepted = "; ".join(f"{key}=({what})" for key, what in HOST_OPTIONS.items())
                raise ConfigError(f"{where} option", word, accepted)
            options[name] = value
        slots = options.get("slots", "1")
        if not slots.isdigit() or int(slots) < 1:
            raise ConfigError(f"{where} slots", slots, HOST_OPTIONS["slots"])
        host = Host(
            user=match["user"] or user,
            address=match["address"],
            port=int(match["port"] or 22),
            identity=Path(options["identity"]).expanduser() if "identity" in options else None,
            known_hosts=Path(options.get("known_hosts", DEFAULT_KNOWN_HOSTS)).expanduser(),
            slots=int(slots),
        )
        if any((h.address, h.port) == (host.address, host.port) for h in hosts):
            raise ConfigError(f"{where} host", words[0], "each host once (slots=N for more)")
        hosts.append(host)
    if not hosts:
        raise ConfigError(source, "", "at least one host line")
    return hosts


def slot_login(host: Host, control: Path, login_timeout: float) -> Dict[str, object]:
    """One slot file: aexpect ``remote_login``'s arguments for a session of ours.

    aexpect writes ``-o UserKnownHostsFile=/dev/null -o
    StrictHostKeyChecking=no`` (and, without an identity file,
    ``PreferredAuthentications=password``) after ``extra_cmdline``; ssh
    keeps the first value of an option, so ours, first, win.  The session
    is the master of its own control socket, which is how the run fetches
    over it and closes it afterwards.  The remote command starts a plain
    ``sh`` with our prompt.
    """
    options = [
        *host.ssh_options(), "-o", "PreferredAuthentications=publickey",
        "-o", "ControlMaster=yes", "-o", f"ControlPath={control}", "-o", "ControlPersist=no",
        "-o", "RequestTTY=force", "-o", f"RemoteCommand=exec env PS1={PROMPT} sh -i",
    ]  # fmt: skip
    return {
        "client": "ssh", "host": host.address, "port": host.port, "username": host.user,
        "password": "", "prompt": PROMPT_RE, "linesep": "\n", "timeout": login_timeout,
        "extra_cmdline": shlex.join(options),
    }  # fmt: skip


def run_dir(token: str) -> str:
    """The directory of run ``token`` on every host."""
    return RUN_DIR_PREFIX + token


def setup_hook(checkout: Path, token: str, environ: Mapping[str, str]) -> str:
    """The command the spawner types into a slot's shell before each test.

    It enters the checkout (test references are relative to it), exports
    the marker and the forwarded environment, and makes the spawner's
    ``python3`` this checkout's venv running :func:`task_main`, which sends
    the test's output to this run's directory.
    """
    exports = [f"{MARKER}={token}"]
    exports += [f"{name}={environ[name]}" for name in FORWARDED_ENV if name in environ]
    python = checkout / ".venv" / "bin" / "python3"
    return (
        f"cd {shlex.quote(str(checkout))} && export {' '.join(map(shlex.quote, exports))} && "
        f'python3() {{ {shlex.quote(str(python))} -m {MODULE} {run_dir(token)} "$@"; }}'
    )


def job_config(base: str, slots: Sequence[Path], hook: str, listen: str, uri: str) -> str:
    """The Avocado configuration of the job: the suite's ``base`` and the spawner's.

    The status server must be TCP (the default is a UNIX socket a remote
    test cannot reach, and the spawner then SKIPs every test), and no more
    tests may run at once than there are slots (the spawner raises).
    ``setup_timeout`` and ``test_timeout`` are left out: the spawner reads
    them from a file as strings and every test then fails.
    """
    parser = configparser.ConfigParser()
    parser.read_string(base)
    settings = {
        "run": {
            "spawner": "remote", "max_parallel_tasks": str(len(slots)),
            "status_server_auto": "False", "status_server_listen": listen,
            "status_server_uri": uri,
        },
        "spawner.remote": {"slots": json.dumps([str(s) for s in slots]), "setup_hook": hook},
    }  # fmt: skip
    for section, values in settings.items():
        if not parser.has_section(section):
            parser.add_section(section)
        for key, value in values.items():
            parser.set(section, key, value.replace("%", "%%"))
    text = io.StringIO()
    parser.write(text)
    return text.getvalue()


def redirect_output(args: Sequence[str], directory: str) -> Tuple[List[str], str]:
    """The runner's arguments with the test's output in ``directory``.

    The spawner passes the *local* job's test directory
    (``output_dir=<job>/test-results/<name>``): on a host that path is
    outside anything of ours, and every job leaves files there.  The test
    writes to ``<directory>/<name>`` instead, and the run fetches it into
    the local ``<name>``, the name telling which test it is.

    :return: the arguments, and ``<name>``.
    :raise ConfigError: when there is not exactly one ``output_dir=``.
    """
    found = [i for i, arg in enumerate(args) if arg.startswith("output_dir=")]
    if len(found) != 1:
        raise ConfigError("output_dir", args, "one output_dir=PATH among the runner's arguments")
    name = Path(args[found[0]].split("=", 1)[1]).name
    if name in ("", ".", ".."):
        raise ConfigError("output_dir", args[found[0]], "a path ending in a test's name")
    changed = list(args)
    changed[found[0]] = f"output_dir={directory}/{name}"
    return changed, name


def task_main(argv: Sequence[str]) -> int:
    """On a host: ``python3 -m migtest.remote RUN_DIR ARGS...``, via the hook.

    Runs this venv's Python on the runner's ``ARGS`` with the test's
    output redirected into ``RUN_DIR`` (see :func:`redirect_output`).
    """
    if len(argv) < 2:
        print(f"usage: python3 -m {MODULE} RUN_DIR RUNNER-ARGS...", file=sys.stderr)
        return 2
    try:
        args, name = redirect_output(argv[1:], argv[0])
    except ConfigError as exc:
        print(f"{MODULE}: {exc}", file=sys.stderr)
        return 2
    os.makedirs(Path(argv[0]) / name, mode=0o700, exist_ok=True)
    os.execv(sys.executable, [sys.executable, *args])


def preflight_script(checkout: Path, binaries: Sequence[str]) -> str:
    """The ``sh`` script a host runs to answer :func:`check_host`'s questions.

    One ``NAME<TAB>VALUE`` line per answer, read by :func:`parse_answers`.
    """
    code = " ".join(CODE_PATHS)
    probe = (
        "import sys, migtest, avocado.plugins.runners.avocado_instrumented; "
        "from avocado.core.version import VERSION; print(migtest.__file__, VERSION)"
    )
    lines = [
        'answer() { printf \'%s\\t%s\\n\' "$1" "$2"; }',
        'answer client "${SSH_CLIENT%% *}"',
        f"if ! cd {shlex.quote(str(checkout))} 2>/dev/null; then",
        "  answer checkout missing; answer end done; exit 0",
        "fi",
        "answer checkout present",
        'answer commit "$(git rev-parse HEAD 2>&1 | head -n 1)"',
        f'answer changes "$(git -c diff.noprefix=false diff --no-ext-diff --no-color HEAD -- {code}'
        " | sha256sum | cut -d ' ' -f 1)\"",
        f'answer python "$(.venv/bin/python3 -c {shlex.quote(probe)} 2>&1 | tail -n 1)"',
    ]
    for binary in binaries:
        quoted = shlex.quote(binary)
        lines.append(
            f'answer qemu:{quoted} "$(command -v {quoted} >/dev/null 2>&1 && '
            f'{quoted} --version 2>&1 | head -n 1 || echo missing)"'
        )
    lines.append("answer end done")
    return "\n".join(lines) + "\n"


def parse_answers(output: str) -> Dict[str, str]:
    """The answers of :func:`preflight_script`, by name."""
    answers = {}
    for line in output.splitlines():
        name, tab, value = line.partition("\t")
        if tab:
            answers[name] = value.strip()
    return answers


@dataclass(frozen=True)
class LocalState:
    """What every host must match: this checkout, as :func:`preflight_script` sees it.

    :ivar trees: the (commit, hash of the uncommitted changes to
        :data:`CODE_PATHS`) this checkout had while the hosts were asked: a
        host may match any of them (the tree can change meanwhile).
    """

    checkout: Path
    avocado: str
    trees: FrozenSet[Tuple[str, str]]


def check_host(answers: Mapping[str, str], local: LocalState, binaries: Sequence[str]) -> List[str]:
    """What keeps a host from running this checkout's tests, in words; empty when nothing.

    :param answers: the host's :func:`parse_answers`.
    """
    if answers.get("end") != "done":
        return [f"the check did not finish: answers {dict(answers)}"]
    if answers.get("checkout") != "present":
        return [f"no checkout at {local.checkout} (it must be at the same path on every host)"]
    problems = []
    commits = sorted({commit for commit, _ in local.trees})
    if answers.get("commit") not in commits:
        problems.append(
            f"checkout at commit {answers.get('commit')!r}, here {' or '.join(commits)}"
        )
    elif (answers["commit"], answers.get("changes", "")) not in local.trees:
        problems.append(
            f"uncommitted changes to {', '.join(CODE_PATHS)} differ from this checkout's"
        )
    python = answers.get("python", "").split()
    expected = str(local.checkout / "lib" / "migtest" / "__init__.py")
    if len(python) != 2 or python[0] != expected:
        problems.append(
            f"{local.checkout}/.venv cannot import this checkout's migtest and Avocado's "
            f"runner: {answers.get('python')!r} (run `make venv` there)"
        )
    elif python[1] != local.avocado:
        problems.append(f"Avocado {python[1]} in its venv, {local.avocado} here")
    for binary in binaries:
        version = answers.get(f"qemu:{binary}", "missing")
        if version == "missing" or not version.startswith("QEMU emulator version"):
            problems.append(f"no QEMU {binary} ({version})")
    return problems


def status_address(clients: Mapping[Host, str]) -> str:
    """This machine's address as every host sees it (from ``$SSH_CLIENT``).

    The status server listens there and the hosts' tests report to it.

    :raise ConfigError: when hosts see different addresses, or an IPv6 one
        (Avocado's ``HOST:PORT`` cannot say it): ``--status-listen`` and
        ``--status-uri`` must then be given.
    """
    seen = set(clients.values())
    if len(seen) != 1 or not next(iter(seen)) or ":" in next(iter(seen)):
        told = ", ".join(f"{host} sees {address or 'nothing'}" for host, address in clients.items())
        raise ConfigError(
            "--status-listen", told, "one IPv4 address every host reaches us at; give "
            "--status-listen HOST:PORT and --status-uri HOST:PORT"
        )  # fmt: skip
    return next(iter(seen))


@dataclass
class Verdict:
    """What the run's job did, test by test, and everything that makes the run fail."""

    counts: Dict[str, int] = field(default_factory=dict)
    problems: List[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.problems


def judge(results: Optional[Mapping[str, object]], fetched: Set[str]) -> Verdict:
    """The run's verdict from the job's ``results.json`` and the test directories fetched.

    A test counts as run when it PASSed (or WARNed: Avocado's pass with a
    warning) and its files came back, or when it CANCELled with a reason
    (what it lacked).  Anything else fails the run, unlike Avocado's exit
    status: a SKIP (the spawner's word for a test it could not start), an
    INTERRUPTED, a CANCEL without a reason, a job with no tests at all.

    :param fetched: the names (``<job>/test-results/<name>``) of the test
        directories brought back from the hosts.
    """
    verdict = Verdict()
    tests = results.get("tests") if results is not None else None
    if not isinstance(tests, list):
        verdict.problems.append("the job wrote no readable results.json")
        return verdict
    if not tests:
        verdict.problems.append("the job ran no test: no reference matched")
    for test in tests:
        status = str(test.get("status"))
        name = Path(str(test.get("logdir", ""))).name
        reason = str(test.get("fail_reason") or "").strip()
        verdict.counts[status] = verdict.counts.get(status, 0) + 1
        ident = test.get("id", name)
        if status in PASSED and name not in fetched:
            verdict.problems.append(f"{ident}: {status}, but its files did not come back")
        elif status == "CANCEL" and not reason:
            verdict.problems.append(f"{ident}: CANCEL without a reason")
        elif status not in PASSED and status != "CANCEL":
            verdict.problems.append(f"{ident}: {status}" + (f": {reason}" if reason else ""))
    return verdict


if __name__ == "__main__":
    sys.exit(task_main(sys.argv[1:]))
