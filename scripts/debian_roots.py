"""Debian roots made with ``debootstrap``: shared by ``fresh-debian`` and ``qemu-versions``.

Both scripts need a Debian release in a directory of this host, reached
through the mirror this host's apt already uses, and kept in a cache where
a rerun must never mistake a half-made root for a finished one.  This
module is that common ground; what each script does with its root stays
in the script.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from contextlib import suppress
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Set

#: The mirror when this host's apt names none.
DEFAULT_MIRROR = "http://deb.debian.org/debian"
#: The host's files that say where apt fetches from, deb822 first.
APT_SOURCES = (Path("/etc/apt/sources.list.d/debian.sources"), Path("/etc/apt/sources.list"))
#: Where debootstrap's scripts are: suites newer than the host's debootstrap
#: have none, and are made with another suite's script (``sid``).
DEBOOTSTRAP_SCRIPTS = Path("/usr/share/debootstrap/scripts")
#: Seconds a debootstrap may take: a few minutes on a slow mirror.
DEBOOTSTRAP_TIMEOUT = 1800.0
#: Seconds an interrupted debootstrap gets to undo its mounts before it is killed.
STOP_GRACE = 60.0
#: How the temporary directory of a root in the making is named, next to its
#: final place: ``.NAME.partial-XXXX``.
PARTIAL = ".{name}.partial-"


def mirror_from_sources(text: str) -> Optional[str]:
    """The Debian mirror an apt sources file (deb822 or one-line) names first.

    Security and other suites of a different archive are passed over.
    """
    uris: List[str] = [
        *re.findall(r"^URIs:\s*(\S+)", text, re.MULTILINE),
        *re.findall(r"^deb\s+(?:\[[^]]*\]\s+)?(\S+)", text, re.MULTILINE),
    ]
    for uri in uris:
        if not uri.rstrip("/").endswith("-security"):
            return uri.rstrip("/")
    return None


def host_mirror() -> str:
    """The mirror this host's apt uses, so a root is reached the same way."""
    for path in APT_SOURCES:
        with suppress(OSError):
            mirror = mirror_from_sources(path.read_text())
            if mirror:
                return mirror
    return DEFAULT_MIRROR


def run(cmd: Sequence[str], **kwargs: object) -> None:
    """Run a host command, echoing it; a failure ends the script."""
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, **kwargs)  # type: ignore[call-overload]


def debootstrap_command(
    root: Path,
    suites: Sequence[str],
    include: Iterable[str],
    mirror: str,
    script: Optional[str] = None,
) -> List[str]:
    """The ``debootstrap`` command that makes a minimal root of ``suites``.

    debootstrap takes each package from the first suite that has it, and
    checks no version constraint, so the suite whose packages are wanted
    comes first: a backports suite before the release it extends.

    :param suites: the suites of the root, the one to take packages from first.
    :param script: debootstrap's script, named for a suite it has one for,
        when the first suite has none (a backports suite, or a release newer
        than this host's debootstrap).
    """
    command = ["debootstrap", "--variant=minbase"]
    packages = ",".join(include)
    if packages:
        command.append(f"--include={packages}")
    if len(suites) > 1:
        command.append(f"--extra-suites={','.join(suites[1:])}")
    command += [suites[0], str(root), mirror]
    if script is not None:
        command.append(str(DEBOOTSTRAP_SCRIPTS / script))
    return command


def run_logged(cmd: Sequence[str], log: Path, timeout: float = DEBOOTSTRAP_TIMEOUT) -> None:
    """Run a long command with its output in ``log``, stopped whatever ends us.

    It runs in a session of its own and, on a timeout, Ctrl-C or SIGTERM,
    its whole process group gets SIGTERM: debootstrap then unmounts what
    it mounted in the root.  If it has not ended :data:`STOP_GRACE` seconds
    later, SIGKILL.

    :raise subprocess.CalledProcessError: it failed.
    :raise subprocess.TimeoutExpired: it took longer than ``timeout``.
    """
    print("+", " ".join(cmd), f"(output: {log})", flush=True)
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as output:
        child = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        try:
            status = child.wait(timeout=timeout)
        except BaseException:
            _stop(child)
            raise
    if status != 0:
        raise subprocess.CalledProcessError(status, list(cmd))


def _stop(child: subprocess.Popen[bytes]) -> None:
    """End ``child`` and its group: SIGTERM, then SIGKILL after the grace."""
    for sig, grace in ((signal.SIGTERM, STOP_GRACE), (signal.SIGKILL, 10.0)):
        with suppress(ProcessLookupError):
            os.killpg(child.pid, sig)
        try:
            child.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            continue


