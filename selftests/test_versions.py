"""QEMU versions: the table, the cache, the parameters that pick a version,
the variants file that pairs them, and the wrappers scripts/qemu-versions
makes.  The fetch itself (debootstrap, minutes) is not run here; the last
tests use what it left, when it did."""

from __future__ import annotations

import importlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, Optional

import pytest
from conftest import ROOT, load_script

from migtest.arch import PROFILES
from migtest.errors import ConfigError, Unavailable
from migtest.params import SuiteParams
from migtest.versions import (
    ARCHES,
    ENV_CACHE,
    LABELS,
    VERSIONS,
    binary_for,
    cache_dir,
    cross_pairs,
    get_version,
    installed,
    wrapper_path,
)

load_script("qemu-versions")  # it must import; it puts scripts/ on sys.path
# The modules it is made of:
archive = importlib.import_module("debian_archive")
roots = importlib.import_module("debian_roots")
wrappers = importlib.import_module("qemu_wrappers")


class Params:
    """A stand-in for Avocado's params: the same ``get``."""

    def __init__(self, **values: Any) -> None:
        self.values = values

    def get(self, key: str, path: Optional[str] = None, default: Any = None) -> Any:
        return self.values.get(key, default)


# -- the table and the cache ------------------------------------------------


def test_labels_are_qemu_versions_oldest_first() -> None:
    assert LABELS == ("7.2", "10.0.2", "10.0.13", "11.1.2", "11.1.3")
    numbers = [VERSIONS[label].number for label in LABELS]
    assert numbers == sorted(numbers) and len(set(numbers)) == len(numbers)
    for label in LABELS:
        assert re.fullmatch(r"\d+\.\d+(\.\d+)?", label)


def test_each_version_has_an_emulator_package_for_every_architecture() -> None:
    emulators = {"x86_64": {"qemu-system-x86"}, "aarch64": {"qemu-system-arm"},
                 "ppc64": {"qemu-system-ppc"},
                 "s390x": {"qemu-system-s390x", "qemu-system-misc"},
                 "riscv64": {"qemu-system-riscv", "qemu-system-misc"}}  # fmt: skip
    assert set(emulators) == set(ARCHES)
    for version in VERSIONS.values():
        for arch, packages in emulators.items():
            assert packages & set(version.packages), (version.label, arch)
        assert "seabios" in version.packages  # x86_64's firmware


def test_backports_come_first_with_their_release_and_its_script() -> None:
    for version in VERSIONS.values():
        if version.suite.endswith("-backports"):
            release = version.suite.removesuffix("-backports")
            assert version.suites == (version.suite, release)
            assert version.script == release
    assert VERSIONS["11.1.2"].script == "sid"  # Debian 12's debootstrap has no forky


def test_a_label_matches_the_versions_qemu_reports() -> None:
    assert VERSIONS["7.2"].matches("7.2.22") and VERSIONS["7.2"].matches("7.2")
    assert not VERSIONS["7.2"].matches("7.20.1")
    assert VERSIONS["10.0.2"].matches("10.0.2") and not VERSIONS["10.0.2"].matches("10.0.13")


def test_cross_pairs_are_every_ordered_pair_of_two_versions() -> None:
    pairs = cross_pairs()
    assert len(pairs) == len(LABELS) * (len(LABELS) - 1) == len(set(pairs))
    assert ("7.2", "11.1.3") in pairs and ("11.1.3", "7.2") in pairs
    assert all(src != dst for src, dst in pairs)


def test_cache_is_under_home_unless_the_environment_moves_it(tmp_path: Path) -> None:
    assert cache_dir({}) == Path.home() / ".cache" / "migtest" / "qemu"
    environ = {ENV_CACHE: str(tmp_path)}
    assert cache_dir(environ) == tmp_path
    assert wrapper_path("10.0.13", "s390x", environ) == tmp_path / "10.0.13/bin/qemu-system-s390x"


def fake_version(cache: Path, label: str, target: str = "/bin/true") -> None:
    """A fetched version whose every wrapper is a link to ``target``."""
    (cache / label / "bin").mkdir(parents=True)
    for arch in ARCHES:
        (cache / label / "bin" / PROFILES[arch].binary).symlink_to(target)


