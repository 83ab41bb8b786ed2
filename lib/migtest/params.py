"""The suite's parameters, read once into a typed object.

Parameters come from Avocado (variants files, or ``-p name=value``) and,
for the binary, from the environment variables QEMU's own tests use.  A
QEMU version that ``scripts/qemu-versions`` fetched is named by its label
(``qemu_version``, ``qemu_version_src``, ``qemu_version_dst``): see
:mod:`migtest.versions`.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, List, Mapping, Optional, Protocol, Tuple

from .arch import DEFAULT_ARCH, AccelOptions, ArchProfile, get_profile
from .errors import ConfigError, Unavailable
from .host import (
    DEFAULT_ACCEL,
    MachineListing,
    check_binary,
    check_cpu_model,
    check_machine_type,
    common_machine_type,
    find_binary,
    machine_listing,
    resolve_accel,
)
from .versions import binary_for

#: Environment variables naming the QEMU binary, as QEMU's qtests read them.
#: ``QTEST_QEMU_BINARY_SRC`` and ``_DST`` override it for one side.
ENV_BINARY = "QTEST_QEMU_BINARY"
#: Set to 1 to turn every CANCEL of the suite into an ERROR (strict mode).
ENV_STRICT = "MIGTEST_STRICT"

#: What QEMU's machine type names are made of: ``pc-i440fx-7.2``.
_MACHINE_TYPE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
#: A CPU model (``cortex-a57``, ``conan/doyle``) and its options (``,-pni``, ``,x=on``).
_CPU = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+/-]*(,[+-]?[A-Za-z0-9_.-]+(=[A-Za-z0-9_.:-]*)?)*")

_log = logging.getLogger(__name__)

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
    #: The machine type both sides run: the ``machine`` parameter, or the
    #: versioned type the profile's alias resolves to in both binaries.
    #: ``None``: the alias itself (parameters built by hand).
    machine_type: Optional[str] = None
    #: The ``-cpu`` value both sides run: the ``cpu`` parameter, or the
    #: profile's model for ``accel`` (also when ``None``).
    cpu: Optional[str] = None

    #: Options of the accelerator, on both sides (:data:`~migtest.arch.DIRTY_RING`):
    #: none from the parameters; a test that needs some runs a copy with them
    #: (:meth:`with_accel_options`).
    accel_options: AccelOptions = ()

    def qemu_args(self, guest: Path, shared_memory: Optional[Path] = None) -> List[str]:
        """The arguments that boot ``guest`` on either side.

        Both sides get the same machine type, CPU and accelerator options:
        a migration between different ones is refused, or worse, loads into
        different hardware.
        """
        return self.profile.qemu_args(
            self.accel,
            guest,
            shared_memory,
            machine_type=self.machine_type,
            cpu=self.cpu,
            accel_options=self.accel_options,
        )

    def with_accel_options(self, accel: str, options: AccelOptions, feature: str) -> SuiteParams:
        """These parameters, with ``options`` for accelerator ``accel``.

        :param feature: what the options are for, for the message.
        :raise Unavailable: the run uses another accelerator, which does
            not take them; not expected (a CANCEL even in strict mode):
            the variants run every accelerator.
        """
        if self.accel != accel:
            raise Unavailable(f"{feature} needs {accel}; this run uses {self.accel}", False)
        return replace(self, accel_options=options)

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
        :raise Unavailable: a binary or accelerator is missing on this host,
            or a binary lacks the machine type or CPU model.
        """
        profile = get_profile(str(params.get("arch", default=DEFAULT_ARCH)))
        accel = resolve_accel(str(params.get("accel", default=DEFAULT_ACCEL)), profile)
        qemu_bin = str(params.get("qemu_bin", default=environ.get(ENV_BINARY) or profile.binary))
        src = _side_binary(params, environ, "src", qemu_bin, profile, accel)
        dst = _side_binary(params, environ, "dst", qemu_bin, profile, accel)
        machine_type = choose_machine_type(params.get("machine"), profile, src, dst)
        cpu = choose_cpu(params.get("cpu"), profile, accel, src, dst)
        return cls(
            profile=profile,
            accel=accel,
            qemu_bin_src=src,
            qemu_bin_dst=dst,
            strict=cls.strict_from(params, environ),
            boot_timeout=parse_seconds("boot_timeout", params.get("boot_timeout", default=60)),
            machine_type=machine_type,
            cpu=cpu,
        )


#: How messages name each side.
_SIDES = {"src": "source", "dst": "destination"}


