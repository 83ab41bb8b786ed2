"""Facts about the host: which accelerator can work, where QEMU is, what it has."""

from __future__ import annotations

import functools
import os
import platform
import re
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Dict, FrozenSet, List, Mapping, Optional, Sequence, Set, Tuple

from . import probe_store
from .arch import ArchProfile
from .errors import ConfigError, Unavailable

#: The values the ``accel`` parameter accepts.
ACCEL_CHOICES = ("auto", "tcg", "kvm")
#: The accelerator when no ``accel`` parameter says otherwise.
DEFAULT_ACCEL = "auto"

_KVM_DEVICE = "/dev/kvm"


def kvm_problem(profile: ArchProfile) -> Optional[str]:
    """Why KVM cannot run ``profile``'s guest here, or ``None`` if it can."""
    host = platform.machine()
    if host not in profile.kvm_hosts:
        return f"KVM cannot run {profile.name} guests on a {host} host"
    try:
        fd = os.open(_KVM_DEVICE, os.O_RDWR | os.O_CLOEXEC)
    except OSError as exc:
        return f"{_KVM_DEVICE} is not usable: {exc.strerror}"
    os.close(fd)
    return None


def resolve_accel(requested: str, profile: ArchProfile) -> str:
    """Turn the ``accel`` parameter into the accelerator to use.

    ``auto`` means KVM where it can run the guest, else TCG.

    :raise ConfigError: ``requested`` is not one of :data:`ACCEL_CHOICES`.
    :raise Unavailable: ``kvm`` was asked for and cannot work here.
    """
    if requested not in ACCEL_CHOICES:
        raise ConfigError("accel", requested, f"one of {', '.join(ACCEL_CHOICES)}")
    if requested == "tcg":
        return "tcg"
    problem = kvm_problem(profile)
    if problem is None:
        return "kvm"
    if requested == "kvm":
        raise Unavailable(f"accel=kvm requested, but {problem}")
    return "tcg"


def find_binary(parameter: str, value: str) -> str:
    """Resolve a QEMU binary given as a path or a name on PATH.

    :param parameter: the parameter that named it, for the error message.
    :raise Unavailable: it does not exist.
    :raise ConfigError: it exists but cannot be executed.
    """
    if os.sep in value:
        path: Optional[str] = value if os.path.exists(value) else None
    else:
        path = shutil.which(value) or (None if shutil.which(value, mode=os.F_OK) is None else value)
    if path is None:
        raise Unavailable(f"QEMU binary not found: {parameter}={value}")
    if os.path.isdir(path) or not os.access(path, os.X_OK):
        raise ConfigError(parameter, value, "an executable QEMU system emulator")
    return os.path.abspath(path) if os.sep in path else path


#: Seconds a QEMU binary gets to list its machines, CPUs or accelerators.
PROBE_TIMEOUT = 30.0

#: A versioned machine type ends in its QEMU version: ``pc-i440fx-7.2``.
_VERSIONED = re.compile(r"-(\d+)\.(\d+)$")
#: How ``-machine help`` marks an alias: ``pc  Standard PC ... (alias of pc-i440fx-7.2)``.
_ALIAS_OF = re.compile(r"\(alias of ([^\s)]+)\)")


#: What the suite asks every binary: its machine types, CPU models,
#: accelerators and object types.
PROBED_OPTIONS = ("-machine", "-cpu", "-accel", "-object")


def _probe(binary: str) -> None:
    """Ask ``binary`` all of :data:`PROBED_OPTIONS` at once, into :func:`_help`'s cache.

    Each answer is a QEMU start (50-120 ms); asked in parallel they cost
    what the slowest does, and every test asks them again in its own process.
    """
    with ThreadPoolExecutor(len(PROBED_OPTIONS)) as pool:
        list(pool.map(functools.partial(_help, binary), PROBED_OPTIONS))


class _NoAnswer(Exception):
    """The binary could not answer; not worth remembering (it may be a passing load)."""


