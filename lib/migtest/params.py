"""The suite's parameters, read once into a typed object.

Parameters come from Avocado (variants files, or ``-p name=value``) and,
for the binary, from the environment variables QEMU's own tests use.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Protocol

from .arch import DEFAULT_ARCH, ArchProfile, get_profile
from .errors import ConfigError
from .host import DEFAULT_ACCEL, check_binary, find_binary, resolve_accel

#: Environment variables naming the QEMU binary, as QEMU's qtests read them.
#: ``QTEST_QEMU_BINARY_SRC`` and ``_DST`` override it for one side.
ENV_BINARY = "QTEST_QEMU_BINARY"
#: Set to 1 to turn every CANCEL of the suite into an ERROR (strict mode).
ENV_STRICT = "MIGTEST_STRICT"

_TRUE = ("1", "yes", "true", "on")
_FALSE = ("0", "no", "false", "off", "")


class ParamSource(Protocol):
    """What we need of Avocado's ``self.params``."""

    def get(self, key: str, path: Optional[str] = None, default: Any = None) -> Any: ...


def parse_bool(parameter: str, value: object) -> bool:
    """Read a yes/no parameter strictly: a typo must not mean 'no'."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ConfigError(parameter, value, "one of " + ", ".join(_TRUE + _FALSE[:-1]))


def parse_seconds(parameter: str, value: object) -> float:
    """Read a positive duration in seconds."""
    try:
        seconds = float(str(value))
    except ValueError:
        seconds = -1.0
    if not seconds > 0 or seconds == float("inf"):
        raise ConfigError(parameter, value, "a number of seconds greater than 0")
    return seconds


@dataclass(frozen=True)
class SuiteParams:
    """Everything a migration test needs to know about what to run."""

    profile: ArchProfile
    #: The accelerator in use: ``tcg`` or ``kvm`` (``auto`` already resolved).
    accel: str
    qemu_bin_src: str
    qemu_bin_dst: str
    #: Whether a missing binary, accelerator or feature fails the test
    #: instead of cancelling it.
    strict: bool
    #: Seconds the guest may take to boot; slow emulation may need more.
    boot_timeout: float = 60.0

    @classmethod
    def strict_from(cls, params: ParamSource, environ: Mapping[str, str]) -> bool:
        """Read strict mode alone: it must be known even when the rest is unusable."""
        return parse_bool("strict", params.get("strict", default=environ.get(ENV_STRICT, "0")))

    @classmethod
    def from_params(
        cls, params: ParamSource, environ: Mapping[str, str] = os.environ
    ) -> SuiteParams:
        """Read and check every parameter.

        :raise ConfigError: a parameter has an unusable value.
        :raise Unavailable: a binary or accelerator is missing on this host.
        """
        profile = get_profile(str(params.get("arch", default=DEFAULT_ARCH)))
        accel = resolve_accel(str(params.get("accel", default=DEFAULT_ACCEL)), profile)
        qemu_bin = str(params.get("qemu_bin", default=environ.get(ENV_BINARY) or profile.binary))
        return cls(
            profile=profile,
            accel=accel,
            qemu_bin_src=_side_binary(params, environ, "src", qemu_bin, profile, accel),
            qemu_bin_dst=_side_binary(params, environ, "dst", qemu_bin, profile, accel),
            strict=cls.strict_from(params, environ),
            boot_timeout=parse_seconds("boot_timeout", params.get("boot_timeout", default=60)),
        )


def _side_binary(
    params: ParamSource,
    environ: Mapping[str, str],
    side: str,
    qemu_bin: str,
    profile: ArchProfile,
    accel: str,
) -> str:
    """The binary of one side: ``qemu_bin_<side>`` if given, else ``qemu_bin``.

    Different binaries per side test migration between QEMU versions.
    """
    parameter = f"qemu_bin_{side}"
    value = params.get(parameter, default=environ.get(f"{ENV_BINARY}_{side.upper()}"))
    if not value:
        parameter, value = "qemu_bin", qemu_bin
    binary = find_binary(parameter, str(value))
    check_binary(parameter, binary, profile, accel)
    return binary