def _given(params: ParamSource, *names: str) -> Tuple[Optional[str], Any]:
    """The first of ``names`` that has a value, and the value; ``(None, None)`` if none."""
    for name in names:
        value = params.get(name)
        if value is not None and value != "":
            return name, value
    return None, None


def _side_binary(
    params: ParamSource,
    environ: Mapping[str, str],
    side: str,
    qemu_bin: str,
    profile: ArchProfile,
    accel: str,
) -> str:
    """The binary of one side.

    A QEMU version (``qemu_version_<side>``, else ``qemu_version``) comes
    first: its emulator from ``scripts/qemu-versions``.  Else
    ``qemu_bin_<side>`` if given, else ``qemu_bin``.  Different binaries
    per side test migration between QEMU versions.  A side given both a
    version and a binary is ambiguous, and refused rather than one of the
    two silently ignored.

    :raise ConfigError: an unknown version, or a version and a binary for
        the same side.
    :raise Unavailable: the version was not fetched, or the binary is missing.
    """
    version_parameter, label = _given(params, f"qemu_version_{side}", "qemu_version")
    if version_parameter is not None:
        bin_parameter, bin_value = _given(params, f"qemu_bin_{side}", "qemu_bin")
        if bin_parameter is not None:
            raise ConfigError(
                bin_parameter,
                bin_value,
                f"no value while parameter '{version_parameter}' ({label}) names the "
                f"{_SIDES[side]}'s QEMU too: give the {_SIDES[side]} either a version or a binary",
            )
        binary = binary_for(str(label), profile.name, environ, version_parameter)
        check_binary(version_parameter, binary, profile, accel)
        _log.info("%s: QEMU %s (%s)", _SIDES[side], label, binary)
        return binary
    parameter = f"qemu_bin_{side}"
    value = params.get(parameter, default=environ.get(f"{ENV_BINARY}_{side.upper()}"))
    if not value:
        parameter, value = "qemu_bin", qemu_bin
    binary = find_binary(parameter, str(value))
    check_binary(parameter, binary, profile, accel)
    return binary


def choose_machine_type(value: object, profile: ArchProfile, src: str, dst: str) -> str:
    """The machine type both binaries run: ``value`` (the ``machine`` parameter) if given.

    Otherwise the profile's alias, resolved to a versioned type both
    binaries know (:func:`~migtest.host.common_machine_type`): the alias
    alone would give each QEMU version its own newest type.

    :raise ConfigError: ``value`` is not a machine type name.
    :raise Unavailable: a binary lacks it, or no versioned type is common.
    """
    listings: List[MachineListing] = []
    for binary in dict.fromkeys((src, dst)):  # one binary: asked once
        listing = machine_listing(binary)
        if listing is None:  # check_binary already made sure it lists them
            raise Unavailable(f"{binary} did not list its machine types")
        listings.append(listing)
    alias = profile.machine_type
    if value is None or value == "":
        machine_type = common_machine_type(alias, listings[0], listings[-1])
        resolved = ", ".join(f"{item.resolve(alias)} in {item.binary}" for item in listings)
        _log.info("machine type %s ('%s' is %s)", machine_type, alias, resolved)
        return machine_type
    machine_type = str(value)
    if not _MACHINE_TYPE.fullmatch(machine_type):
        raise ConfigError(
            "machine",
            value,
            f"a machine type that both binaries list in -machine help, without options "
            f"(letters, digits, '.', '_', '-'), such as {listings[0].resolve(alias) or alias}",
        )
    check_machine_type(machine_type, listings)
    _log.info("machine type %s (pinned by the 'machine' parameter)", machine_type)
    return machine_type


def choose_cpu(value: object, profile: ArchProfile, accel: str, src: str, dst: str) -> str:
    """The ``-cpu`` value: ``value`` (the ``cpu`` parameter) if given, else the profile's.

    :raise ConfigError: ``value`` is not a CPU model with options.
    :raise Unavailable: a binary lacks the model.
    """
    binaries = list(dict.fromkeys((src, dst)))
    if value is None or value == "":
        cpu = profile.cpus[accel]
        whose = f"the {profile.name} profile's model for {accel}"
        check_cpu_model(cpu, binaries, f"{whose}; choose another with the 'cpu' parameter")
    else:
        cpu, whose = str(value), "the 'cpu' parameter"
        if not _CPU.fullmatch(cpu):
            raise ConfigError(
                "cpu",
                value,
                f"a CPU model that both binaries list in -cpu help, optionally followed by "
                f"options (',name=value', ',+feature', ',-feature'), such as "
                f"{profile.cpus[accel]}",
            )
        check_cpu_model(cpu, binaries, "parameter 'cpu'")
    _log.info("cpu %s (%s)", cpu, whose)
    return cpu