@functools.cache
def _help(binary: str, option: str) -> Optional[Tuple[str, ...]]:
    """The lines ``binary <option> help`` prints, or ``None`` if it failed.

    Cached per binary and option: every test of a job asks the same
    questions of the same binaries, and each answer costs ~30 ms.  Other
    tests of the job read it from :mod:`~migtest.probe_store`.
    """

    def ask() -> List[str]:
        try:
            result = subprocess.run(
                [binary, option, "help"],
                capture_output=True,
                text=True,
                timeout=PROBE_TIMEOUT,
                stdin=subprocess.DEVNULL,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise _NoAnswer from exc
        if result.returncode != 0:
            raise _NoAnswer
        return result.stdout.splitlines()

    try:
        return tuple(probe_store.remembered(binary, f"{option} help", ask))
    except _NoAnswer:
        return None


def qmp_monitor_option(binary: str, chardev: str) -> List[str]:
    """The options that put a QMP monitor on ``chardev``, as ``binary`` wants them.

    QEMU 11.0 made monitors objects (``-object monitor-qmp``) and deprecated
    ``-mon``, which older versions need.  A binary that cannot say which
    it has gets ``-mon``: its error, if any, names the option.
    """
    types = _help(binary, "-object") or ()
    if any(line.strip() == "monitor-qmp" for line in types):
        return ["-object", f"monitor-qmp,id=mon-{chardev},chardev={chardev}"]
    return ["-mon", f"chardev={chardev},mode=control"]


@dataclass(frozen=True)
class MachineListing:
    """The machine types one QEMU binary knows, as ``-machine help`` lists them."""

    #: The binary that printed the listing, for messages.
    binary: str
    #: Every name ``-machine`` accepts, aliases included.
    names: FrozenSet[str]
    #: Each alias and the versioned type it stands for in this binary.
    aliases: Mapping[str, str]

    @classmethod
    def parse(cls, binary: str, lines: Sequence[str]) -> Optional[MachineListing]:
        """Read ``-machine help`` output; ``None`` if it is not QEMU's."""
        if not lines or not lines[0].startswith("Supported machines are:"):
            return None
        names: Set[str] = set()
        aliases: Dict[str, str] = {}
        for line in lines[1:]:
            if not line.strip():
                continue
            name = line.split()[0]
            names.add(name)
            alias_of = _ALIAS_OF.search(line)
            if alias_of:
                # QEMU 10.0 lists 'powernv' twice; the first is its alias.
                aliases.setdefault(name, alias_of.group(1))
        return cls(binary, frozenset(names), aliases)

    def resolve(self, name: str) -> Optional[str]:
        """The machine type ``name`` runs in this binary, or ``None`` if unknown."""
        if name in self.aliases:
            return self.aliases[name]
        return name if name in self.names else None


def machine_listing(binary: str) -> Optional[MachineListing]:
    """The machine types ``binary`` knows, or ``None`` if it is not QEMU."""
    return MachineListing.parse(binary, _help(binary, "-machine") or ())


def parse_cpu_models(lines: Sequence[str]) -> FrozenSet[str]:
    """The CPU model names in ``-cpu help`` output.

    The models come first, up to a blank line (feature flags follow).
    QEMU 7.2 starts x86, s390x and ppc lines with the architecture
    (``x86 qemu64``), unindented; later versions, and 7.2 on Arm, indent
    the bare name.
    """
    models: Set[str] = set()
    for line in lines:
        if not line.strip():
            if models:
                break
            continue
        words = line.split()
        if line.rstrip().endswith(":") and len(words) <= 2:
            continue  # "Available CPUs:"
        named = line[0].isspace() or len(words) == 1
        models.add(words[0] if named else words[1])
    return frozenset(models)


def cpu_models(binary: str) -> FrozenSet[str]:
    """The CPU models ``binary`` lists (empty if it cannot list them)."""
    return parse_cpu_models(_help(binary, "-cpu") or ())


def _version(machine_type: str) -> Optional[Tuple[int, int]]:
    match = _VERSIONED.search(machine_type)
    return (int(match.group(1)), int(match.group(2))) if match else None


def common_machine_type(alias: str, src: MachineListing, dst: MachineListing) -> str:
    """The versioned machine type that both binaries run for ``alias``.

    Each QEMU resolves an alias to its own newest type, and a type's
    devices and defaults change between versions, so two versions need a
    type both know, as QEMU's own migration tests choose it: the one both
    resolve to; else the older binary's type, which newer QEMUs keep for
    years; else the newer one's, if the older binary happens to know it.

    :raise Unavailable: a binary lacks ``alias``, or no type is common.
    """
    resolved: List[str] = []
    for listing in (src, dst):
        machine_type = listing.resolve(alias)
        if machine_type is None:
            raise Unavailable(f"{listing.binary} has no machine type '{alias}'")
        resolved.append(machine_type)
    src_type, dst_type = resolved
    if src_type == dst_type:
        return src_type
    candidates = [(src_type, dst), (dst_type, src)]
    src_version, dst_version = _version(src_type), _version(dst_type)
    if src_version and dst_version and dst_version < src_version:
        candidates.reverse()
    for machine_type, other in candidates:
        if machine_type in other.names:
            return machine_type
    raise Unavailable(
        f"no machine type for '{alias}' is common to {src.binary} (where it is "
        f"{src_type}) and {dst.binary} (where it is {dst_type}); pin one that both "
        f"list in -machine help with the 'machine' parameter"
    )


def check_machine_type(machine_type: str, listings: Sequence[MachineListing]) -> None:
    """Make sure every binary knows the machine type the ``machine`` parameter pins.

    :raise Unavailable: one of them does not.
    """
    for listing in listings:
        if machine_type not in listing.names:
            raise Unavailable(
                f"machine type '{machine_type}' (parameter 'machine') is unknown to "
                f"{listing.binary}: see its -machine help"
            )


#: The CPU model that passes the host's CPU through (KVM only).  Some targets
#: (ppc) register it only once KVM is running, so ``-cpu help`` may not list
#: it; whether KVM can run is checked on its own (:func:`resolve_accel`).
HOST_CPU = "host"


def check_cpu_model(cpu: str, binaries: Sequence[str], whose: str) -> None:
    """Make sure every binary has the CPU model of ``cpu`` (``model[,options]``).

    :param whose: where ``cpu`` came from, for the message: the ``cpu``
        parameter, or the profile that chose it.
    :raise Unavailable: one of them lacks the model.
    """
    model = cpu.split(",")[0]
    if model == HOST_CPU:
        return
    for binary in binaries:
        if model not in cpu_models(binary):
            raise Unavailable(
                f"CPU model '{model}' ({whose}) is unknown to {binary}: see its -cpu help"
            )


def check_binary(parameter: str, binary: str, profile: ArchProfile, accel: str) -> None:
    """Make sure ``binary`` is a QEMU that has the accelerator ``accel``.

    Asking QEMU costs ~30 ms and turns what would be an obscure launch
    failure into a clear verdict.

    :raise ConfigError: ``binary`` is not a QEMU system emulator.
    :raise Unavailable: it lacks the accelerator.
    """
    _probe(binary)
    if machine_listing(binary) is None:
        raise ConfigError(parameter, binary, f"a QEMU system emulator such as {profile.binary}")
    lines = _help(binary, "-accel") or ()
    accels = [line.strip() for line in lines[1:] if line.strip()]
    if not lines or not lines[0].startswith("Accelerators supported") or accel not in accels:
        raise Unavailable(f"{binary} lacks the {accel} accelerator (it has: {', '.join(accels)})")
