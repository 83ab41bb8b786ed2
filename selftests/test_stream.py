"""The migration stream reader, on real streams and on broken copies of them.

``data/stream/qemu-<version>-<arch>.mig.gz`` are streams QEMU wrote
through ``exec:`` for the suite's guest and command line, the source
paused before its first instruction (``-S``): its RAM is still mostly
zero, so each file stays small (1.2 MB in all).  ``python
selftests/test_stream.py VERSION,... ARCH,... DIR`` makes them again from
``~/.cache/migtest/qemu/<version>``.  Streams of a guest that ran are
made here with the host's QEMU, when it is installed.
"""

from __future__ import annotations

import gzip
import shlex
import shutil
import struct
import sys
import tempfile
from pathlib import Path

import pytest

from migtest.stream import StreamError, check_stream, describe_stream, main, read_stream
from migtest.stream.model import FLAG_PAGE, FLAG_ZERO

DATA = Path(__file__).resolve().parent / "data" / "stream"
FIXTURES = sorted(DATA.glob("qemu-*.mig.gz"))
MACHINES = {
    "x86_64": "pc-i440fx-",
    "aarch64": "virt-",
    "s390x": "s390-ccw-virtio-",
    "ppc64": "pseries-",
}


def fixture_bytes(name: str) -> bytearray:
    return bytearray(gzip.decompress((DATA / name).read_bytes()))


def reject(tmp_path: Path, data: bytes) -> StreamError:
    """The error reading ``data`` gives, which must name a byte."""
    path = tmp_path / "broken.mig"
    path.write_bytes(bytes(data))
    with pytest.raises(StreamError) as caught:
        check_stream(path)
    assert f"byte {caught.value.offset}" in str(caught.value)
    assert describe_stream(path) == f"{path}: {caught.value}"
    return caught.value


def test_fixtures_cover_every_arch_and_version() -> None:
    names = {p.name for p in FIXTURES}
    for version in ("7.2", "11.1.3"):
        for arch in MACHINES:
            assert f"qemu-{version}-{arch}.mig.gz" in names


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.name.split(".mig")[0])
def test_real_stream_is_read_to_its_end(path: Path) -> None:
    version, arch = path.name[len("qemu-") :].split(".mig")[0].rsplit("-", 1)
    summary = check_stream(path)
    assert summary.version == 3 and summary.ended_with_eof
    assert summary.machine_type is not None
    assert summary.machine_type.startswith(MACHINES[arch] + ".".join(version.split(".")[:2]))
    assert summary.page_size == 4096
    assert summary.ram_blocks and summary.pages["zero"] > 0 and summary.pages["normal"] > 0
    assert summary.vmdesc is not None and summary.vmdesc_offset is not None
    ram = [s for s in summary.sections if s.idstr == "ram"]
    assert ram[0].kind == "start" and ram[-1].kind == "end"
    devices = [s for s in summary.sections if s.kind == "full"]
    assert len(devices) == len(summary.vmdesc["devices"])
    if arch == "aarch64":  # Arm's page size is variable, so the stream says it
        assert summary.configuration["target-page-bits"] == 12


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.name.split(".mig")[0])
def test_footers_alone_find_the_same_sections(path: Path) -> None:
    by_vmdesc = read_stream(path)
    by_footer = read_stream(path, use_vmdesc=False)
    assert [(s.idstr, s.offset, s.end) for s in by_vmdesc.sections] == [
        (s.idstr, s.offset, s.end) for s in by_footer.sections
    ]


def test_qemu_7_2_vmdesc_missizes_s390_css_and_says_so() -> None:
    summary = read_stream(DATA / "qemu-7.2-s390x.mig.gz")
    css = [s for s in summary.sections if s.idstr == "s390_css"]
    assert [s.crossed_by for s in css] == ["footer-search, vmdesc off"]


def test_describe_names_machine_blocks_and_sections() -> None:
    text = describe_stream(DATA / "qemu-11.1.3-x86_64.mig.gz")
    assert "machine pc-i440fx-11.1" in text and "ended with EOF" in text
    assert "RAM block 'pc.ram': 157286400 bytes" in text
    assert "'ram' instance 0 v4" in text and "'cpu' instance 0" in text
    assert "command SWITCHOVER_START" in text
    brief = describe_stream(DATA / "qemu-11.1.3-x86_64.mig.gz", brief=True)
    assert "\n" not in brief and "machine pc-i440fx-11.1" in brief and "zero" in brief