def test_binary_for_an_installed_and_a_missing_version(tmp_path: Path) -> None:
    environ = {ENV_CACHE: str(tmp_path)}
    fake_version(tmp_path, "10.0.13")
    assert binary_for("10.0.13", "ppc64", environ) == str(
        tmp_path / "10.0.13/bin/qemu-system-ppc64"
    )
    assert installed("10.0.13", environ) == dict.fromkeys(ARCHES, True)
    with pytest.raises(
        Unavailable, match=r"QEMU 11\.1\.3 is not installed here.*make qemu-versions"
    ):
        binary_for("11.1.3", "x86_64", environ)
    with pytest.raises(ConfigError, match=r"'qemu_version'.*7\.2, 10\.0\.2, 10\.0\.13, 11\.1\.2"):
        binary_for("9.9", "x86_64", environ)
    with pytest.raises(ConfigError, match="'qemu_version_dst'"):
        get_version("11.1", "qemu_version_dst")


# -- the parameters ------------------------------------------------------------


@pytest.fixture
def cache(tmp_path: Path, x86_binary: str) -> Dict[str, str]:
    """An environment whose cache has 7.2 and 10.0.13, both the host's QEMU."""
    for label in ("7.2", "10.0.13"):
        fake_version(tmp_path, label, shutil.which(x86_binary) or x86_binary)
    return {"PATH": os.environ["PATH"], ENV_CACHE: str(tmp_path)}


def read(environ: Dict[str, str], **values: Any) -> SuiteParams:
    return SuiteParams.from_params(Params(arch="x86_64", accel="tcg", **values), environ)


def test_qemu_version_names_both_sides(cache: Dict[str, str]) -> None:
    params = read(cache, qemu_version="10.0.13")
    wrapper = str(wrapper_path("10.0.13", "x86_64", cache))
    assert params.qemu_bin_src == params.qemu_bin_dst == wrapper


def test_one_side_version_overrides_the_common_one(cache: Dict[str, str]) -> None:
    params = read(cache, qemu_version_src="7.2", qemu_version_dst="10.0.13")
    assert params.qemu_bin_src == str(wrapper_path("7.2", "x86_64", cache))
    assert params.qemu_bin_dst == str(wrapper_path("10.0.13", "x86_64", cache))
    params = read(cache, qemu_version="7.2", qemu_version_dst="10.0.13")
    assert params.qemu_bin_src == str(wrapper_path("7.2", "x86_64", cache))
    assert params.qemu_bin_dst == str(wrapper_path("10.0.13", "x86_64", cache))


def test_a_version_wins_over_the_environments_binary(cache: Dict[str, str]) -> None:
    environ = {**cache, "QTEST_QEMU_BINARY": "/nonexistent/qemu"}
    params = read(environ, qemu_version="7.2")
    assert params.qemu_bin_dst == str(wrapper_path("7.2", "x86_64", cache))


def test_a_version_and_a_binary_for_the_other_side_go_together(
    cache: Dict[str, str], x86_binary: str
) -> None:
    params = read(cache, qemu_version_src="7.2", qemu_bin_dst=x86_binary)
    assert params.qemu_bin_src == str(wrapper_path("7.2", "x86_64", cache))
    assert params.qemu_bin_dst.endswith(x86_binary)


@pytest.mark.parametrize(
    ("values", "names"),
    [
        ({"qemu_version": "7.2", "qemu_bin": "/usr/bin/qemu"}, ("qemu_bin", "qemu_version")),
        ({"qemu_version_dst": "7.2", "qemu_bin_dst": "/q"}, ("qemu_bin_dst", "qemu_version_dst")),
        ({"qemu_version": "7.2", "qemu_bin_src": "/q"}, ("qemu_bin_src", "qemu_version")),
        ({"qemu_version_src": "7.2", "qemu_bin": "/q"}, ("qemu_bin", "qemu_version_src")),
    ],
)
def test_a_version_and_a_binary_for_the_same_side_is_refused(
    cache: Dict[str, str], values: Dict[str, str], names: tuple
) -> None:
    with pytest.raises(ConfigError) as error:
        read(cache, **values)
    assert error.value.parameter == names[0]
    assert f"'{names[1]}'" in str(error.value)


def test_an_unknown_version_lists_the_known_ones(cache: Dict[str, str]) -> None:
    with pytest.raises(ConfigError, match=r"'qemu_version_src'.*one of 7\.2, 10\.0\.2.*11\.1\.3"):
        read(cache, qemu_version_src="11.1")


def test_a_version_not_fetched_is_unavailable(cache: Dict[str, str]) -> None:
    with pytest.raises(Unavailable, match=r"QEMU 11\.1\.3 is not installed.*make qemu-versions"):
        read(cache, qemu_version_dst="11.1.3")


