"""The feature strips under a timeline: drawn when the data shows the feature, never otherwise.

Each fixture is a hand-written ``migration.json`` shaped like QEMU 7.2's
answers, as a test of the suite records them (``settings`` included).
"""

from __future__ import annotations

import copy
import xml.etree.ElementTree as ET
from typing import Any, Dict, List

import pytest

from migtest.report.panels import STRIP_H, TLS_H
from migtest.report.timeline import HEIGHT, render_timeline_svg

SVG = "{http://www.w3.org/2000/svg}"
MIB = 1 << 20
PARAMETERS = {"multifd-channels": 2, "multifd-compression": "none", "multifd-zlib-level": 1,
              "multifd-zstd-level": 1, "tls-creds": "", "cpu-throttle-initial": 20,
              "cpu-throttle-increment": 10, "max-cpu-throttle": 99}  # fmt: skip


def sample(t: float, **more: Any) -> Dict[str, Any]:
    """A plain precopy's sample: every byte over the main channel."""
    values = {"t": t, "status": "active", "remaining": int((100 - 200 * t) * MIB),
              "transferred": int(300 * t * MIB), "mbps": 2400.0, "dirty-pages-rate": 100,
              "multifd-bytes": 0, "postcopy-bytes": 0, "postcopy-requests": 0,
              "duplicate": 13073}  # fmt: skip
    values.update(more)
    return values


def report(**parameters: Any) -> Dict[str, Any]:
    """A completed precopy, as ``Precopy.test_tcp`` records it."""
    samples = [sample(t / 10) for t in range(5)]
    final = {"status": "completed", "setup-time": 1, "total-time": 465, "downtime": 45,
             "ram": {k: v for k, v in samples[-1].items() if k not in ("t", "status")}}  # fmt: skip
    return {
        "test": "9-tests/migration/precopy.py:Precopy.test_tcp",
        "settings": {"parameters": dict(PARAMETERS, **parameters), "capabilities": ["events"]},
        "sides": {
            "src": {"start": 100.0, "samples": samples, "final": final,
                    "phases": [{"t": -0.0009, "status": "setup"},
                               {"t": 0.0038, "status": "active"},
                               {"t": 0.4, "status": "completed"}]},
            "dst": {"start": 99.5, "samples": [], "final": {"status": "completed"},
                    "phases": [{"t": 0.0, "status": "active"}]},
        },
    }  # fmt: skip


def with_samples(data: Dict[str, Any], **per_t: Any) -> Dict[str, Any]:
    """``data`` with every source sample (and the final ram) given ``key=f(t)``."""
    data = copy.deepcopy(data)
    src = data["sides"]["src"]
    for s in src["samples"]:
        s.update({key: f(s["t"]) for key, f in per_t.items()})
    last = src["samples"][-1]
    src["final"]["ram"].update({k: last[k] for k in per_t if k in last})
    return data


def draw(data: Dict[str, Any]) -> ET.Element:
    root = ET.fromstring(render_timeline_svg(data))
    assert root.tag == f"{SVG}svg"
    return root


def titles(root: ET.Element) -> List[str]:
    """The strips' titles: the bold texts under the timeline."""
    return [
        "".join(e.itertext())
        for e in root.iter(f"{SVG}text")
        if e.get("font-weight") == "600" and float(e.get("y", "0")) > HEIGHT
    ]


def words(root: ET.Element) -> List[str]:
    return ["".join(e.itertext()) for e in root.iter() if e.tag in (f"{SVG}text", f"{SVG}title")]


def height(root: ET.Element) -> int:
    return int(root.get("height", "0"))


MULTIFD = with_samples(report(**{"multifd-channels": 4}),
                       **{"multifd-bytes": lambda t: int(290 * t * MIB)})  # fmt: skip


def test_a_plain_precopy_has_no_strip_and_its_picture_is_the_old_one() -> None:
    plain = report()
    root = draw(plain)
    assert height(root) == HEIGHT
    assert titles(root) == []
    # Settings alone change nothing: the picture is drawn from the samples.
    del plain["settings"]
    assert render_timeline_svg(plain) == render_timeline_svg(report())


def test_multifd_strip_shows_the_channels_share_and_count() -> None:
    root = draw(MULTIFD)
    assert height(root) == HEIGHT + STRIP_H
    assert titles(root) == [
        "multifd: 4 channels · 96.7% of all bytes went through multifd channels"
    ]
    legend = words(root)
    assert "multifd channels together (MiB; QMP has no per-channel figure)" in legend
    assert "all channels (MiB)" in legend
    # Zero pages: 13073 of 4 KiB, flat; detection not among these settings.
    assert "zero pages (MiB)" in legend


def test_multifd_set_up_but_unused_is_not_claimed() -> None:
    """The capability and four channels, but every byte over the main channel:
    a strip would claim multifd carried the migration."""
    data = report(**{"multifd-channels": 4})
    data["settings"]["capabilities"].append("multifd")
    root = draw(data)
    assert not any("multifd" in w for w in words(root))
    assert height(root) == HEIGHT


