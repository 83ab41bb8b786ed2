"""The QEMU versions Debian ships, and where ``scripts/qemu-versions`` puts them.

One table, :data:`VERSIONS`, says for each version which Debian suites
give it and which packages hold the emulators of the suite's
architectures.  ``scripts/qemu-versions`` fetches from it, the
``qemu_version``, ``qemu_version_src`` and ``qemu_version_dst`` parameters
resolve through it (:func:`binary_for`), and
``tests/migration/variants/versions.yaml`` pairs its labels.

A label is QEMU's own version number, as far as Debian's archive tells
versions apart: ``7.2`` is whatever 7.2.x bookworm has (7.2.22 when this
was written), ``10.0.13`` and ``10.0.2`` are two different 10.0 releases.
Each version lives in ``<cache>/<label>/``: ``bin/qemu-system-<arch>``,
which runs like any ``qemu-system-<arch>``, and for a fetched version the
Debian root its wrappers run QEMU from (``root/``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Tuple

from .arch import PROFILES
from .errors import ConfigError, Unavailable

#: Environment variable naming the cache of QEMU versions, instead of
#: :data:`DEFAULT_CACHE`: one cache for several users, or a bigger disk.
ENV_CACHE = "MIGTEST_QEMU_CACHE"
#: Where the versions go by default (``~`` is the user's home).
DEFAULT_CACHE = "~/.cache/migtest/qemu"
#: What makes the versions appear, for messages.
FETCH_COMMAND = "make qemu-versions"
#: The suite's architectures whose emulators fetched versions leave out,
#: and why (the host's own version links whatever the host has).
NOT_FETCHED: Mapping[str, str] = {
    "loongarch64": "only Debian's qemu-system-misc has it (about 40 MB to download and "
    "170 MB more per version, for one architecture), which make qemu-versions does not fetch",
}
#: The architectures each fetched version provides an emulator for.
ARCHES: Tuple[str, ...] = tuple(arch for arch in PROFILES if arch not in NOT_FETCHED)

#: The packages of the emulators of :data:`ARCHES` up to QEMU 9.0, whose
#: ``qemu-system-misc`` has s390x and riscv64 among its many emulators (it
#: costs 46 MB to download, 208 MB installed: the host's 7.2 has it
#: anyway, and no other version of the table needs it).  ``seabios`` is
#: named for clarity: x86_64's firmware, which ``qemu-system-x86`` depends
#: on anyway; ppc64's and s390x's is in ``qemu-system-data``, a dependency
#: of all of them.
_MISC_PACKAGES = ("qemu-system-x86", "qemu-system-arm", "qemu-system-ppc", "qemu-system-misc",
                  "seabios")  # fmt: skip
#: The same from QEMU 9.1 on, when Debian moved s390x and riscv into
#: packages of their own (11.x's ``qemu-system-misc`` no longer even depends
#: on them).  ``qemu-system-riscv`` (with ``opensbi``, which the guest does
#: not use) adds about 8 MB of downloads and 36 MB to a root, within the
#: noise of a fetch's minute (measured for 10.0.13 and 11.1.3).
_SPLIT_PACKAGES = ("qemu-system-x86", "qemu-system-arm", "qemu-system-ppc", "qemu-system-s390x",
                   "qemu-system-riscv", "seabios")  # fmt: skip


@dataclass(frozen=True)
class QemuVersion:
    """One QEMU version of Debian's archive, and how to get it."""

    #: QEMU's version number (as precise as Debian's suites differ):
    #: the value of the ``qemu_version*`` parameters.
    label: str
    #: The Debian suites its root is made of, the one QEMU comes from first
    #: (a backports suite needs the release it extends in the same root).
    suites: Tuple[str, ...]
    #: The packages that hold the emulators of :data:`ARCHES` and their
    #: firmware; their dependencies come with them, recommendations do not.
    packages: Tuple[str, ...]
    #: debootstrap's script for the root when the first suite has none of
    #: its own: backports suites, and releases newer than this debootstrap.
    script: Optional[str] = None

    @property
    def suite(self) -> str:
        """The suite QEMU comes from."""
        return self.suites[0]

    @property
    def number(self) -> Tuple[int, ...]:
        """The label as numbers, to order versions: 10.0.2 comes before 10.0.13."""
        return tuple(int(part) for part in self.label.split("."))

    def matches(self, upstream: str) -> bool:
        """Whether a QEMU reporting version ``upstream`` (``--version``) is this one."""
        return upstream == self.label or upstream.startswith(self.label + ".")