def test_a_version_read_from_yaml_as_a_number_still_resolves(cache: Dict[str, str]) -> None:
    assert read(cache, qemu_version=7.2).qemu_bin_src == str(wrapper_path("7.2", "x86_64", cache))


# -- the variants file ---------------------------------------------------------


def avocado() -> str:
    binary = Path(sys.executable).parent / "avocado"
    if not binary.exists():
        pytest.skip("avocado is not installed in this interpreter's environment")
    return str(binary)


def test_variants_cover_every_version_and_ordered_pair_without_key_clash(tmp_path: Path) -> None:
    variants = ROOT / "tests/migration/variants"
    dump = tmp_path / "variants.json"
    files = [str(variants / name) for name in ("arch.yaml", "accel-tcg.yaml", "versions.yaml")]
    subprocess.run([avocado(), "variants", "--json-variants-dump", str(dump), "-m", *files],
                   check=True, capture_output=True, timeout=120)  # fmt: skip
    leaves: Dict[str, Dict[str, str]] = {}
    arches = set()
    for variant in json.loads(dump.read_text()):
        keys = [key for _, values in variant["variant"] for _, key, _ in values]
        assert len(keys) == len(set(keys)), f"a key in two leaves: {variant['variant_id']}"
        for path, values in variant["variant"]:
            if path.startswith("/run/arch/"):
                arches.add(path)
            if path.startswith("/run/qemu/"):
                leaves[path] = {key: value for _, key, value in values}
    expected = {f"/run/qemu/same/{label}": {"qemu_version": label} for label in LABELS}
    expected.update(
        {
            f"/run/qemu/cross/{src}-to-{dst}": {"qemu_version_src": src, "qemu_version_dst": dst}
            for src, dst in cross_pairs()
        }
    )
    assert leaves == expected
    assert len(json.loads(dump.read_text())) == len(arches) * len(expected)


# -- the wrappers --------------------------------------------------------------


def test_the_loader_is_read_from_the_binary() -> None:
    loader = wrappers.elf_interpreter(Path("/bin/true").read_bytes()[:65536])
    assert loader.startswith("/") and "ld" in Path(loader).name
    with pytest.raises(ValueError, match="ELF"):
        wrappers.elf_interpreter(b"#!/bin/sh\n")


def fake_root(root: Path, binary: str = "/bin/true") -> Path:
    """A root with a QEMU (``binary``), a module directory and firmware directories."""
    (root / "usr/bin").mkdir(parents=True)
    shutil.copy(binary, root / "usr/bin/qemu-system-x86_64")
    (root / "usr/lib/x86_64-linux-gnu/qemu").mkdir(parents=True)
    (root / "usr/lib/x86_64-linux-gnu/qemu/accel-tcg-x86_64.so").touch()
    for firmware in ("usr/share/qemu", "usr/share/seabios"):
        (root / firmware).mkdir(parents=True)
    return root


def test_a_wrapper_runs_qemu_with_the_roots_loader_libraries_modules_and_firmware(
    tmp_path: Path,
) -> None:
    root = fake_root(tmp_path / "a root")
    layout = wrappers.RootLayout.find(root)
    assert layout.firmware == ("usr/share/qemu", "usr/share/seabios")
    text = layout.wrapper("qemu-system-x86_64", "QEMU 10.0.13 from Debian trixie")
    loader = wrappers.elf_interpreter(Path("/bin/true").read_bytes()[:65536])
    triplet = layout.triplet
    q = f"'{root}"  # the root's name has a space: every path is quoted
    assert text.startswith("#!/bin/sh\n# QEMU 10.0.13 from Debian trixie")
    assert f"export QEMU_MODULE_DIR={q}/usr/lib/{triplet}/qemu'\n" in text
    assert (
        f"exec {q}{loader}' --inhibit-cache --library-path {q}/lib/{triplet}:{root}/usr/lib/"
        f"{triplet}' {q}/usr/bin/qemu-system-x86_64' -L {q}/usr/share/qemu' "
        f'-L {q}/usr/share/seabios\' "$@"\n'
    ) in text
    moved = layout.at(tmp_path / "final")
    assert str(root) not in moved.wrapper("qemu-system-x86_64", "t")


def test_a_root_without_qemu_or_modules_is_refused(tmp_path: Path) -> None:
    with pytest.raises(wrappers.FetchError, match="no qemu-system"):
        wrappers.RootLayout.find(tmp_path)
    root = fake_root(tmp_path / "r")
    shutil.rmtree(root / "usr/lib")
    with pytest.raises(wrappers.FetchError, match="module directory"):
        wrappers.RootLayout.find(root)