@pytest.mark.parametrize("cut", [0, 3, 6, 12, 30, 200, 100_000, -40_000, -30, -1])
def test_truncated_stream_names_where_it_ends(tmp_path: Path, cut: int) -> None:
    data = fixture_bytes("qemu-7.2-x86_64.mig.gz")
    summary = read_stream(DATA / "qemu-7.2-x86_64.mig.gz")
    assert summary.vmdesc_offset is not None
    if cut < 0:  # before the EOF byte and the vmdesc
        cut += summary.vmdesc_offset
    error = reject(tmp_path, data[:cut])
    assert error.truncated_at == cut
    assert str(error).startswith(f"truncated at byte {cut} inside ")


def test_truncated_in_a_page_names_its_block(tmp_path: Path) -> None:
    data = fixture_bytes("qemu-11.1.3-aarch64.mig.gz")
    at = _first_page(data)
    cut = at + 8 + 1 + data[at + 8] + 1  # header, block name, and a byte of the page
    error = reject(tmp_path, data[:cut])
    assert (
        error.where.startswith("section 'ram'") and "page of block 'mach-virt.ram'" in error.where
    )


def test_truncated_vmdesc_is_rejected(tmp_path: Path) -> None:
    data = fixture_bytes("qemu-11.1.3-s390x.mig.gz")
    error = reject(tmp_path, data[:-10])
    assert error.where == "the vmdesc" and error.truncated_at == len(data) - 10


def test_bad_magic(tmp_path: Path) -> None:
    data = fixture_bytes("qemu-7.2-aarch64.mig.gz")
    data[0:4] = b"QEVN"
    error = reject(tmp_path, data)
    assert error.offset == 0 and "QEVM" in error.expected and error.found == "0x5145564e"


def test_bad_version(tmp_path: Path) -> None:
    data = fixture_bytes("qemu-7.2-aarch64.mig.gz")
    data[7] = 2
    assert reject(tmp_path, data).offset == 4


def test_trailing_bytes_are_rejected(tmp_path: Path) -> None:
    data = fixture_bytes("qemu-7.2-ppc64.mig.gz")
    summary = read_stream(DATA / "qemu-7.2-ppc64.mig.gz")
    error = reject(tmp_path, data + b"\0\0\0")
    assert error.offset == summary.vmdesc_offset and error.found.endswith("then 3 more bytes")


def _section(data: bytes, idstr: str) -> int:
    """The offset of the first section named ``idstr``, by the reader."""
    path = Path(tempfile.mkdtemp()) / "s.mig"
    path.write_bytes(bytes(data))
    try:
        return next(s.offset for s in read_stream(path).sections if s.idstr == idstr)
    finally:
        shutil.rmtree(path.parent)


@pytest.mark.parametrize("fixture", ["qemu-7.2-x86_64.mig.gz", "qemu-11.1.3-s390x.mig.gz"])
def test_corrupted_section_header(tmp_path: Path, fixture: str) -> None:
    data = fixture_bytes(fixture)
    at = _section(data, "cpu")
    data[at + 6] = 0x01  # the first letter of "cpu": not printable
    error = reject(tmp_path, data)
    assert error.offset == at + 5 and "printable" in error.expected


def test_unknown_section_type(tmp_path: Path) -> None:
    data = fixture_bytes("qemu-11.1.3-ppc64.mig.gz")
    at = _section(data, "timer")
    data[at] = 0x09
    error = reject(tmp_path, data)
    assert error.offset == at and error.found == "0x09"


def test_footer_of_another_section(tmp_path: Path) -> None:
    data = fixture_bytes("qemu-7.2-x86_64.mig.gz")
    at = _section(data, "timer")
    after = _section(data, "cpu_common")  # the next one, after timer's footer
    assert data[after - 5] == 0x7E
    data[after - 1] ^= 0x40
    error = reject(tmp_path, data)
    assert error.offset == after - 4 and "footer of section id" in error.expected
    assert at < error.offset and error.found == "id 64"


def _first_page(data: bytes) -> int:
    """The offset of the first page record after the ram section's setup."""
    path = Path(tempfile.mkdtemp()) / "s.mig"
    path.write_bytes(bytes(data))
    try:
        ram = [s for s in read_stream(path).sections if s.idstr == "ram"]
        return ram[1].offset + 5  # PART/END header: type and section id
    finally:
        shutil.rmtree(path.parent)


