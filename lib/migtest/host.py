"""Facts about the host: which accelerator can work, where QEMU is."""

from __future__ import annotations

import functools
import os
import platform
import shutil
import subprocess
from typing import FrozenSet, Optional

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


#: Seconds a QEMU binary gets to list its machines or accelerators.
PROBE_TIMEOUT = 30.0


@functools.cache
def _listed(binary: str, option: str, header: str) -> Optional[FrozenSet[str]]:
    """The names ``binary <option> help`` lists, or ``None`` if it is not QEMU."""
    try:
        result = subprocess.run(
            [binary, option, "help"],
            capture_output=True,
            text=True,
            timeout=PROBE_TIMEOUT,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = result.stdout.splitlines()
    if result.returncode != 0 or not lines or not lines[0].startswith(header):
        return None
    return frozenset(line.split()[0] for line in lines[1:] if line.strip())


def check_binary(parameter: str, binary: str, profile: ArchProfile, accel: str) -> None:
    """Make sure ``binary`` is a QEMU that can run ``profile`` with ``accel``.

    Asking QEMU costs ~30 ms and turns what would be an obscure launch
    failure into a clear verdict.

    :raise ConfigError: ``binary`` is not a QEMU system emulator.
    :raise Unavailable: it lacks the machine type or the accelerator.
    """
    machines = _listed(binary, "-machine", "Supported machines are:")
    if machines is None:
        raise ConfigError(parameter, binary, f"a QEMU system emulator such as {profile.binary}")
    machine_type = profile.machine.split(",")[0]
    if machine_type not in machines:
        raise Unavailable(f"{binary} has no machine type '{machine_type}' for {profile.name}")
    accels = _listed(binary, "-accel", "Accelerators supported") or frozenset()
    if accel not in accels:
        raise Unavailable(f"{binary} lacks the {accel} accelerator (it has: {', '.join(accels)})")