def test_a_wrapper_really_starts_qemu_through_a_loader(tmp_path: Path, x86_binary: str) -> None:
    """The host's QEMU, its loader and libraries seen as a root: the wrapper must run it."""
    host_qemu = shutil.which(x86_binary) or x86_binary
    root = tmp_path / "a root"
    layout = wrappers.RootLayout.find(fake_root(root, host_qemu))
    for relative in (f"lib/{layout.triplet}", f"usr/lib/{layout.triplet}"):
        shutil.rmtree(root / relative, ignore_errors=True)
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).symlink_to(f"/{relative}")
    loader = root / layout.loader.lstrip("/")
    if not loader.exists():
        loader.parent.mkdir(parents=True, exist_ok=True)
        loader.symlink_to(layout.loader)
    # The modules are the host's here; some have a RUNPATH to a host directory.
    assert [entry for entry in layout.foreign_libraries() if "(for qemu-system-" in entry] == []
    wrappers.write_wrappers(tmp_path / "bin", layout, "test")
    result = subprocess.run([str(tmp_path / "bin/qemu-system-x86_64"), "--version"],
                            capture_output=True, text=True, timeout=60, check=True)  # fmt: skip
    assert result.stdout.startswith("QEMU emulator version")


def test_a_root_that_lacks_a_library_of_its_qemu_is_caught(tmp_path: Path, x86_binary: str) -> None:
    """Its loader would take the host's instead, and the wrapper still run: on two releases."""
    host_qemu = shutil.which(x86_binary) or x86_binary
    root = fake_root(tmp_path / "root", host_qemu)
    layout = wrappers.RootLayout.find(root)
    loader = root / layout.loader.lstrip("/")
    loader.parent.mkdir(parents=True, exist_ok=True)
    loader.symlink_to(layout.loader)
    foreign = layout.foreign_libraries()
    assert any(entry.startswith("libglib-2.0.so.0 => /") for entry in foreign), foreign


def test_the_hosts_version_is_linked_and_runs(tmp_path: Path) -> None:
    host = next(((v, b) for v in VERSIONS.values() if (b := wrappers.host_binaries(v))), None)
    if host is None:
        pytest.skip("the host's QEMU is none of the known versions")
    version, binaries = host
    wrappers.link_host(version, tmp_path / version.label, binaries)
    for arch in binaries:
        found = wrappers.qemu_version_of(
            str(tmp_path / version.label / "bin" / f"qemu-system-{arch}")
        )
        assert found is not None and version.matches(found[0])
    assert wrappers.state(version.label, tmp_path) in ("host", "partly")


# -- the archive, and the roots it gives -------------------------------------


def test_debootstrap_takes_backports_first_with_the_release_and_its_script() -> None:
    version = VERSIONS["10.0.2"]
    command = roots.debootstrap_command(
        Path("/r"), version.suites, version.packages, "http://m/debian", version.script
    )
    assert command[:2] == ["debootstrap", "--variant=minbase"]
    assert "--include=" + ",".join(version.packages) in command
    script_path = "/usr/share/debootstrap/scripts/bookworm"
    assert command[-5:] == ["--extra-suites=bookworm", "bookworm-backports", "/r",
                            "http://m/debian", script_path]  # fmt: skip
    assert "--no-check-gpg" not in command


MADISON = """\
qemu-system-x86 | 1:11.1.3+ds-2~bpo13+1 | http://m/debian trixie-backports/main amd64 Packages
qemu-system-x86 | 1:10.0.13+ds-0+deb13u1 | http://m/debian trixie/main amd64 Packages
   seabios |   1.16.3-2 | http://m/debian trixie/main amd64 Packages
"""


def test_the_archive_is_read_through_apt_cache_madison() -> None:
    held = archive.parse_madison(MADISON)
    assert held[("qemu-system-x86", "trixie-backports")] == "1:11.1.3+ds-2~bpo13+1"
    assert held[("seabios", "trixie")] == "1.16.3-2"
    assert archive.upstream_of("1:10.0.13+ds-0+deb13u1") == "10.0.13"
    assert archive.upstream_of("1:7.2+dfsg-7+deb12u18+b3") == "7.2"


