"""Facts about the host: which accelerator can work, where QEMU is."""

from __future__ import annotations

import os
import platform
import shutil
from typing import Optional

from .arch import ArchProfile
from .errors import ConfigError, Unavailable

#: The values the ``accel`` parameter accepts.
ACCEL_CHOICES = ("auto", "tcg", "kvm")

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
