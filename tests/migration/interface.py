"""How QEMU judges what it is told: ``migrate``'s target arguments, and every parameter via HMP."""

from typing import Any, Dict, List, Tuple

from migtest.checks import check_accounted, parse_hmp_parameters, round_trip_problem
from migtest.endpoint import Endpoint
from migtest.errors import CheckFailure, QMPError
from migtest.scenarios import live_precopy
from migtest.test import MigrationTest

#: Parameter -> (what ``migrate_set_parameter`` is given, what
#: ``query-migrate-parameters`` must then read).  Each is valid and none is
#: the default, in every version that has the parameter.  Sizes carry the
#: unit ``B``: HMP reads a bare number as MiB for max-bandwidth and
#: avail-switchover-bandwidth, and as bytes for max-postcopy-bandwidth.
VALUES: Dict[str, Tuple[str, Any]] = {
    "announce-initial": ("60", 60),
    "announce-max": ("560", 560),
    "announce-rounds": ("6", 6),
    "announce-step": ("110", 110),
    "avail-switchover-bandwidth": ("100000000B", 100_000_000),
    "block-incremental": ("on", True),
    "compress-level": ("2", 2),
    "compress-threads": ("4", 4),
    "compress-wait-thread": ("off", False),
    "cpr-exec-command": ("/bin/true migtest", ["/bin/true", "migtest"]),
    "cpu-throttle-increment": ("15", 15),
    "cpu-throttle-initial": ("25", 25),
    "cpu-throttle-tailslow": ("on", True),
    "decompress-threads": ("3", 3),
    "direct-io": ("on", True),
    "downtime-limit": ("250", 250),
    "max-bandwidth": ("100000000B", 100_000_000),
    "max-cpu-throttle": ("90", 90),
    "max-postcopy-bandwidth": ("50000000B", 50_000_000),
    "mode": ("cpr-reboot", "cpr-reboot"),
    "multifd-channels": ("4", 4),
    "multifd-compression": ("zlib", "zlib"),
    "multifd-qatzip-level": ("5", 5),
    "multifd-zlib-level": ("5", 5),
    "multifd-zstd-level": ("5", 5),
    "throttle-trigger-threshold": ("60", 60),
    # Names of objects: QEMU looks them up only when a migration starts.
    "tls-authz": ("authz0", "authz0"),
    "tls-creds": ("creds0", "creds0"),
    "tls-hostname": ("migtest.example", "migtest.example"),
    "vcpu-dirty-limit": ("2", 2),
    "x-checkpoint-delay": ("10000", 10_000),
    # A power of 2 from 1 MiB to 1024 MiB (11.1 on).
    "x-rdma-chunk-size": ("2097152B", 2 << 20),
    "x-vcpu-dirty-limit-period": ("500", 500),
    "xbzrle-cache-size": ("33554432B", 32 << 20),
    "zero-page-detection": ("legacy", "legacy"),
}
#: The parameters HMP cannot set, and why.
NOT_SETTABLE: Dict[str, str] = {
    "block-bitmap-mapping": "HMP refuses it: 'can only be set through QMP'",
}
#: The parameters ``info migrate_parameters`` does not show, and why: the
#: round trip reads them back through QMP only.
NOT_SHOWN: Dict[str, str] = {
    "multifd-zlib-level": "hmp_info_migrate_parameters() prints no compression level",
    "multifd-zstd-level": "hmp_info_migrate_parameters() prints no compression level",
    "multifd-qatzip-level": "hmp_info_migrate_parameters() prints no compression level",
}


class Interface(MigrationTest):
    """QEMU's migration commands take what they document, and refuse what they forbid.

    ``migrate`` and ``migrate-incoming`` take a ``uri`` or a ``channels``
    list (QEMU 8.2 on), one or the other: both, or neither, is refused,
    and refused before anything starts.  Every migration parameter that
    HMP's ``migrate_set_parameter`` takes is set to what it is given,
    as QMP and ``info migrate_parameters`` read it back.  The parameters
    are asked of the QEMU under test, and each is set here or listed
    with why not, so a new version's cannot go unnoticed.

    :avocado: enable
    :avocado: tags=migration,interface
    :avocado: tags=arch:x86_64,arch:aarch64,arch:s390x,arch:ppc64,arch:riscv64
    """

    def assert_target_refused(self, arguments: Dict[str, Any]) -> None:
        """``migrate`` and ``migrate-incoming`` given ``arguments`` are refused, naming both."""
        pair = self.pair
        for side, command in ((pair.src, "migrate"), (pair.dst, "migrate-incoming")):
            side.require_arguments(command, ["channels"])
            with self.assertRaises(QMPError, msg=f"{command} took {sorted(arguments)}") as caught:
                side.send_migrate_command(command, arguments)
            desc = caught.exception.desc
            self.log.info("%s %s refused: %s", command, sorted(arguments), desc)
            for name in ("uri", "channels"):
                self.assertIn(name, desc, f"{command}'s refusal does not name {name}")
            self.assertEqual(side.status_history(), [], f"{side.name} announced a migration")

    def refused_then_migrates(self, arguments: Dict[str, Any]) -> None:
        """Both commands refuse ``arguments``; the guest runs on, and then migrates."""
        pair = self.start_pair()
        self.assert_target_refused(arguments)
        self.assert_guest_runs(pair.src.machine)
        live_precopy(pair, "unix")
        self.verify_migration()

    def test_uri_and_channels(self) -> None:
        """A ``uri`` and a ``channels`` list together are refused (QEMU 8.2 on).

        :avocado: tags=unix,channels
        """
        path = f"{self.workdir}/refused.sock"
        channels = [
            {"channel-type": "main", "addr": {"transport": "socket", "type": "unix", "path": path}}
        ]
        self.refused_then_migrates({"uri": f"unix:{path}", "channels": channels})

    def test_neither_uri_nor_channels(self) -> None:
        """No target at all is refused (QEMU 8.2 on, when ``uri`` became optional).

        :avocado: tags=unix,channels
        """
        self.refused_then_migrates({})

    def test_hmp_parameter_round_trip(self) -> None:
        """Each parameter set through HMP reads back as set, through QMP and HMP.

        :avocado: tags=hmp
        """
        src = self.start_pair().src
        names = src.parameter_names()
        check_accounted(names, VALUES, NOT_SETTABLE)
        problems = [p for name in sorted(names & VALUES.keys()) for p in hmp_round_trip(src, name)]
        shown = parse_hmp_parameters(src.hmp("info migrate_parameters"))
        problems += [
            f"{name}: listed as not shown, but info migrate_parameters shows {shown[name]!r}"
            for name in sorted(names & NOT_SHOWN.keys() & shown.keys())
        ]
        for problem in problems:
            self.log.error("%s", problem)
        if problems:
            raise CheckFailure("HMP parameter round trip:\n" + "\n".join(problems), problems)
        self.log.info("set through HMP: %s", ", ".join(sorted(names & VALUES.keys())))


def hmp_round_trip(side: Endpoint, name: str) -> List[str]:
    """Set parameter ``name`` with HMP to its :data:`VALUES` entry; what went wrong."""
    text, wanted = VALUES[name]
    said = side.hmp(f"migrate_set_parameter {name} {text}")
    queried = side.parameters().get(name)
    info = parse_hmp_parameters(side.hmp("info migrate_parameters"))
    shown = None if name in NOT_SHOWN else info.get(name, "nothing")
    problem = round_trip_problem(name, wanted, said, queried, shown)
    return [problem] if problem else []
