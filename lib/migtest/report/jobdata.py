"""What an Avocado job left on disk, read back for the report pages.

A job's results directory holds everything the pages show: Avocado's
``results.json`` (each test's status and log directory), ``jobdata/`` (the
variants and ``-p`` parameters the job ran), ``sysinfo/`` (the host's name,
unless the job ran with ``--disable-sysinfo``), and in each test's output
directory the ``migration.json`` the test wrote (what QEMU reported, and
which QEMU on which accelerator).  Nothing here needs the job's host or its
QEMU: a copied directory reads the same anywhere.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple

from ..arch import DEFAULT_ARCH
from ..artifacts import METRICS_FILE, PLOT_FILE, TRACE_FILE
from ..errors import MigtestError
from ..host import DEFAULT_ACCEL

#: A test's parameters when neither its variant nor ``-p`` set them (README).
DEFAULTS = {"arch": DEFAULT_ARCH, "accel": DEFAULT_ACCEL}
#: Statuses in the order the header counts them, with results.json's keys.
TOTALS = (("PASS", "pass"), ("FAIL", "failures"), ("ERROR", "errors"), ("WARN", "warn"),
          ("INTERRUPTED", "interrupt"), ("CANCEL", "cancel"), ("SKIP", "skip"))  # fmt: skip
#: The key of ``migration.json`` with the downtime the guest itself counted
#: (ms), next to QEMU's own ``downtime``; older tests do not write it.
GUEST_FELT_DOWNTIME = "guest_felt_downtime_ms"


class NotAJobDirectory(MigtestError):
    """The directory given holds no Avocado job results."""


@dataclass(frozen=True)
class Origin:
    """Where and with what a test ran: what tells two runs of one test apart."""

    arch: str
    accel: str
    #: The QEMU versions, ``7.2.22`` or ``7.2.22 → 10.0.13``; empty when unknown.
    qemu: str
    #: The host's name; empty when neither the test nor the job recorded it.
    host: str

    def label(self) -> str:
        """The origin in one line: ``x86_64 / tcg / QEMU 7.2.22 / vm``."""
        return " / ".join(
            [self.arch, self.accel]
            + ([f"QEMU {self.qemu}"] if self.qemu else [])
            + ([self.host] if self.host else [])
        )


def qemu_pair(src: str, dst: str) -> str:
    """One version, or the pair when source and destination differ."""
    return src if src == dst else f"{src} → {dst}"


@dataclass(frozen=True)
class TestRun:
    """One test of the job, on one variant."""

    #: The test without its variant: ``tests/migration/precopy.py:Precopy.test_unix``.
    name: str
    #: Avocado's variant id (``run-accel-tcg-arch-x86_64-652f``), None without variants.
    variant_id: Optional[str]
    status: str
    elapsed: Optional[float]
    fail_reason: str
    whiteboard: str
    #: Where the test's logs are in this job directory (they may be missing).
    logdir: Path
    origin: Origin
    #: The test's ``migration.json``; empty when it wrote none or it is unreadable.
    metrics: Mapping[str, Any] = field(default_factory=dict)
    metrics_error: str = ""

    @property
    def debug_log(self) -> Path:
        return self.logdir / "debug.log"

    @property
    def qmp_log(self) -> Path:
        return self.logdir / TRACE_FILE

    @property
    def plot(self) -> Path:
        return self.logdir / "data" / PLOT_FILE


@dataclass(frozen=True)
class Job:
    """What the report shows of a job."""

    directory: Path
    job_id: str
    start: str
    elapsed: Optional[float]
    totals: Dict[str, int]
    runs: List[TestRun]
    #: The name ``sysinfo`` recorded of the host the job ran on; empty without it.
    host: str
    #: Avocado's spawner: ``process`` runs the tests on the job's host; with
    #: another (``remote``, ``podman``...) they ran elsewhere.
    spawner: str = "process"


def load_job(directory: Path) -> Job:
    """Read an Avocado job results directory.

    :raise NotAJobDirectory: ``directory`` is missing, or has no readable
        ``results.json`` as Avocado writes it.
    """
    results = _read_results(directory)
    host = job_host(directory)
    spawner = _spawner(directory)
    # A test's migration.json may name its host; else it is the job's, when
    # the job ran its tests itself.
    tests_host = host if spawner == "process" else ""
    params = variant_params(directory)
    entries = [_entry(directory, entry) for entry in results["tests"]]
    variants = _variant_origins(entries, params, tests_host)
    runs = [
        TestRun(
            **fields,
            origin=_origin(fields["metrics"], tests_host) or variants[fields["variant_id"]],
        )
        for fields in entries
    ]
    return Job(
        directory=directory,
        job_id=str(results.get("job_id", directory.name)),
        start=str(results.get("start", "")).split(".")[0],
        elapsed=results.get("time"),
        totals={status: int(results.get(key, 0)) for status, key in TOTALS},
        runs=runs,
        host=host,
        spawner=spawner,
    )


def _read_results(directory: Path) -> Dict[str, Any]:
    what = f"{directory} is not an Avocado job results directory"
    if not directory.is_dir():
        raise NotAJobDirectory(f"{what}: it does not exist or is not a directory")
    path = directory / "results.json"
    if not path.is_file():
        held = [p.parent for p in directory.glob("*/results.json") if not p.parent.is_symlink()]
        hint = f"; it holds {len(held)} jobs: name them, e.g. {directory}/job-*" if held else ""
        if (directory / "latest" / "results.json").is_file():
            hint += f" (its latest job is {directory / 'latest'})"
        raise NotAJobDirectory(f"{what}: it has no results.json{hint}")
    try:
        results = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise NotAJobDirectory(f"{what}: cannot read {path}: {exc}") from exc
    if not isinstance(results, dict) or not isinstance(results.get("tests"), list):
        raise NotAJobDirectory(f"{what}: {path} has no list of tests")
    return results


def _entry(directory: Path, entry: Mapping[str, Any]) -> Dict[str, Any]:
    """One entry of results.json, with its metrics read from its logdir.

    The logdir recorded is absolute, and points to where the job first ran:
    only its name is kept, under this job's ``test-results``, so that a
    copied job is read (and linked to) in its copy, never in the original.
    """
    name, _, variant = str(entry.get("name", "?")).partition(";")
    recorded = Path(str(entry.get("logdir") or "missing-logdir"))
    logdir = directory / "test-results" / recorded.name
    metrics: Mapping[str, Any] = {}
    error = ""
    path = logdir / "data" / METRICS_FILE
    if path.is_file():
        try:
            metrics = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            error = f"unreadable {METRICS_FILE}: {exc}"
        if not isinstance(metrics, dict):
            metrics, error = {}, f"{METRICS_FILE} is not a JSON object"
    return dict(
        name=name,
        variant_id=variant or None,
        status=str(entry.get("status") or "?"),
        elapsed=entry.get("time_elapsed"),
        fail_reason=str(entry.get("fail_reason") or ""),
        whiteboard=str(entry.get("whiteboard") or ""),
        logdir=logdir,
        metrics=metrics,
        metrics_error=error,
    )


def job_host(directory: Path) -> str:
    """The host's name as Avocado's sysinfo recorded it, before or after the tests."""
    for moment in ("pre", "post"):
        try:
            name = (directory / "sysinfo" / moment / "hostname").read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        if name.strip():
            return name.strip()
    return ""


def _spawner(directory: Path) -> str:
    """The spawner the job ran its tests with (``--spawner``; ``process`` by default)."""
    args = _read_json(directory / "jobdata" / "args.json")
    named = args.get("run.spawner") if isinstance(args, dict) else None
    return named if isinstance(named, str) and named else "process"


def variant_params(directory: Path) -> Dict[Optional[str], Dict[str, str]]:
    """The ``arch`` and ``accel`` each variant sets, over the ``-p`` ones.

    Avocado keeps no parameters in results.json, but the variants it ran in
    ``jobdata/variants-*.json`` and the command line's ``-p`` in
    ``jobdata/args.json``.
    """
    jobdata = directory / "jobdata"
    given = dict(DEFAULTS)
    args = _read_json(jobdata / "args.json")
    if isinstance(args, dict):
        for pair in args.get("run.test_parameters") or []:
            if isinstance(pair, list) and len(pair) == 2:
                given[str(pair[0])] = str(pair[1])
    params: Dict[Optional[str], Dict[str, str]] = {None: given}
    for path in sorted(jobdata.glob("variants-*.json")):
        for variant in _read_json(path) or []:
            values = dict(given)
            for _, leaves in variant.get("variant") or []:
                values.update({str(key): str(value) for _, key, value in leaves})
            params[variant.get("variant_id")] = values
    return params


def _read_json(path: Path) -> Any:
    """A JSON file's contents, or None: what jobdata lacks, defaults replace."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None


