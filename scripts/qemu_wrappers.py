"""The ``bin/`` of a QEMU version: wrappers into its Debian root, or links to the host's.

A fetched root is never installed into the host, so its QEMU cannot be run
as it is: each ``qemu-system-<arch>`` of the version's ``bin/`` is a
script that starts it with the root's own loader, libraries, modules and
firmware.  Those wrappers are what the suite runs, so they are checked
(version, machine types, CPU models, no library of the host's) before a
root counts as fetched; a version the host has installed is linked
instead.  ``scripts/qemu-versions`` decides which, and puts ``lib`` on
``sys.path`` before importing this module.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Tuple

from debian_roots import build_atomically

from migtest.arch import PROFILES
from migtest.host import cpu_models, machine_listing
from migtest.versions import ARCHES, QemuVersion

#: Where in a root QEMU's firmware may be: each one found becomes a ``-L``,
#: searched before QEMU's built-in paths, which are the host's.
FIRMWARE_DIRS = ("usr/share/qemu", "usr/share/seabios", "usr/lib/ipxe/qemu")
#: Seconds a QEMU binary gets to print its version.
PROBE_TIMEOUT = 60.0
#: How QEMU states its version: ``QEMU emulator version 10.0.13 (Debian 1:10.0.13+ds-0+deb13u1)``.
_VERSION = re.compile(r"QEMU emulator version (\S+)(?: \((.*)\))?")


class FetchError(Exception):
    """A version could not be made available; the message says why and what to do."""


# -- a fetched root's wrappers ------------------------------------------------


def elf_interpreter(header: bytes) -> str:
    """The program interpreter (``PT_INTERP``) of a 64-bit ELF executable.

    That is the loader the binary was built for, in its own release: the
    one its wrapper must start it with.

    :param header: the start of the file, up to the end of the interpreter's name.
    :raise ValueError: not a 64-bit ELF executable with an interpreter.
    """
    if header[:4] != b"\x7fELF" or header[4] != 2:
        raise ValueError("not a 64-bit ELF file")
    endian = "<" if header[5] == 1 else ">"
    (phoff,) = struct.unpack_from(endian + "Q", header, 0x20)
    phentsize, phnum = struct.unpack_from(endian + "HH", header, 0x36)
    for index in range(phnum):
        entry = phoff + index * phentsize
        (kind,) = struct.unpack_from(endian + "I", header, entry)
        if kind == 3:  # PT_INTERP
            offset, _, _, size = struct.unpack_from(endian + "QQQQ", header, entry + 8)
            return header[offset : offset + size].rstrip(b"\0").decode()
    raise ValueError("no program interpreter")


@dataclass(frozen=True)
class RootLayout:
    """Where, in one Debian root, the pieces a wrapper names are."""

    root: Path
    #: The dynamic loader, as the root's QEMU names it (``/lib64/ld-linux-x86-64.so.2``).
    loader: str
    #: The multiarch directory of the root's libraries (``x86_64-linux-gnu``).
    triplet: str
    #: The firmware directories the root has, relative to it.
    firmware: Tuple[str, ...]

    @classmethod
    def find(cls, root: Path) -> RootLayout:
        """Read the layout from the root's QEMU and directories.

        :raise FetchError: the root has no QEMU, or no module directory.
        """
        binaries = sorted((root / "usr/bin").glob("qemu-system-*"))
        if not binaries:
            raise FetchError(f"{root} has no qemu-system-* in usr/bin")
        with binaries[0].open("rb") as file:
            loader = elf_interpreter(file.read(65536))
        # usr/lib/<triplet>/qemu/<module>.so
        triplets = sorted({path.parent.parent.name for path in root.glob("usr/lib/*/qemu/*.so")})
        if not triplets:
            raise FetchError(f"{root} has no QEMU module directory (usr/lib/<triplet>/qemu)")
        firmware = tuple(path for path in FIRMWARE_DIRS if (root / path).is_dir())
        return cls(root, loader, triplets[0], firmware)

    def at(self, root: Path) -> RootLayout:
        """The same layout once the root is moved to ``root``."""
        return RootLayout(root, self.loader, self.triplet, self.firmware)

    @property
    def module_dir(self) -> Path:
        """Where QEMU's loadable modules are."""
        return self.root / "usr/lib" / self.triplet / "qemu"

    def loader_command(self) -> List[str]:
        """The root's loader, told to use the root's libraries only.

        ``--library-path`` comes first in the search; ``--inhibit-cache``
        keeps the host's ``ld.so.cache`` out of it.
        """
        libraries = ":".join(str(self.root / d / self.triplet) for d in ("lib", "usr/lib"))
        return [str(self.root / self.loader.lstrip("/")), "--inhibit-cache",
                "--library-path", libraries]  # fmt: skip

    def wrapper(self, binary: str, title: str) -> str:
        """A shell script that runs the root's ``binary`` like an installed QEMU.

        The root's loader starts it with the root's libraries, QEMU loads
        its modules from the root, and finds its firmware and data there
        before its built-in paths, which are the host's.
        """
        command = [*self.loader_command(), str(self.root / "usr/bin" / binary)]
        for directory in self.firmware:
            command += ["-L", str(self.root / directory)]
        return (
            "#!/bin/sh\n"
            f"# {title}, made by scripts/qemu-versions:\n"
            "# run with the loader, libraries, modules and firmware of its own root.\n"
            f"export QEMU_MODULE_DIR={shlex.quote(str(self.module_dir))}\n"
            f'exec {shlex.join(command)} "$@"\n'
        )

    def foreign_libraries(self) -> List[str]:
        """The libraries the root's QEMU and modules would take from the host.

        The loader falls back on the host's directories for a library the
        root lacks; a wrapper would still run, on a mix of two releases.

        :return: ``library => path (for object)`` for each, the path may be ``not found``.
        """
        objects = [*(self.root / "usr/bin").glob("qemu-system-*"), *self.module_dir.glob("*.so")]
        foreign = []
        for path in objects:
            result = subprocess.run(
                [*self.loader_command(), "--list", str(path)], capture_output=True, text=True,
                timeout=PROBE_TIMEOUT, stdin=subprocess.DEVNULL, check=False,
            )  # fmt: skip
            for line in result.stdout.splitlines():
                name, arrow, target = line.strip().partition(" => ")
                if arrow and not target.startswith(f"{self.root}/"):
                    foreign.append(f"{name} => {target.split(' (')[0]} (for {path.name})")
        return foreign