def test_a_table_the_archive_no_longer_matches_is_refused() -> None:
    held = {
        (package, "trixie"): "1:10.0.13+ds-0+deb13u1" for package in VERSIONS["10.0.13"].packages
    }
    assert archive.archive_mismatch(VERSIONS["10.0.13"], held) is None
    newer = {key: "1:10.0.14+ds-0+deb13u1" for key in held}
    assert "has QEMU 10.0.14, not 10.0.13" in archive.archive_mismatch(VERSIONS["10.0.13"], newer)
    del held[("qemu-system-s390x", "trixie")]
    assert "has no qemu-system-s390x" in archive.archive_mismatch(VERSIONS["10.0.13"], held)


def test_an_unreachable_archive_is_named() -> None:
    problem = archive.archive_problem("http://127.0.0.1:9/debian", ["trixie"])
    assert problem is not None and problem.startswith(
        "cannot reach Debian's archive at http://127.0.0.1:9/debian"
    )


def test_a_failed_build_leaves_nothing_a_rerun_would_take_as_done(tmp_path: Path) -> None:
    target = tmp_path / "10.0.13"

    def failing(building: Path) -> None:
        (building / "bin").mkdir()
        (building / "bin" / "qemu-system-x86_64").touch()
        raise KeyboardInterrupt  # as Ctrl-C in the middle of debootstrap

    with pytest.raises(KeyboardInterrupt):
        roots.build_atomically(target, failing)
    assert not target.exists() and list(tmp_path.iterdir()) == []
    assert wrappers.state("10.0.13", tmp_path) == "no"
    roots.build_atomically(target, lambda building: (building / "done").touch())
    assert (target / "done").exists() and oct(target.stat().st_mode & 0o777) == "0o755"
    assert list(tmp_path.iterdir()) == [target]


STATUS = """\
Package: qemu-system-x86
Status: install ok installed
Depends: libglib2.0-0 (>= 2.67), seabios (>> 1.16.3-1~), qemu-system-data | qemu-firmware

Package: libglib2.0-0
Status: install ok installed

Package: seabios
Status: install ok installed

Package: data-provider
Status: install ok installed
Provides: qemu-system-data (= 1:10.0.2)

Package: dash
Essential: yes
Status: install ok installed
Pre-Depends: libc6 (>= 2.34)

Package: libc6
Priority: required
Status: install ok installed

Package: apt
Status: install ok installed
Depends:
 libc6

Package: libgbm1
Status: install ok installed
Depends: libllvm15

Package: libllvm15
Status: install ok installed

Package: gone
Status: deinstall ok config-files
"""


def test_what_only_the_other_suites_qemu_needs_is_surplus() -> None:
    """debootstrap gathers dependencies from every suite: those of 7.2 in a 10.0.2 root."""
    wanted = ["qemu-system-x86", "seabios"]
    assert roots.surplus_packages(STATUS, wanted) == ["libgbm1", "libllvm15"]
    assert roots.surplus_packages(STATUS, [*wanted, "libgbm1"]) == []


def test_partial_builds_left_by_a_killed_run_are_found(tmp_path: Path) -> None:
    (tmp_path / ".10.0.13.partial-abcd").mkdir()
    (tmp_path / ".10.0.2.partial-efgh").mkdir()
    assert roots.partial_dirs(tmp_path / "10.0.13") == [tmp_path / ".10.0.13.partial-abcd"]


# -- what a fetch left, when there was one --------------------------------------


def fetched(*labels: str) -> None:
    for label in labels:
        if wrappers.state(label, cache_dir()) not in ("host", "fetched"):
            pytest.skip(f"QEMU {label} is not installed here: run make qemu-versions")


def test_fetched_versions_share_a_machine_type_across_versions() -> None:
    oldest, newest = LABELS[0], LABELS[-1]
    fetched(oldest, newest)
    params = SuiteParams.from_params(
        Params(arch="x86_64", accel="tcg", qemu_version_src=newest, qemu_version_dst=oldest),
        os.environ,
    )
    assert params.machine_type == "pc-i440fx-7.2"
    assert params.qemu_bin_src == binary_for(newest, "x86_64")


def test_linking_the_host_again_leaves_right_links_alone(tmp_path: Path) -> None:
    """A rerun must not pull the binaries from under a job that runs them."""
    version = VERSIONS[LABELS[0]]
    target = tmp_path / version.label
    wrappers.link_host(version, target, {"x86_64": "/bin/true"})
    first = (target / "bin").stat().st_ino
    wrappers.link_host(version, target, {"x86_64": "/bin/true"})
    assert (target / "bin").stat().st_ino == first
    wrappers.link_host(version, target, {"x86_64": "/bin/false"})
    assert os.readlink(target / "bin" / "qemu-system-x86_64") == "/bin/false"
    assert (target / "bin").stat().st_ino != first