@pytest.mark.parametrize("flags", [FLAG_PAGE | FLAG_ZERO, 0x400, 0x01, 0x80])
def test_invalid_ram_flags(tmp_path: Path, flags: int) -> None:
    data = fixture_bytes("qemu-11.1.3-x86_64.mig.gz")
    at = _first_page(data)
    header = struct.unpack(">Q", data[at : at + 8])[0]
    data[at : at + 8] = struct.pack(">Q", (header & ~0xFFF) | flags)
    error = reject(tmp_path, data)
    assert error.offset == at and "RAM flags" in error.expected


def test_page_of_an_unknown_block(tmp_path: Path) -> None:
    data = fixture_bytes("qemu-7.2-x86_64.mig.gz")
    at = _first_page(data)
    assert not data[at + 7] & 0x20  # the first record names its block
    data[at + 9] ^= 0x20  # its first letter, in another case
    error = reject(tmp_path, data)
    assert error.offset == at + 8 and "MEM_SIZE listed" in error.expected


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    broken = tmp_path / "broken.mig"
    broken.write_bytes(b"QEVM\0\0\0\3\7")
    assert main([str(DATA / "qemu-7.2-s390x.mig.gz")]) == 0
    assert "machine s390-ccw-virtio-7.2" in capsys.readouterr().out
    assert main([str(broken)]) == 1
    assert "truncated at byte 9 inside the configuration section" in capsys.readouterr().err


def save_stream(binary: str, arch: str, path: Path, *, paused: bool) -> None:
    """Have QEMU save the suite's guest to ``path`` through ``exec:``.

    :param paused: save it before it runs (``-S``: a small stream), or
        after it ran a pass, with a pair like the suite's tests use.
    """
    from migtest.arch import get_profile
    from migtest.endpoint import Endpoint
    from migtest.machine import QEMUMachine
    from migtest.pair import MigrationPair
    from migtest.params import SuiteParams
    from migtest.status import UNSUCCESSFUL

    profile = get_profile(arch)
    params = SuiteParams(profile, "tcg", binary, binary, strict=False)
    workdir = Path(tempfile.mkdtemp(prefix="migtest-stream-"))
    try:
        if not paused:
            with MigrationPair(params, workdir) as pair:
                pair.start()
                pair.allow_convergence()
                channel = pair.migrate("exec")
                pair.wait_for_completion()
                shutil.move(workdir / channel.path, path)  # the pair removes *.mig
            return
        shutil.copyfile(profile.guest_file(), workdir / profile.guest)
        args = [*params.qemu_args(Path(profile.guest)), "-S"]
        machine = QEMUMachine(binary, args, name="src", workdir=workdir)
        try:
            machine.launch()
            source = Endpoint(machine)
            source.migrate(f"exec:cat > {shlex.quote(str(path))}")
            source.wait_for_status("completed", fail_on=UNSUCCESSFUL)
        finally:
            machine.shutdown()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def test_stream_of_a_guest_that_ran(tmp_path: Path, x86_binary: str) -> None:
    path = tmp_path / "ran.mig"
    save_stream(x86_binary, "x86_64", path, paused=False)
    summary = check_stream(path)
    ram = [s for s in summary.sections if s.idstr == "ram"]
    # The guest wrote the first byte of each test page: ~100 MiB of pages.
    assert summary.pages["normal"] > 25_000 and len(ram) >= 3
    assert all(s.crossed_by in ("ram", "vmdesc") for s in summary.sections)


if __name__ == "__main__":
    versions, arches, out = sys.argv[1].split(","), sys.argv[2].split(","), Path(sys.argv[3])
    out.mkdir(parents=True, exist_ok=True)
    for version in versions:
        for arch in arches:
            raw = out / f"qemu-{version}-{arch}.mig"
            binary = Path.home() / f".cache/migtest/qemu/{version}/bin/qemu-system-{arch}"
            save_stream(str(binary), arch, raw, paused=True)
            Path(f"{raw}.gz").write_bytes(gzip.compress(raw.read_bytes(), 9, mtime=0))
            raw.unlink()
            print(f"{raw}.gz")


def test_a_stream_at_an_offset_is_read_from_there(tmp_path: Path) -> None:
    """``file:...,offset=N``: the bytes before N are not the stream's."""
    stream = gzip.decompress((DATA / "qemu-7.2-x86_64.mig.gz").read_bytes())
    saved = tmp_path / "at-offset.mig"
    saved.write_bytes(b"\x01" * 4096 + stream)
    with open(saved, "rb") as file:
        assert read_stream(file, offset=4096).ended_with_eof
    with open(saved, "rb") as file, pytest.raises(StreamError, match="magic"):
        read_stream(file, offset=4095)
