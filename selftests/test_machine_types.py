"""Machine types and CPU models: which ones a pair runs, and why.

The resolution of a machine alias is a pure function over two
``-machine help`` listings, so every branch is tested here on listings
written out by hand (abridged from QEMU 7.2 and 10.0); one test asks the
host's QEMU for real.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any, Dict, Optional

import pytest

from migtest import params as params_module
from migtest.arch import PROFILES, get_profile
from migtest.errors import ConfigError, Unavailable
from migtest.host import (
    MachineListing,
    common_machine_type,
    machine_listing,
    parse_cpu_models,
)
from migtest.params import SuiteParams, choose_cpu, choose_machine_type

QEMU_72 = """\
Supported machines are:
microvm              microvm (i386)
pc                   Standard PC (i440FX + PIIX, 1996) (alias of pc-i440fx-7.2)
pc-i440fx-7.2        Standard PC (i440FX + PIIX, 1996) (default)
pc-i440fx-7.1        Standard PC (i440FX + PIIX, 1996)
q35                  Standard PC (Q35 + ICH9, 2009) (alias of pc-q35-7.2)
pc-q35-7.2           Standard PC (Q35 + ICH9, 2009)
none                 empty machine
"""

QEMU_100 = """\
Supported machines are:
microvm              microvm (i386)
pc                   Standard PC (i440FX + PIIX, 1996) (alias of pc-i440fx-10.0)
pc-i440fx-10.0       Standard PC (i440FX + PIIX, 1996) (default)
pc-i440fx-9.2        Standard PC (i440FX + PIIX, 1996)
pc-i440fx-7.2        Standard PC (i440FX + PIIX, 1996)
pc-i440fx-7.0        Standard PC (i440FX + PIIX, 1996) (deprecated)
q35                  Standard PC (Q35 + ICH9, 2009) (alias of pc-q35-10.0)
pc-q35-10.0          Standard PC (Q35 + ICH9, 2009)
none                 empty machine
"""


def listing(binary: str, text: str) -> MachineListing:
    parsed = MachineListing.parse(binary, text.splitlines())
    assert parsed is not None
    return parsed


OLD = listing("/old/qemu", QEMU_72)
NEW = listing("/new/qemu", QEMU_100)
#: A QEMU that dropped 7.2's machine types (QEMU removes them after six years).
NEWEST = listing("/newest/qemu", QEMU_100.replace("pc-i440fx-7.2 ", "pc-i440fx-9.1 "))


# -- reading -machine help ---------------------------------------------------


def test_listing_reads_names_and_aliases() -> None:
    assert {"pc", "pc-i440fx-7.2", "q35", "none"} <= OLD.names
    assert OLD.aliases == {"pc": "pc-i440fx-7.2", "q35": "pc-q35-7.2"}
    assert NEW.resolve("pc") == "pc-i440fx-10.0"
    assert NEW.resolve("pc-i440fx-7.0") == "pc-i440fx-7.0"  # deprecated, still there
    assert NEW.resolve("none") == "none"  # not an alias: its own type
    assert NEW.resolve("pc-i440fx-2.0") is None


def test_listing_keeps_the_first_of_a_repeated_alias() -> None:
    # QEMU 10.0's ppc64 lists 'powernv' twice, aliasing two machines.
    text = (
        "Supported machines are:\n"
        "powernv              IBM PowerNV (Non-Virtualized) POWER10 (alias of powernv10)\n"
        "powernv              IBM PowerNV (Non-Virtualized) POWER10 Rainier "
        "(alias of powernv10-rainier)\n"
        "powernv10            IBM PowerNV (Non-Virtualized) POWER10\n"
    )
    assert listing("/q", text).resolve("powernv") == "powernv10"


def test_output_that_is_not_qemu_gives_no_listing() -> None:
    assert MachineListing.parse("/bin/true", []) is None
    assert MachineListing.parse("/bin/echo", ["-machine help"]) is None


# -- resolving the alias: every branch ----------------------------------------


def test_one_binary_resolves_to_its_own_versioned_type() -> None:
    assert common_machine_type("pc", OLD, OLD) == "pc-i440fx-7.2"
    assert common_machine_type("pc", NEW, NEW) == "pc-i440fx-10.0"


def test_two_binaries_of_one_version_agree() -> None:
    other_build = listing("/other/qemu", QEMU_72)
    assert common_machine_type("pc", OLD, other_build) == "pc-i440fx-7.2"


@pytest.mark.parametrize("src, dst", [(OLD, NEW), (NEW, OLD)])
def test_older_binarys_type_wins_in_both_directions(
    src: MachineListing, dst: MachineListing
) -> None:
    assert common_machine_type("pc", src, dst) == "pc-i440fx-7.2"


def test_versions_compare_as_numbers_not_text() -> None:
    # As text, "10.0" < "9.2"; as versions 9.2 is the older one.
    nine = listing("/nine/qemu", QEMU_100.replace("pc-i440fx-10.0)", "pc-i440fx-9.2)"))
    assert common_machine_type("pc", NEW, nine) == "pc-i440fx-9.2"
    assert common_machine_type("pc", nine, NEW) == "pc-i440fx-9.2"


def test_newer_type_when_the_older_one_is_gone_but_known_to_the_older_binary() -> None:
    # An older build that carries the newer type (a backport) and a newer
    # binary without the older type.
    backported = listing("/backport/qemu", QEMU_72 + "pc-i440fx-10.0       Standard PC\n")
    assert common_machine_type("pc", backported, NEWEST) == "pc-i440fx-10.0"
    assert common_machine_type("pc", NEWEST, backported) == "pc-i440fx-10.0"


@pytest.mark.parametrize("src, dst", [(OLD, NEWEST), (NEWEST, OLD)])
def test_no_common_type_is_unavailable_and_says_how_to_pin_one(
    src: MachineListing, dst: MachineListing
) -> None:
    with pytest.raises(Unavailable) as error:
        common_machine_type("pc", src, dst)
    message = str(error.value)
    assert "no machine type for 'pc' is common" in message
    assert "/old/qemu" in message and "/newest/qemu" in message
    assert "pc-i440fx-7.2" in message and "pc-i440fx-10.0" in message
    assert "'machine' parameter" in message


def test_binary_without_the_alias_is_unavailable() -> None:
    s390x = listing("/s390x/qemu", "Supported machines are:\ns390-ccw-virtio-7.2  Virtual\n")
    with pytest.raises(Unavailable, match="/s390x/qemu has no machine type 'pc'"):
        common_machine_type("pc", OLD, s390x)


def test_unversioned_types_keep_the_source_first() -> None:
    src = listing("/a", "Supported machines are:\nm  M (alias of m-alpha)\nm-alpha  A\nm-beta  B\n")
    dst = listing("/b", "Supported machines are:\nm  M (alias of m-beta)\nm-alpha  A\nm-beta  B\n")
    assert common_machine_type("m", src, dst) == "m-alpha"
    assert common_machine_type("m", dst, src) == "m-beta"


# -- reading -cpu help -------------------------------------------------------


def test_cpu_models_of_72_with_architecture_prefix() -> None:
    x86 = [
        "Available CPUs:",
        "x86 486                   (alias configured by machine type)",
        "x86 qemu64-v1             QEMU Virtual CPU version 2.5+",
        "x86 max                   Enables all features supported by the accelerator",
        "",
        "Recognized CPUID flags:",
        "  3dnow 3dnowext 3dnowprefetch abm ace2",
    ]
    assert parse_cpu_models(x86) == {"486", "qemu64-v1", "max"}
    s390x = [
        "s390 qemu            QEMU Virtual CPU version 2.5+       (migration-safe)",
        "s390 z900-base       IBM zSeries 900 GA1                 (static, migration-safe)",
        "",
        "Recognized feature flags:",
        "esan3                Instructions marked as n3",
    ]
    assert parse_cpu_models(s390x) == {"qemu", "z900-base"}
    ppc = [
        "PowerPC power9_v2.0      PVR 004e1200",
        "PowerPC power9           (alias for power9_v2.0)",
    ]
    assert parse_cpu_models(ppc) == {"power9_v2.0", "power9"}


def test_cpu_models_indented() -> None:
    # QEMU 7.2 on Arm, and every architecture from QEMU 10.0.
    lines = ["Available CPUs:", "  a64fx", "  cortex-a57", "  pxa250 (deprecated)", "  max"]
    assert parse_cpu_models(lines) == {"a64fx", "cortex-a57", "pxa250", "max"}
    assert parse_cpu_models(["Available CPUs:", "  conan/doyle      (alias for 750p)"]) == {
        "conan/doyle"
    }


# -- the profiles --------------------------------------------------------------


def test_machine_value_is_built_in_one_place() -> None:
    ppc64 = get_profile("ppc64")
    assert ppc64.machine_type == "pseries"
    value = ppc64.machine_value("pseries-7.2", (("memory-backend", "ram"),))
    assert value.startswith("pseries-7.2,cap-cfpc=broken,")
    assert value.endswith(",kernel-addr=0x7000000,memory-backend=ram")
    assert get_profile("x86_64").machine_value() == "pc"


@pytest.mark.parametrize("arch", sorted(PROFILES))
def test_every_profile_names_its_cpu_models(arch: str) -> None:
    # 'max' and the machine's default both change between QEMU versions.
    for accel, cpu in PROFILES[arch].cpus.items():
        assert cpu and cpu.split(",")[0] != "max", (arch, accel)


def test_qemu_args_carry_the_machine_type_and_cpu() -> None:
    args = get_profile("aarch64").qemu_args(
        "tcg", Path("guest.bin"), machine_type="virt-7.2", cpu="cortex-a53"
    )
    assert args[args.index("-machine") + 1] == "virt-7.2,gic-version=max"
    assert args[args.index("-cpu") + 1] == "cortex-a53"
    default = get_profile("aarch64").qemu_args("tcg", Path("guest.bin"))
    assert default[default.index("-cpu") + 1] == get_profile("aarch64").cpus["tcg"]


# -- the 'machine' and 'cpu' parameters -----------------------------------------


@pytest.fixture
def fake_binaries(monkeypatch: pytest.MonkeyPatch) -> None:
    """``/old/qemu`` and ``/new/qemu`` list the machines and CPUs above."""
    listings = {"/old/qemu": OLD, "/new/qemu": NEW}
    cpus = {"/old/qemu": frozenset({"qemu64", "max"}), "/new/qemu": frozenset({"qemu64", "base"})}
    monkeypatch.setattr(params_module, "machine_listing", listings.get)
    monkeypatch.setattr("migtest.host.cpu_models", cpus.__getitem__)


@pytest.mark.usefixtures("fake_binaries")
def test_resolution_is_logged_with_each_binarys_answer(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="migtest.params")
    choose_machine_type(None, get_profile("x86_64"), "/new/qemu", "/old/qemu")
    assert (
        "machine type pc-i440fx-7.2 ('pc' is pc-i440fx-10.0 in /new/qemu, "
        "pc-i440fx-7.2 in /old/qemu)" in caplog.messages
    )


@pytest.mark.usefixtures("fake_binaries")
def test_machine_parameter_pins_a_type_both_know() -> None:
    x86 = get_profile("x86_64")
    assert choose_machine_type(None, x86, "/old/qemu", "/new/qemu") == "pc-i440fx-7.2"
    assert choose_machine_type("microvm", x86, "/old/qemu", "/new/qemu") == "microvm"
    assert choose_machine_type("", x86, "/new/qemu", "/new/qemu") == "pc-i440fx-10.0"


@pytest.mark.usefixtures("fake_binaries")
def test_machine_unknown_to_one_binary_is_unavailable() -> None:
    with pytest.raises(Unavailable) as error:
        choose_machine_type("pc-i440fx-10.0", get_profile("x86_64"), "/old/qemu", "/new/qemu")
    assert str(error.value).startswith(
        "machine type 'pc-i440fx-10.0' (parameter 'machine') is unknown to /old/qemu"
    )


@pytest.mark.usefixtures("fake_binaries")
@pytest.mark.parametrize("value", ["pc,accel=kvm", " pc", "pc i440fx", "-pc", "pc;reboot"])
def test_malformed_machine_names_parameter_and_accepted_values(value: str) -> None:
    with pytest.raises(ConfigError) as error:
        choose_machine_type(value, get_profile("x86_64"), "/old/qemu", "/new/qemu")
    assert error.value.parameter == "machine"
    assert "a machine type that both binaries list in -machine help" in str(error.value)
    assert "such as pc-i440fx-7.2" in str(error.value)


@pytest.mark.usefixtures("fake_binaries")
def test_cpu_parameter_overrides_the_profile() -> None:
    x86 = get_profile("x86_64")
    assert choose_cpu(None, x86, "tcg", "/old/qemu", "/new/qemu") == "qemu64"
    assert choose_cpu("qemu64,-pni,+lm", x86, "tcg", "/old/qemu", "/new/qemu") == "qemu64,-pni,+lm"
    with pytest.raises(Unavailable) as error:
        choose_cpu("max", x86, "tcg", "/old/qemu", "/new/qemu")
    assert str(error.value).startswith("CPU model 'max' (parameter 'cpu') is unknown to /new/qemu")


@pytest.mark.usefixtures("fake_binaries")
@pytest.mark.parametrize("value", ["qemu64,,", ",pni", "qemu64 -pni", "qemu64;x"])
def test_malformed_cpu_names_parameter_and_accepted_values(value: str) -> None:
    with pytest.raises(ConfigError) as error:
        choose_cpu(value, get_profile("x86_64"), "tcg", "/old/qemu", "/new/qemu")
    assert error.value.parameter == "cpu"
    assert "a CPU model that both binaries list in -cpu help" in str(error.value)


def test_host_cpu_is_left_to_the_kvm_check(monkeypatch: pytest.MonkeyPatch) -> None:
    # ppc registers 'host' only once KVM runs: -cpu help may not list it.
    monkeypatch.setattr("migtest.host.cpu_models", lambda binary: frozenset({"power9_v2.0"}))
    assert choose_cpu(None, get_profile("ppc64"), "kvm", "/a", "/b") == "host"


def test_profile_cpu_missing_from_a_binary_says_which_parameter_helps(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("migtest.host.cpu_models", lambda binary: frozenset({"max"}))
    with pytest.raises(Unavailable, match=r"'qemu64' \(the x86_64 profile's model for tcg; "):
        choose_cpu(None, get_profile("x86_64"), "tcg", "/old/qemu", "/old/qemu")


# -- against the host's QEMU -----------------------------------------------------


class Params:
    """A stand-in for Avocado's params."""

    def __init__(self, **values: Any) -> None:
        self.values: Dict[str, Any] = values

    def get(self, key: str, path: Optional[str] = None, default: Any = None) -> Any:
        return self.values.get(key, default)