#: Every QEMU version in Debian's archive that runs on Debian 12 or 13,
#: Every QEMU version in Debian's archive for Debian 12 and later, oldest
#: first (as the archive had them in 2026-12; ``scripts/qemu-versions``
#: refuses to fetch a label the archive no longer matches).  sid has 11.1.3
#: too: trixie-backports gives it with trixie's libraries instead.
VERSIONS: Mapping[str, QemuVersion] = {
    version.label: version
    for version in (
        QemuVersion("7.2", ("bookworm",), _MISC_PACKAGES),
        QemuVersion("10.0.2", ("bookworm-backports", "bookworm"), _SPLIT_PACKAGES, "bookworm"),
        QemuVersion("10.0.13", ("trixie",), _SPLIT_PACKAGES),
        QemuVersion("11.1.2", ("forky",), _SPLIT_PACKAGES, "sid"),
        QemuVersion("11.1.3", ("trixie-backports", "trixie"), _SPLIT_PACKAGES, "trixie"),
    )
}
#: The labels, oldest version first.
LABELS: Tuple[str, ...] = tuple(VERSIONS)


def get_version(label: object, parameter: str = "qemu_version") -> QemuVersion:
    """The version a parameter names.

    :param parameter: the parameter that named it, for the error message.
    :raise ConfigError: no such version in :data:`VERSIONS`.
    """
    try:
        return VERSIONS[str(label)]
    except KeyError:
        raise ConfigError(
            parameter, label, f"one of {', '.join(LABELS)} (the QEMU versions Debian ships)"
        ) from None


def cross_pairs() -> List[Tuple[str, str]]:
    """Every (source, destination) pair of two different versions, both ways."""
    return [(src, dst) for src in LABELS for dst in LABELS if src != dst]


def cache_dir(environ: Mapping[str, str] = os.environ) -> Path:
    """Where the versions are: ``$MIGTEST_QEMU_CACHE``, else :data:`DEFAULT_CACHE`."""
    return Path(environ.get(ENV_CACHE) or os.path.expanduser(DEFAULT_CACHE))


def version_dir(label: str, environ: Mapping[str, str] = os.environ) -> Path:
    """The directory of one version: its wrappers, and its root if fetched."""
    return cache_dir(environ) / label


def wrapper_path(label: str, arch: str, environ: Mapping[str, str] = os.environ) -> Path:
    """Where the ``qemu-system-<arch>`` of version ``label`` is, or will be."""
    return version_dir(label, environ) / "bin" / f"qemu-system-{arch}"


def installed(label: str, environ: Mapping[str, str] = os.environ) -> Dict[str, bool]:
    """For each architecture, whether version ``label`` has its emulator here."""
    return {arch: os.access(wrapper_path(label, arch, environ), os.X_OK) for arch in ARCHES}


def binary_for(
    label: str,
    arch: str,
    environ: Mapping[str, str] = os.environ,
    parameter: str = "qemu_version",
) -> str:
    """The ``qemu-system-<arch>`` of QEMU version ``label``.

    :param parameter: the parameter that named the version, for messages.
    :raise ConfigError: ``label`` is not a known version.
    :raise Unavailable: it is known but was not fetched here, or (not
        expected, so a CANCEL even in strict mode) it was but has no
        emulator for ``arch`` by design (:data:`NOT_FETCHED`).
    """
    get_version(label, parameter)
    path = wrapper_path(label, arch, environ)
    if not os.access(path, os.X_OK) and arch in NOT_FETCHED:
        raise Unavailable(
            f"QEMU {label} has no qemu-system-{arch} here (no {path}): {NOT_FETCHED[arch]}",
            expected=False,
        )
    if not os.access(path, os.X_OK):
        raise Unavailable(f"QEMU {label} is not installed here (no {path}): run {FETCH_COMMAND}")
    return str(path)