def _origin(metrics: Mapping[str, Any], host: str) -> Optional[Origin]:
    """What a test's ``migration.json`` says it ran: the accelerator ``auto``
    became, the versions the QEMUs reported, the host if the test named it."""
    if not (metrics.get("arch") and metrics.get("accel")):
        return None
    versions = metrics.get("qemu")
    qemu = ""
    if isinstance(versions, dict) and versions.get("src") and versions.get("dst"):
        qemu = qemu_pair(str(versions["src"]), str(versions["dst"]))
    named = metrics.get("host")
    return Origin(
        str(metrics["arch"]),
        str(metrics["accel"]),
        qemu,
        named if isinstance(named, str) and named else host,
    )


def _variant_origins(
    entries: List[Dict[str, Any]], params: Mapping[Optional[str], Mapping[str, str]], host: str
) -> Dict[Optional[str], Origin]:
    """What each variant ran, for its tests that wrote no ``migration.json``.

    The tests of a variant share their QEMU binaries and accelerator: the
    first of them with metrics tells the real ones; a variant without any
    is described by its parameters (``qemu_version``, ``_src``/``_dst``:
    labels such as ``7.2``, not the full version QEMU reports).
    """
    origins: Dict[Optional[str], Origin] = {}
    for fields in entries:
        measured = _origin(fields["metrics"], host)
        if measured and fields["variant_id"] not in origins:
            origins[fields["variant_id"]] = measured
    for fields in entries:
        variant = fields["variant_id"]
        if variant not in origins:
            given = params.get(variant, params[None])
            both = given.get("qemu_version", "")
            src = given.get("qemu_version_src", both)
            dst = given.get("qemu_version_dst", both)
            origins[variant] = Origin(
                given.get("arch", DEFAULT_ARCH),
                given.get("accel", DEFAULT_ACCEL),
                qemu_pair(src, dst),
                host,
            )
    return origins


def final(metrics: Mapping[str, Any]) -> Mapping[str, Any]:
    """The source's last ``query-migrate`` answer."""
    last = ((metrics.get("sides") or {}).get("src") or {}).get("final") or {}
    return last if isinstance(last, dict) else {}


def outcome(metrics: Mapping[str, Any]) -> str:
    """How the source's migration ended: its final status, else its last phase."""
    phases = ((metrics.get("sides") or {}).get("src") or {}).get("phases") or []
    return str(final(metrics).get("status") or (phases[-1].get("status") if phases else ""))


def guest_felt_downtime(metrics: Mapping[str, Any]) -> Tuple[Optional[float], str]:
    """The downtime the guest counted (ms), or why there is none to show.

    :return: ``(value, "")``, ``(None, "")`` when the test did not measure
        it, or ``(None, problem)`` when ``migration.json`` holds something
        other than a number of milliseconds.
    """
    value = metrics.get(GUEST_FELT_DOWNTIME)
    if value is None:
        return None, ""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None, f"{GUEST_FELT_DOWNTIME} is not a number: {value!r}"
    if value < 0:
        return None, f"{GUEST_FELT_DOWNTIME} is negative: {value!r}"
    return float(value), ""