def test_host_qemu_resolves_the_alias_to_a_versioned_type(x86_binary: str) -> None:
    host = machine_listing(x86_binary)
    assert host is not None
    resolved = common_machine_type("pc", host, host)
    assert re.fullmatch(r"pc-i440fx-\d+\.\d+", resolved), resolved
    suite = SuiteParams.from_params(Params(accel="tcg"), {"PATH": "/usr/bin:/bin"})
    assert suite.machine_type == resolved
    args = suite.qemu_args(Path("guest.img"))
    assert args[args.index("-machine") + 1] == resolved
    assert args[args.index("-cpu") + 1] == "qemu64"


def test_host_qemu_refuses_unknown_pinned_machine_and_cpu(x86_binary: str) -> None:
    environ = {"PATH": "/usr/bin:/bin"}
    binary = re.escape(x86_binary)
    with pytest.raises(Unavailable, match=rf"'pc-i440fx-1\.0' \(parameter 'machine'\).*{binary}"):
        SuiteParams.from_params(Params(accel="tcg", machine="pc-i440fx-1.0"), environ)
    with pytest.raises(Unavailable, match=rf"'pentium9' \(parameter 'cpu'\).*{binary}"):
        SuiteParams.from_params(Params(accel="tcg", cpu="pentium9"), environ)