def mounts_under(root: Path, mounts: str) -> List[str]:
    """The mount points at or below ``root`` in a ``/proc/self/mounts`` text."""
    top = str(root.resolve())
    points = [line.split()[1] for line in mounts.splitlines() if len(line.split()) > 1]
    return [p for p in points if p == top or p.startswith(top + "/")]


def remove_root(root: Path) -> bool:
    """Delete the root, unless something is still mounted in it.

    A bind of ``/dev`` left mounted would make the deletion delete the
    host's device nodes: then the root stays, and the message says why.

    :return: whether it is gone.
    """
    left = mounts_under(root, Path("/proc/self/mounts").read_text())
    if left:
        print(f"error: not removing {root}: still mounted there: {', '.join(left)}",
              file=sys.stderr)  # fmt: skip
        return False
    shutil.rmtree(root, ignore_errors=True)
    return not root.exists()


def partial_dirs(target: Path) -> List[Path]:
    """The unfinished builds of ``target`` that an interrupted run left next to it."""
    prefix = PARTIAL.format(name=target.name)
    if not target.parent.is_dir():
        return []
    return sorted(path for path in target.parent.iterdir() if path.name.startswith(prefix))


def build_atomically(target: Path, build: Callable[[Path], None]) -> Path:
    """Make ``target`` with ``build``, in a temporary directory renamed when complete.

    An interrupted or failed build leaves nothing at ``target``, so a rerun
    never takes half a root for a finished one; its temporary directory is
    removed (unless something is mounted in it, see :func:`remove_root`).

    :param build: fills the directory it is given; it may rely on that
        directory being on the same file system as ``target``.
    :return: ``target``.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix=PARTIAL.format(name=target.name), dir=target.parent))
    building.chmod(0o755)  # mkdtemp's 0700 would hide a shared cache from its other users
    try:
        build(building)
        if target.exists() and not remove_root(target):
            raise RuntimeError(f"cannot replace {target}: something is mounted in it")
        building.rename(target)
    finally:
        if building.exists():
            remove_root(building)
    return target


def parse_status(text: str) -> Dict[str, Dict[str, str]]:
    """The installed packages of a dpkg ``status`` file, each as its fields."""
    packages: Dict[str, Dict[str, str]] = {}
    for block in text.split("\n\n"):
        fields: Dict[str, str] = {}
        key = ""
        for line in block.splitlines():
            if line[:1].isspace() and key:
                fields[key] += " " + line.strip()
            elif ":" in line:
                key, _, value = line.partition(":")
                fields[key] = value.strip()
        if "Package" in fields and fields.get("Status", "").endswith(" installed"):
            packages[fields["Package"]] = fields
    return packages


def surplus_packages(status: str, wanted: Iterable[str]) -> List[str]:
    """The installed packages that neither ``wanted`` nor the base system need.

    debootstrap with ``--extra-suites`` gathers the dependencies of a
    package from every suite that has it, so a backports root also gets
    what the release's own, older version of QEMU depended on (a
    graphics stack, 200 MB).  What the installed versions need is the
    closure of their ``Depends`` and ``Pre-Depends`` from ``wanted``, the
    essential and required packages and apt.

    :param status: the root's ``var/lib/dpkg/status``.
    """
    installed = parse_status(status)
    providers: Dict[str, List[str]] = {}
    for name, fields in installed.items():
        for provided in filter(None, re.split(r",\s*", fields.get("Provides", ""))):
            providers.setdefault(provided.split()[0], []).append(name)
    base = [
        name
        for name, fields in installed.items()
        if fields.get("Essential") == "yes" or fields.get("Priority") == "required"
    ]
    needed: Set[str] = set()
    todo = [*wanted, *base, "apt"]
    while todo:
        name = todo.pop()
        package = name if name in installed else next(iter(providers.get(name, [])), None)
        if package is None or package in needed:
            continue
        needed.add(package)
        fields = installed[package]
        for relation in ("Pre-Depends", "Depends"):
            for dependency in filter(None, re.split(r",\s*", fields.get(relation, ""))):
                choices = [choice.split()[0].split(":")[0] for choice in dependency.split("|")]
                met = [choice for choice in choices if choice in installed or choice in providers]
                todo += met[:1]
    return sorted(set(installed) - needed)
