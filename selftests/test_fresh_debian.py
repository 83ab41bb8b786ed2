"""scripts/fresh-debian's pieces: the commands it runs, what it carries into
the root, and that it leaves nothing mounted or running.  The whole run (a
debootstrap and both README commands) takes minutes and is not run here."""

from __future__ import annotations

import importlib
import os
import signal
import time
import warnings
from pathlib import Path

import pytest
from conftest import ROOT, load_script

from migtest.wait import wait_for

fresh = load_script("fresh-debian")
# What it shares with qemu-versions; loading it put scripts/ on sys.path.
roots = importlib.import_module("debian_roots")

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="mounting needs root")


def test_runs_the_readme_commands_in_order() -> None:
    readme = (ROOT / "README.rst").read_text()
    assert fresh.readme_commands(readme) == ["make run", "make check"]


def test_a_readme_without_commands_is_refused() -> None:
    with pytest.raises(ValueError, match=r"no '\.\. code-block:: sh' block"):
        fresh.readme_commands("Title\n=====\n\nNo commands here.\n")
    with pytest.raises(ValueError, match="holds no command"):
        fresh.readme_commands(".. code-block:: sh\n\n    # only a comment\n\nText\n")


DEB822 = """\
Types: deb
URIs: http://mirror.example/debian-security
Suites: bookworm-security

Types: deb
URIs: http://mirror.example/debian/
Suites: bookworm bookworm-updates
"""


def test_mirror_is_the_hosts_first_non_security_one() -> None:
    assert roots.mirror_from_sources(DEB822) == "http://mirror.example/debian"
    one_line = "deb [arch=amd64] http://other.example/debian bookworm main\n"
    assert roots.mirror_from_sources(one_line) == "http://other.example/debian"
    assert roots.mirror_from_sources("# nothing\n") is None


def test_only_registry_settings_go_into_the_environment() -> None:
    env = fresh.passed_environment(
        {"PIP_FIND_LINKS": "/opt/wheels", "https_proxy": "http://p:3128",
         "VIRTUAL_ENV": "/x", "PYENV_VERSION": "3.11", "PATH": "/root/.pyenv/shims"}
    )  # fmt: skip
    assert env["PIP_FIND_LINKS"] == "/opt/wheels"
    assert env["https_proxy"] == "http://p:3128"
    assert "VIRTUAL_ENV" not in env and "PYENV_VERSION" not in env
    assert ".pyenv" not in env["PATH"] and env["HOME"] == "/root"


def test_mounts_under_a_root_are_found_and_only_those(tmp_path: Path) -> None:
    mounts = (
        f"proc {tmp_path}/r/proc proc rw 0 0\n"
        f"udev {tmp_path}/r/dev devtmpfs rw 0 0\n"
        f"tmpfs {tmp_path}/r2 tmpfs rw 0 0\n"
    )
    assert roots.mounts_under(tmp_path / "r", mounts) == [f"{tmp_path}/r/proc", f"{tmp_path}/r/dev"]


@needs_root
def test_a_root_with_a_mount_left_is_not_removed(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "dev").mkdir(parents=True)
    os.system(f"mount -t tmpfs none {root / 'dev'}")
    try:
        (root / "dev" / "precious").write_text("the host's")
        fresh.remove_root(root)
        assert (root / "dev" / "precious").exists()
    finally:
        os.system(f"umount {root / 'dev'}")
    fresh.remove_root(root)
    assert not root.exists()


@needs_root
def test_mounts_and_processes_are_gone_after_the_root_was_used(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    with fresh.mounted(root):
        assert (root / "proc" / "self").exists()
        assert (root / "dev" / "null").exists()
        with warnings.catch_warnings():
            # The child takes no lock: it changes its root, sleeps, is killed.
            warnings.simplefilter("ignore", DeprecationWarning)
            child = os.fork()
        if child == 0:  # a process of the root, as the README commands start
            os.chroot(root)
            time.sleep(60)
            os._exit(0)
        wait_for(lambda: (child in fresh.processes_in(root), None), what="chroot", timeout=10)
    assert roots.mounts_under(root, Path("/proc/self/mounts").read_text()) == []
    _, status = os.waitpid(child, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL


def test_report_names_each_command_with_its_verdict_and_time() -> None:
    outcomes = [fresh.Outcome("make run", 61.2, 0), fresh.Outcome("make check", 300.7, 2)]
    text = fresh.report("trixie", "Python 3.13.5", "QEMU 10.0.13", outcomes)
    assert text.splitlines() == [
        "Debian 13 (trixie), Python 3.13.5, QEMU 10.0.13:",
        "  make run     passed in 61 s",
        "  make check   FAILED (exit 2) in 301 s",
    ]


def test_registry_files_are_pip_apt_fetch_settings_and_local_cas(tmp_path: Path) -> None:
    apt, cas = tmp_path / "apt.conf.d", tmp_path / "cas"
    apt.mkdir(), cas.mkdir()
    (apt / "99proxy").write_text('Acquire::http::Proxy "http://p:3128";\n')
    (apt / "docker-clean").write_text('DPkg::Post-Invoke { "rm -f /var/cache/apt/*.bin"; };\n')
    (cas / "site.crt").write_text("-----BEGIN CERTIFICATE-----\n")
    saved = fresh.APT_CONF_DIR, fresh.LOCAL_CAS, fresh.PIP_CONFIGS
    fresh.APT_CONF_DIR, fresh.LOCAL_CAS, fresh.PIP_CONFIGS = apt, cas, ()
    try:
        assert fresh.registry_files() == [cas / "site.crt", apt / "99proxy"]
    finally:
        fresh.APT_CONF_DIR, fresh.LOCAL_CAS, fresh.PIP_CONFIGS = saved