def write_wrappers(bin_dir: Path, layout: RootLayout, title: str) -> None:
    """One executable wrapper per architecture in ``bin_dir``, each replaced atomically."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    for arch in ARCHES:
        binary = PROFILES[arch].binary
        temporary = bin_dir / f".{binary}.new"
        temporary.write_text(layout.wrapper(binary, title))
        temporary.chmod(0o755)
        os.replace(temporary, bin_dir / binary)


def qemu_version_of(binary: str) -> Optional[Tuple[str, str]]:
    """QEMU's version and its package's (``10.0.13``, ``Debian 1:10.0.13+ds-0+deb13u1``)."""
    try:
        result = subprocess.run(
            [binary, "--version"],
            capture_output=True,
            text=True,
            timeout=PROBE_TIMEOUT,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = _VERSION.search(result.stdout)
    return (match.group(1), match.group(2) or "") if match else None


def check_wrappers(bin_dir: Path, version: QemuVersion) -> None:
    """Make sure each wrapper is QEMU ``version`` and knows what the suite runs.

    ``--version``, ``-machine help`` and ``-cpu help`` are what the suite
    asks a binary first; a wrapper that cannot answer them is no use.

    :raise FetchError: one cannot.
    """
    for arch in ARCHES:
        profile, binary = PROFILES[arch], str(bin_dir / PROFILES[arch].binary)
        found = qemu_version_of(binary)
        if found is None or not version.matches(found[0]):
            raise FetchError(f"{binary} --version says {found}, not QEMU {version.label}")
        listing = machine_listing(binary)
        if listing is None or listing.resolve(profile.machine_type) is None:
            raise FetchError(f"{binary} -machine help does not list '{profile.machine_type}'")
        if profile.cpus["tcg"] not in cpu_models(binary):
            raise FetchError(f"{binary} -cpu help does not list '{profile.cpus['tcg']}'")


def title_of(version: QemuVersion) -> str:
    """How a wrapper's comment names its QEMU."""
    return f"QEMU {version.label} from Debian {'+'.join(version.suites)}"


def install_wrappers(version: QemuVersion, directory: Path, final: Path) -> None:
    """Write ``directory/bin`` for the root in ``directory/root``, checked.

    The wrappers are checked where the root is, then pointed at where it
    will be (``final``): a rename that is atomic is all that may follow.

    :raise FetchError: the root's QEMU is not ``version``, misses what the
        suite runs, or would load a library of the host's.
    """
    layout = RootLayout.find(directory / "root")
    write_wrappers(directory / "bin", layout, title_of(version))
    check_wrappers(directory / "bin", version)
    foreign = layout.foreign_libraries()
    if foreign:
        raise FetchError(f"the root lacks libraries its QEMU needs: {'; '.join(foreign[:5])}")
    write_wrappers(directory / "bin", layout.at(final / "root"), title_of(version))


# -- the host's QEMU, and what is here ----------------------------------------


def host_binaries(version: QemuVersion) -> Dict[str, str]:
    """The host's emulators, by architecture, that are QEMU ``version``.

    Every architecture of the suite's, those that fetched versions leave
    out too: what the host has costs nothing to link.
    """
    found: Dict[str, str] = {}
    for arch in PROFILES:
        binary = shutil.which(PROFILES[arch].binary)
        reported = qemu_version_of(binary) if binary else None
        if binary and reported and version.matches(reported[0]):
            found[arch] = os.path.realpath(binary)
    return found


def link_host(version: QemuVersion, target: Path, binaries: Mapping[str, str]) -> None:
    """Make ``target`` the version's directory with links to the host's emulators.

    Links that are right already stay: a rerun must not pull the binaries
    away from a job that runs them meanwhile.
    """
    wanted = {PROFILES[arch].binary: binary for arch, binary in binaries.items()}
    bin_dir = target / "bin"
    entries = list(bin_dir.iterdir()) if bin_dir.is_dir() else []
    present = {p.name: os.readlink(p) if p.is_symlink() else None for p in entries}

    def build(building: Path) -> None:
        (building / "bin").mkdir()
        for name, binary in wanted.items():
            (building / "bin" / name).symlink_to(binary)

    if present != wanted:
        build_atomically(target, build)
    missing = [PROFILES[arch].binary for arch in ARCHES if arch not in binaries]
    print(f"QEMU {version.label}: the host's, linked in {target / 'bin'}")
    if missing:
        print(
            f"  the host lacks {', '.join(missing)}: install them with make qemu "
            "(scripts/install-qemu)"
        )


def state(label: str, cache: Path) -> str:
    """``host``, ``fetched``, ``partly`` or ``no``: how far ``label`` is here."""
    bin_dir = cache / label / "bin"
    wrappers = [bin_dir / PROFILES[arch].binary for arch in ARCHES]
    present = [path for path in wrappers if os.access(path, os.X_OK)]
    if not present:
        return "no"
    if len(present) < len(wrappers):
        return "partly"
    return "host" if all(path.is_symlink() for path in present) else "fetched"