def test_compression_and_zero_page_detection_are_named() -> None:
    data = copy.deepcopy(MULTIFD)
    data["settings"]["parameters"].update(
        {"multifd-compression": "zstd", "multifd-zstd-level": 2, "zero-page-detection": "legacy"}
    )
    root = draw(data)
    assert titles(root) == [
        "multifd: 4 channels · zstd compression level 2 · "
        "96.7% of all bytes went through multifd channels"
    ]
    assert "zero pages (MiB, detection legacy)" in words(root)


def test_nearly_all_is_not_rounded_up_to_all() -> None:
    data = with_samples(MULTIFD, **{"multifd-bytes": lambda t: int(300 * t * MIB) - 100})
    assert ">99.9% of all bytes" in titles(draw(data))[0]


def test_throttle_strip_in_percent_against_its_maximum() -> None:
    steps = {0.0: None, 0.1: 5, 0.2: 55, 0.3: 95, 0.4: 95}
    data = report(**{"cpu-throttle-initial": 5, "cpu-throttle-increment": 50,
                     "max-cpu-throttle": 95})  # fmt: skip
    for s in data["sides"]["src"]["samples"]:
        if steps[s["t"]] is not None:  # QEMU leaves it out until it throttles
            s["cpu-throttle-percentage"] = steps[s["t"]]
    root = draw(data)
    assert titles(root) == [
        "auto-converge: guest CPUs throttled · peak 95%, initial 5%, increment 50%, max 95%"
    ]
    assert {"max-cpu-throttle 95%", "100", "cpu-throttle-percentage (%)"} <= set(words(root))
    # A step line: each percentage holds until the next sample.
    line = next(p for p in root.iter(f"{SVG}polyline") if p.get("stroke") == "#c2410c")
    ys = [float(xy.split(",")[1]) for xy in line.get("points", "").split()]
    assert len(ys) == 8 and ys[0] == ys[1] and ys[2] == ys[3]


def test_postcopy_strip_with_the_destinations_blocktime() -> None:
    data = with_samples(
        report(),
        **{"postcopy-bytes": lambda t: int(max(t - 0.2, 0) * 500 * MIB),
           "postcopy-requests": lambda t: int(max(t - 0.2, 0) * 5000)},
    )  # fmt: skip
    data["sides"]["dst"]["final"]["postcopy-blocktime"] = 15
    root = draw(data)
    assert titles(root) == [
        "postcopy: 100.0 MiB after the switch · 1000 page requests · blocktime 15 ms (dst)"
    ]
    assert {"requests", "page requests (count, right axis)"} <= set(words(root))


def test_postcopy_without_blocktime_claims_none() -> None:
    data = with_samples(report(), **{"postcopy-requests": lambda t: 3})
    assert titles(draw(data)) == ["postcopy: 0.0 MiB after the switch · 3 page requests"]


def test_tls_strip_marks_the_setup_phase_and_says_what_it_includes() -> None:
    root = draw(report(**{"tls-creds": "tls0"}))
    assert height(root) == HEIGHT + TLS_H
    assert titles(root) == [
        "TLS (tls-creds tls0): QMP gives no handshake time; the setup status includes it"
    ]
    assert (
        "setup 4.7 ms, TLS handshake included; "
        "QEMU's setup-time 1 ms starts after the main channel's handshake"
    ) in words(root)
    bar = [r for r in root.iter(f"{SVG}rect") if r.get("fill") == "#1a7f37"]
    assert len(bar) == 1 and float(bar[0].get("width", "0")) >= 3


@pytest.mark.parametrize("creds", ["", None])
def test_no_tls_creds_no_tls_strip(creds: Any) -> None:
    data = report(**{"tls-creds": creds})
    assert not any("TLS" in w for w in words(draw(data)))


def test_strips_stack_in_order_inside_the_picture() -> None:
    data = copy.deepcopy(MULTIFD)
    data["settings"]["parameters"]["tls-creds"] = "tls0"
    root = draw(data)
    assert height(root) == HEIGHT + STRIP_H + TLS_H
    assert [t.split(":")[0] for t in titles(root)] == ["multifd", "TLS (tls-creds tls0)"]
    for element in root.iter():
        for name in ("y", "y1", "y2", "cy"):
            if element.get(name) is not None:
                assert 0 <= float(element.get(name, "")) <= height(root), element.attrib


def test_old_reports_without_settings_or_new_fields_still_draw() -> None:
    """A migration.json of before this change: no settings, no multifd-bytes."""
    data = report()
    del data["settings"]
    for s in data["sides"]["src"]["samples"]:
        for key in ("multifd-bytes", "duplicate", "postcopy-bytes", "postcopy-requests"):
            del s[key]
    assert height(draw(data)) == HEIGHT
