"""Each tampering fault on the stream of a guest that ran, and QEMU loading the result.

The host's QEMU saves a live precopy of the x86_64 guest (held back until
RAM was synced twice, then converging, as the suite's tests migrate) into a
file.  Each fault rewrites it; the judge of ``test_stream_tamper`` finds the
result well formed and changed as reported; a fresh destination loads it
without complaint; and the byte-for-byte comparison with the stopped
source fails naming the change.  The stream as saved loads into a
destination that compares equal: the comparison fails for the change only.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Tuple

import pytest
from conftest import qemu_or_skip
from test_stream_tamper import assert_rewritten_as_reported

from migtest.arch import ArchProfile, get_profile
from migtest.errors import CheckFailure
from migtest.pair import MigrationPair
from migtest.params import SuiteParams
from migtest.status import UNSUCCESSFUL
from migtest.stream.outcome import tamper_outcome
from migtest.stream.regions import counter_pages, page_range, untouched_pages
from migtest.stream.rewriter import StreamRewriter
from migtest.stream.tamper import (
    OneByteChanged,
    PageFault,
    PageRange,
    StalePageResent,
    TwoPagesSwapped,
    ZeroPageAsData,
    check_failure_names,
    require_survived,
)
from migtest.verify import assert_memory_identical

#: Bytes read from the saved stream at once, as a proxy gets them.
PIECE = 64 * 1024


@dataclass
class Saved:
    """A stream the source saved, with the source (stopped) to compare destinations with."""

    pair: MigrationPair
    stream: Path
    mtree: str


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Saved]:
    binary = qemu_or_skip("x86_64")
    params = SuiteParams(get_profile("x86_64"), "tcg", binary, binary, strict=False)
    workdir = tmp_path_factory.mktemp("tamper")
    stream = workdir / "live.stream"
    with MigrationPair(params, workdir) as pair:
        pair.start()
        pair.prevent_convergence()
        pair.src.migrate(f"exec:cat > {shlex.quote(str(stream))}")
        pair.src.wait_for_dirty_sync(2)
        pair.allow_convergence()
        pair.src.wait_for_status("completed", fail_on=UNSUCCESSFUL)
        try:
            yield Saved(pair, stream, pair.src.hmp("info mtree -f"))
        finally:
            stream.unlink()  # 250 MB: not for pytest to keep with its last runs


def load(saved: Saved, stream: Path) -> None:
    """A fresh destination, paused, loads ``stream``: QEMU must take it."""
    saved.pair.replace_destination()
    saved.pair.dst.listen(f"exec:cat {shlex.quote(str(stream))}")
    saved.pair.dst.wait_for_status("completed", fail_on=UNSUCCESSFUL)


def test_the_stream_as_saved_loads_and_compares_equal(saved: Saved) -> None:
    load(saved, saved.stream)
    assert_memory_identical(saved.pair)


@pytest.mark.parametrize(
    "make, pages",
    [
        (OneByteChanged, counter_pages),
        (TwoPagesSwapped, counter_pages),
        (ZeroPageAsData, untouched_pages),
        (StalePageResent, counter_pages),
    ],
    ids=["one-byte", "swap", "zero-as-data", "stale-copy"],
)
def test_qemu_takes_the_tampered_stream_and_the_comparison_names_the_change(
    saved: Saved,
    tmp_path: Path,
    make: Callable[[PageRange], PageFault],
    pages: Callable[[ArchProfile], Tuple[int, int]],
) -> None:
    region = page_range(saved.mtree, *pages(saved.pair.profile))
    fault = make(region)
    tampered = tmp_path / "tampered.stream"
    try:
        rewriter = StreamRewriter(fault)
        with open(saved.stream, "rb") as source, open(tampered, "wb") as target:
            while piece := source.read(PIECE):
                target.write(rewriter.feed(piece))
            target.write(rewriter.finish())
        changes = tamper_outcome(fault, [rewriter.report])
        require_survived(changes)
        with open(saved.stream, "rb") as original, open(tampered, "rb") as rewritten:
            assert_rewritten_as_reported(original, rewritten, changes, region)
        load(saved, tampered)
    finally:
        tampered.unlink(missing_ok=True)  # 250 MB
    with pytest.raises(CheckFailure) as caught:
        assert_memory_identical(saved.pair)
    check_failure_names(str(caught.value), changes)
