"""Hosts for ``scripts/remote-run``'s self-tests, made on this machine.

Each "host" is an sshd of its own, on a host key of its own, in a network
namespace and a mount namespace of its own: its ``/tmp``, ``/dev/shm`` and
``/run`` are private, so what a test writes there is on that host only, as
on a real remote machine, and the rest of the file system (the checkout and
its venv, at the same path) is shared.  The controller (Avocado and
``remote-run``) runs in one more network namespace; a veth pair joins it to
each host, with addresses chosen here that exist only inside these
namespaces.  No address of this machine's own network is used or reached.

The namespaces belong to processes (an ``unshare``'d ``sleep`` for the
controller, each host's sshd), not to names under ``/run/netns``: once
those processes end, the namespaces, their veth pairs and the hosts'
private mounts are gone with them, whatever happened before.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, List, Mapping, Optional, Sequence, Tuple

import pytest
from conftest import ROOT, as_in_a_terminal, load_script, qemu_or_skip

from migtest.errors import WaitTimeout
from migtest.remote import Host, run_dir, setup_hook, slot_login
from migtest.wait import wait_for

#: One LAN, a bridge in the controller's namespace: the controller is
#: ``CONTROLLER``, host ``i`` (from 1) is ``HOST.format(i + 1)``.  These
#: addresses exist only inside the lab's namespaces.
CONTROLLER = "10.213.0.1"
HOST = "10.213.0.{}"
PREFIX = 24
BRIDGE = "mtbr"
#: How long a namespace's process or an sshd may take to come up.
START_TIMEOUT = 20.0
SSHD = "/usr/sbin/sshd"

#: Run by ``unshare`` as a host: private mounts, loopback up, then sshd in
#: the foreground, so that its PID is the host's (``sh`` execs it).
HOST_SCRIPT = """set -e
mount -t tmpfs -o mode=1777 tmpfs /tmp
mount -t tmpfs -o mode=1777 tmpfs /dev/shm
mount -t tmpfs -o mode=755 tmpfs /run
mkdir -m 755 /run/sshd
{hide}
ip link set lo up
exec {sshd} -D -e -f {config}
"""

SSHD_CONFIG = """Port 22
ListenAddress 0.0.0.0
HostKey {host_key}
AuthorizedKeysFile {authorized}
UsePAM no
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
PidFile none
# The lab's files are under /var/tmp, world-writable: StrictModes would refuse them.
StrictModes no
"""


def missing_tools() -> Optional[str]:
    """Why the lab cannot be made here, or None."""
    if os.geteuid() != 0:
        return "needs root (network and mount namespaces, sshd)"
    for tool in (SSHD, "ssh", "ssh-keygen", "unshare", "nsenter", "ip"):
        if shutil.which(tool) is None:
            package = "openssh-server" if tool == SSHD else "its package"
            return f"{tool} is not installed ({package})"
    return None


def net_namespace(pid: int) -> str:
    """The network namespace of a process, as the kernel names it."""
    return os.readlink(f"/proc/{pid}/ns/net")


def run(argv: Sequence[str]) -> str:
    """Run a setup command; its failure is the lab's, with its output."""
    done = subprocess.run(list(argv), capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {done.returncode}: {done.stderr.strip()}")
    return done.stdout


@dataclass
class LabHost:
    """One host: its sshd's PID (the namespaces' owner) and its address."""

    index: int
    sshd: subprocess.Popen[bytes]
    net: str

    @property
    def address(self) -> str:
        return HOST.format(self.index + 1)


class Lab:
    """Controller and hosts, up in :meth:`start`, gone in :meth:`stop`.

    :param root: an empty directory of its own for keys, configurations
        and logs (outside ``/tmp``, which the hosts hide); removed by
        :meth:`stop`.
    :param hidden: by host number (from 1), directories that host does not
        see (an empty tmpfs over each): a host without the checkout's venv.
    """

    def __init__(self, root: Path, hosts: int, hidden: Mapping[int, Sequence[Path]]) -> None:
        self.root = root
        self.count = hosts
        self.hidden = hidden
        self.controller: Optional[subprocess.Popen[bytes]] = None
        self.controller_net = ""
        self.hosts: List[LabHost] = []
        self.client_key = root / "client"
        self.known_hosts = root / "known_hosts"
        self.hosts_file = root / "hosts"

    def start(self) -> None:
        """Keys, namespaces, sshds, links; then wait until each host answers ssh."""
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.client_key)])
        self.controller = subprocess.Popen(["unshare", "--net", "sleep", "infinity"])
        self.controller_net = self._entered(self.controller.pid)
        self._in_controller(["ip", "link", "set", "lo", "up"])
        self._in_controller(["ip", "link", "add", BRIDGE, "type", "bridge"])
        self._in_controller(["ip", "addr", "add", f"{CONTROLLER}/{PREFIX}", "dev", BRIDGE])
        self._in_controller(["ip", "link", "set", BRIDGE, "up"])
        known = []
        for index in range(1, self.count + 1):
            host = self._start_host(index)
            self.hosts.append(host)
            known.append(f"{host.address} {(self.root / f'host{index}.pub').read_text()}")
        self.known_hosts.write_text("".join(known))
        self.hosts_file.write_text(
            "".join(
                f"root@{host.address} identity={self.client_key} known_hosts={self.known_hosts}\n"
                for host in self.hosts
            )
        )
        for host in self.hosts:
            wait_for(
                lambda host=host: self._answers(host),  # type: ignore[misc]
                what=f"the sshd of lab host {host.address} to accept our key",
                timeout=START_TIMEOUT,
                interval=0.2,
            )

    def _start_host(self, index: int) -> LabHost:
        key = self.root / f"host{index}"
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)])
        config = self.root / f"sshd{index}.conf"
        config.write_text(SSHD_CONFIG.format(host_key=key, authorized=f"{self.client_key}.pub"))
        hide = "\n".join(f"mount -t tmpfs tmpfs {p}" for p in self.hidden.get(index, ()))
        script = HOST_SCRIPT.format(sshd=SSHD, config=config, hide=hide)
        with open(self.root / f"sshd{index}.log", "wb") as log:
            sshd = subprocess.Popen(
                ["unshare", "--net", "--mount", "--propagation", "private", "sh", "-c", script],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        net = self._entered(sshd.pid)
        host = LabHost(index, sshd, net)
        ctl, peer = f"mtc{index}", f"mth{index}"
        run(
            [
                "ip",
                "link",
                "add",
                ctl,
                "netns",
                str(self.controller_pid),
                "type",
                "veth",
                "peer",
                "name",
                peer,
                "netns",
                str(sshd.pid),
            ]
        )
        self._in_controller(["ip", "link", "set", ctl, "master", BRIDGE, "up"])
        run(
            [
                "nsenter",
                f"--net=/proc/{sshd.pid}/ns/net",
                "ip",
                "addr",
                "add",
                f"{host.address}/{PREFIX}",
                "dev",
                peer,
            ]
        )
        run(["nsenter", f"--net=/proc/{sshd.pid}/ns/net", "ip", "link", "set", peer, "up"])
        return host

    @property
    def controller_pid(self) -> int:
        assert self.controller is not None, "the lab is not started"
        return self.controller.pid

    def _entered(self, pid: int) -> str:
        """Wait until ``unshare`` (``pid``) is in its new namespace."""
        ours = net_namespace(os.getpid())

        def moved() -> Tuple[bool, str]:
            seen = net_namespace(pid)
            return seen != ours, seen

        return wait_for(moved, what=f"unshare {pid} to enter its namespace", timeout=START_TIMEOUT)

    def _in_controller(self, argv: Sequence[str]) -> str:
        return run(self.controller_command(argv))

    def controller_command(self, argv: Sequence[str]) -> List[str]:
        """``argv`` as run in the controller's network namespace."""
        return ["nsenter", f"--net=/proc/{self.controller_pid}/ns/net", "--", *argv]

    def ssh_command(self, host: LabHost, remote: str) -> List[str]:
        """A one-shot ssh to ``host`` from the controller, on the lab's key."""
        return self.controller_command(
            [
                "ssh",
                "-o",
                "BatchMode=yes",
                "-o",
                f"UserKnownHostsFile={self.known_hosts}",
                "-o",
                "StrictHostKeyChecking=yes",
                "-i",
                str(self.client_key),
                f"root@{host.address}",
                remote,
            ]
        )

    def _answers(self, host: LabHost) -> Tuple[bool, str]:
        if host.sshd.poll() is not None:
            log = (self.root / f"sshd{host.index}.log").read_text()
            raise RuntimeError(f"sshd of lab host {host.index} exited: {log}")
        done = subprocess.run(
            self.ssh_command(host, "true"), capture_output=True, text=True, timeout=30
        )
        return done.returncode == 0, done.stderr.strip()

    def in_host(self, host: LabHost, argv: Sequence[str]) -> str:
        """Run ``argv`` in ``host``'s namespaces (to look at its private ``/tmp``)."""
        return run(["nsenter", f"--target={host.sshd.pid}", "--net", "--mount", "--", *argv])

    def processes_in(self, host: LabHost) -> List[str]:
        """Every process in ``host``'s network namespace but its listening sshd.

        After a job this must be empty: no sshd session (so no ssh client
        of ours is connected), no QEMU, no test runner left there.
        """
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == host.sshd.pid:
                continue
            with suppress(OSError):
                if os.readlink(entry / "ns/net") == host.net:
                    command = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
                    found.append(f"{entry.name}: {command.decode(errors='replace').strip()}")
        return found

    def stop(self) -> List[str]:
        """End every process of the lab, by PID, and remove its directory.

        :return: what was wrong on the way: processes of a host other than
            its sshd (see :meth:`processes_in`) or lab processes that had to
            be killed, each named.
        """
        problems = []
        for host in self.hosts:
            problems += [f"left in lab host {host.index}: {p}" for p in self.processes_in(host)]
        for process in [host.sshd for host in self.hosts] + [self.controller]:
            if process is None:
                continue
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                problems.append(f"lab process {process.pid} ignored SIGTERM: killed")
                process.kill()
                process.wait()
        # A namespace lives on while any process is in it: the hosts'
        # leftovers, if any, are killed by PID (they were listed above).
        for host in self.hosts:
            for line in self.processes_in(host):
                with suppress(ProcessLookupError):
                    os.kill(int(line.split(":")[0]), signal.SIGKILL)
        shutil.rmtree(self.root, ignore_errors=True)
        return problems

    def links_left(self) -> List[str]:
        """The lab's veth names still seen from this namespace (none expected)."""
        output = run(["ip", "-o", "link", "show"])
        return [line for line in output.splitlines() if " mtc" in line or " mth" in line]


def make_root() -> Path:
    """The lab's directory: under ``/var/tmp``, since the hosts hide ``/tmp``."""
    return Path(tempfile.mkdtemp(prefix="migtest-remote-lab-", dir="/var/tmp"))


def wait_gone(pid: int, timeout: float) -> None:
    """Wait until process ``pid`` no longer exists."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
        time.sleep(0.05)


# -- the self-tests: scripts/remote-run against the lab --

#: Opt-in: these need root, openssh-server and namespaces, and take minutes.
OPT_IN = "MIGTEST_REMOTE_SELFTEST"
pytestmark = pytest.mark.skipif(
    os.environ.get(OPT_IN) != "1",
    reason=f"opt-in: {OPT_IN}=1 (needs root, openssh-server, network and mount namespaces)",
)

#: Tests the lab hosts run: where each ran (its network namespace), one
#: that never runs, one that leaves a process behind, one that takes long.
TRIVIAL = """import os, subprocess, time
from avocado import Test, skip


class Remote(Test):
    def test_where(self):
        with open(os.path.join(self.outputdir, "where"), "w") as out:
            out.write(os.readlink("/proc/self/ns/net"))

    def test_where_too(self):
        self.test_where()

    @skip("a test that does not run")
    def test_skipped(self):
        pass

    def test_leaves_a_process(self):
        subprocess.Popen(["sleep", "600"], start_new_session=True)

    def test_slow(self):
        self.log.info("sleeping")
        time.sleep(300)
"""
REMOTE_RUN = ROOT / "scripts" / "remote-run"
#: The most one run of remote-run may take here.
RUN_TIMEOUT = 600.0
MIGRATION = "tests/migration/precopy.py:Precopy.test_unix"


@dataclass
class Setup:
    """The lab, its hosts files, the test file, and where results go."""

    lab: Lab
    good: Path  # hosts 1 and 2
    bad: Path  # host 1 and host 3, which lacks the checkout's venv
    tests: Path
    results: Path


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    reason = missing_tools()
    if reason:
        pytest.skip(reason)
    lab = Lab(make_root(), hosts=3, hidden={3: [ROOT / ".venv"]})
    try:
        lab.start()
        lines = lab.hosts_file.read_text().splitlines()
        good, bad = lab.root / "good", lab.root / "bad"
        good.write_text("\n".join(lines[:2]) + "\n")
        bad.write_text(f"{lines[0]}\n{lines[2]}\n")
        tests = lab.root / "remote_trivial.py"
        tests.write_text(TRIVIAL)
        # The controller's results are in its /tmp, which no host sees: what
        # reaches them came back through remote-run, not a shared disk.
        results = tmp_path_factory.mktemp("remote-results")
        yield Setup(lab, good, bad, tests, results)
    finally:
        nets = [host.net for host in lab.hosts] + [lab.controller_net]
        problems = lab.stop()
        assert problems == [], problems
        assert lab.links_left() == []
        assert not lab.root.exists()
        assert not [pid for pid in all_pids() if namespace_of(pid) in nets], "a namespace is left"


def all_pids() -> List[int]:
    return [int(entry.name) for entry in Path("/proc").iterdir() if entry.name.isdigit()]


def namespace_of(pid: int) -> str:
    with suppress(OSError):
        return net_namespace(pid)
    return ""


def local_temp() -> List[str]:
    """remote-run's temporary directories on this machine."""
    return sorted(str(p) for p in Path(tempfile.gettempdir()).glob("migtest-remote-*"))


def remote_run(setup: Setup, hosts: Path, *avocado: str) -> subprocess.CompletedProcess[str]:
    """scripts/remote-run in the controller's namespace; then check nothing is left."""
    before = local_temp()
    done = subprocess.run(
        setup.lab.controller_command(
            [
                sys.executable,
                str(REMOTE_RUN),
                "--results",
                str(setup.results),
                str(hosts),
                "--",
                *avocado,
            ]
        ),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
    )
    print(done.stdout, done.stderr)
    assert_nothing_left(setup, before)
    return done


def assert_nothing_left(setup: Setup, temp_before: List[str]) -> None:
    """No session, sshd child, test runner or QEMU on any host; no file of the run anywhere."""
    lab = setup.lab
    for host in lab.hosts:
        wait_for(
            lambda host=host: (not lab.processes_in(host), lab.processes_in(host)),  # type: ignore[misc]
            what=f"lab host {host.index} to run nothing but its sshd",
            timeout=20,
        )
        assert lab.in_host(host, ["find", "/tmp", "/dev/shm", "-mindepth", "1"]) == ""
        assert lab.in_host(host, ["sh", "-c", f"test ! -e {setup.results} && echo hidden"])
    key = str(lab.client_key).encode()
    clients = [pid for pid in all_pids() if key in _cmdline(pid)]
    assert clients == [], "an ssh client of the run is left"
    assert local_temp() == temp_before


def _cmdline(pid: int) -> bytes:
    with suppress(OSError):
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    return b""


def job_of(done: subprocess.CompletedProcess[str]) -> Path:
    """The job directory remote-run's Avocado printed."""
    match = re.search(r"^JOB LOG\s*: (\S+)/job\.log$", done.stdout, re.MULTILINE)
    assert match, done.stdout
    return Path(match[1])


def test_one_job_over_two_hosts_brings_every_tests_files_back(setup: Setup) -> None:
    done = remote_run(
        setup,
        setup.good,
        f"{setup.tests}:Remote.test_where$",
        f"{setup.tests}:Remote.test_where_too",
    )
    assert done.returncode == 0
    assert "remote-run: passed: PASS 2" in done.stderr
    where = sorted(p.read_text() for p in job_of(done).glob("test-results/*/data/where"))
    # Each test ran in a host's namespace, one on each host.
    assert where == sorted(host.net for host in setup.lab.hosts[:2])


def test_a_skip_fails_the_run_though_avocado_exits_0(setup: Setup) -> None:
    done = remote_run(
        setup, setup.good, f"{setup.tests}:Remote.test_where$", f"{setup.tests}:Remote.test_skipped"
    )
    assert "SKIP 1" in done.stdout  # Avocado's own line: it passed the job
    assert done.returncode == 1
    assert re.search(r"FAILED: .*test_skipped: SKIP", done.stderr)
    assert "FAILED: PASS 1, SKIP 1" in done.stderr


def test_a_process_a_test_leaves_on_a_host_is_killed_and_fails_the_run(setup: Setup) -> None:
    done = remote_run(setup, setup.good, f"{setup.tests}:Remote.test_leaves_a_process")
    assert done.returncode == 1
    assert re.search(r"FAILED: root@10\.213\.0\.\d:22: left \d+ sleep 600 +\(killed\)", done.stderr)


def test_a_host_that_fails_the_preflight_runs_nothing(setup: Setup) -> None:
    jobs = set(setup.results.glob("job-*"))
    done = remote_run(setup, setup.bad, f"{setup.tests}:Remote.test_where$")
    assert done.returncode == 2
    third = setup.lab.hosts[2].address
    assert f"{third}:22: {ROOT}/.venv cannot import this checkout's migtest" in done.stderr
    assert f"{setup.lab.hosts[0].address}:22: ready" in done.stderr
    assert set(setup.results.glob("job-*")) == jobs


def test_a_real_migration_on_a_host_comes_back_with_its_artifacts(setup: Setup) -> None:
    qemu_or_skip("x86_64")
    done = remote_run(setup, setup.good, MIGRATION, "-p", "arch=x86_64", "-p", "accel=tcg")
    assert done.returncode == 0
    job = job_of(done)
    (test,) = job.glob("test-results/1-*")
    for name in (
        "data/migration.json",
        "data/migration.svg",
        "data/src-console.log",
        "data/dst-console.log",
        "qmp.log",
        "debug.log",
    ):
        assert (test / name).stat().st_size > 0, name
    assert (test / "data" / "src.log").exists() and (test / "data" / "dst.log").exists()
    assert json.loads((test / "data" / "migration.json").read_text())
    assert "migration.svg" in (job / "migration-report.html").read_text()


def test_ctrl_c_stops_the_job_and_still_cleans_up(setup: Setup) -> None:
    before = local_temp()
    command = setup.lab.controller_command(
        [
            sys.executable,
            str(REMOTE_RUN),
            "--results",
            str(setup.results),
            str(setup.good),
            "--",
            f"{setup.tests}:Remote.test_slow",
        ]
    )
    with subprocess.Popen(
        command,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=as_in_a_terminal,
    ) as proc:
        assert proc.stdout is not None
        seen = []
        deadline = time.monotonic() + RUN_TIMEOUT
        for line in proc.stdout:  # Avocado's own line for a test that started
            seen.append(line)
            if "test_slow: STARTED" in line or time.monotonic() > deadline:
                break
        assert "test_slow: STARTED" in seen[-1], "".join(seen)
        proc.send_signal(signal.SIGINT)
        out = "".join(seen) + proc.stdout.read()
        status = proc.wait(RUN_TIMEOUT)
    print(out)
    assert status == 1
    assert "interrupted: stopping the job" in out
    assert "FAILED: the job was stopped before it ended" in out
    assert_nothing_left(setup, before)


def test_the_plain_spawner_skips_with_0_and_leaves_sessions_which_the_checks_see(
    setup: Setup, tmp_path: Path
) -> None:
    """What remote-run is for, and that the checks above can fail.

    Avocado with the spawner alone, on one of our slots, with its default
    status server (a UNIX socket, in this side's /tmp): the host's test
    cannot report, the job says SKIP and exits 0, and its session stays.
    """
    script = load_script("remote-run")
    host = Host(
        "root",
        setup.lab.hosts[0].address,
        identity=setup.lab.client_key,
        known_hosts=setup.lab.known_hosts,
    )
    control = tmp_path / "s0"
    (tmp_path / "slot0.json").write_text(json.dumps(slot_login(host, control, 60.0)))
    config = tmp_path / "avocado.conf"
    config.write_text(
        f"[run]\nspawner = remote\nmax_parallel_tasks = 1\n[spawner.remote]\n"
        f'slots = ["{tmp_path / "slot0.json"}"]\n'
        f"setup_hook = {setup_hook(ROOT, 'plain', {})}\n"
    )
    (tmp_path / "tmp").mkdir()
    avocado = Path(sys.executable).parent / "avocado"
    env = dict(
        os.environ, TMPDIR=str(tmp_path / "tmp"), PATH=f"{avocado.parent}:{os.environ['PATH']}"
    )
    before = local_temp()
    done = subprocess.run(
        setup.lab.controller_command(
            [
                str(avocado),
                "--config",
                str(config),
                "run",
                "--job-results-dir",
                str(setup.results),
                f"{setup.tests}:Remote.test_where$",
            ]
        ),
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
    )
    print(done.stdout, done.stderr)
    try:
        assert done.returncode == 0 and "SKIP 1" in done.stdout
        with pytest.raises(WaitTimeout) as raised:
            assert_nothing_left(setup, before)
        assert "sshd: root@" in str(raised.value)
    finally:
        assert script.close_sessions({control: host}, None, f"TMPDIR={tmp_path / 'tmp'}") == []
        setup.lab.in_host(setup.lab.hosts[0], ["rm", "-r", run_dir("plain")])
    assert_nothing_left(setup, before)
