"""What Debian's archive holds, asked before a fetch of minutes starts.

debootstrap takes whatever version a suite holds today, while the table in
``lib/migtest/versions.py`` names exact ones.  Asking first (whether the
mirror answers for each suite, then what the host's apt, with indexes of
its own, finds there) turns a mirror out of reach or a suite that has moved
on into one line that says what to do, instead of a root of the wrong QEMU.
"""

from __future__ import annotations

import re
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

from migtest.versions import VERSIONS, QemuVersion

#: Seconds to wait for an answer from the archive before calling it unreachable.
ARCHIVE_TIMEOUT = 30.0
#: Seconds the private apt of ``--list`` may take to read the archive's indexes.
APT_TIMEOUT = 600.0


def archive_problem(mirror: str, suites: Sequence[str]) -> Optional[str]:
    """Why Debian's archive at ``mirror`` cannot give ``suites``, or ``None``."""
    for suite in suites:
        url = f"{mirror}/dists/{suite}/InRelease"
        try:
            with urllib.request.urlopen(url, timeout=ARCHIVE_TIMEOUT) as answer:
                answer.read(1)
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return f"the archive at {mirror} has no suite {suite} ({url}: 404)"
            return f"Debian's archive at {mirror} answered {exc.code} {exc.reason} for {url}"
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            return f"cannot reach Debian's archive at {mirror} ({reason})"
    return None


def apt_options(apt_dir: Path) -> List[str]:
    """Options that make the host's apt read and keep its indexes in ``apt_dir`` alone.

    The host's own lists and package state are neither read nor changed;
    its apt settings (proxies) still apply.
    """
    settings = [
        f"Dir::State={apt_dir / 'state'}",
        f"Dir::Cache={apt_dir / 'cache'}",
        f"Dir::Etc::SourceList={apt_dir / 'sources.list'}",
        f"Dir::Etc::SourceParts={apt_dir / 'sources.list.d'}",
        "Dir::State::status=/dev/null",
        "Debug::NoLocking=true",
        "APT::Sandbox::User=root",
        # This machine's mirror may be a dated snapshot, where testing's and
        # sid's Release files have expired; their signatures are still checked.
        "Acquire::Check-Valid-Until=false",
    ]
    return [word for setting in settings for word in ("-o", setting)]


def archive_versions(cache: Path, mirror: str) -> Dict[Tuple[str, str], str]:
    """What the archive holds: the version of each (package, suite) of the table.

    Asked of apt, with indexes of its own under ``<cache>/.apt``.
    Empty when the archive cannot be read.
    """
    apt_dir = cache / ".apt"
    for sub in ("state/lists/partial", "cache/archives/partial", "sources.list.d"):
        (apt_dir / sub).mkdir(parents=True, exist_ok=True)
    suites = dict.fromkeys(suite for version in VERSIONS.values() for suite in version.suites)
    (apt_dir / "sources.list").write_text(
        "".join(
            f"deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] {mirror} "
            f"{suite} main\n"
            for suite in suites
        )
    )
    options = apt_options(apt_dir)
    try:
        subprocess.run(
            ["apt-get", *options, "-qq", "update"],
            check=True,
            timeout=APT_TIMEOUT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
        )
        packages = sorted({p for version in VERSIONS.values() for p in version.packages})
        result = subprocess.run(
            ["apt-cache", *options, "madison", *packages],
            check=True,
            capture_output=True,
            text=True,
            timeout=APT_TIMEOUT,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        print(f"note: apt could not read the archive at {mirror}: {exc}", file=sys.stderr)
        return {}
    return parse_madison(result.stdout)


def parse_madison(text: str) -> Dict[Tuple[str, str], str]:
    """``apt-cache madison`` lines as {(package, suite): version}."""
    found: Dict[Tuple[str, str], str] = {}
    for line in text.splitlines():
        fields = [field.strip() for field in line.split("|")]
        if len(fields) == 3 and len(fields[2].split()) >= 2:
            suite = fields[2].split()[1].split("/")[0]
            found.setdefault((fields[0], suite), fields[1])
    return found


def upstream_of(debian_version: str) -> str:
    """QEMU's version in a Debian package version: ``1:10.0.13+ds-0+deb13u1`` -> ``10.0.13``."""
    match = re.match(r"(?:\d+:)?([0-9.]*[0-9])", debian_version)
    return match.group(1) if match else debian_version


def archive_mismatch(version: QemuVersion, held: Mapping[Tuple[str, str], str]) -> Optional[str]:
    """Why the archive does not give ``version`` as the table says, or ``None``."""
    missing = [p for p in version.packages if not any((p, s) in held for s in version.suites)]
    if missing:
        return (
            f"{'+'.join(version.suites)} has no {', '.join(missing)}: the table in "
            "lib/migtest/versions.py needs updating"
        )
    qemu = held.get(("qemu-system-x86", version.suite))
    if qemu is None or not version.matches(upstream_of(qemu)):
        return (
            f"{version.suite} has QEMU {qemu and upstream_of(qemu)}, not {version.label}: "
            "the table in lib/migtest/versions.py needs updating"
        )
    return None
