"""QEMU's migration interface, typed: the names tests set and the answers they read.

Capabilities and parameters are spelled exactly as QMP spells them
(``qapi/migration.json``), so that a test reads like the QMP reference and
a misspelt name is a type error instead of a QMP error at run time.  The
lists span every QEMU this suite runs (7.2 to 11.x); whether the QEMU under
test has one is asked at run time (``query-migrate-capabilities``), never
assumed from these lists.

The answers are ``TypedDict``\\ s with ``total=False``: QEMU leaves members
out depending on the status and the version, so readers use ``.get``.
"""

from __future__ import annotations

from typing import Any, Dict, List, Literal, Tuple, TypedDict, Union

Capability = Literal[
    # 7.2
    "xbzrle", "rdma-pin-all", "auto-converge", "zero-blocks", "compress", "events",
    "postcopy-ram", "x-colo", "release-ram", "block", "return-path",
    "pause-before-switchover", "multifd", "dirty-bitmaps", "postcopy-blocktime",
    "late-block-activate", "x-ignore-shared", "validate-uuid", "background-snapshot",
    "zero-copy-send", "postcopy-preempt",
    # 8.1, 9.0
    "switchover-ack", "dirty-limit", "mapped-ram",
]  # fmt: skip

#: The QEMU version that added a capability, parameter or command argument
#: (``command.argument``), for those newer than 7.2, and the one that
#: removed it (QEMU's "since" notes and removed-features list): a QEMU
#: outside that span lacks it by design (a CANCEL), one inside by mistake.
ADDED_IN: Dict[str, Tuple[int, int]] = {
    "switchover-ack": (8, 1),
    "dirty-limit": (8, 1),
    "mapped-ram": (9, 0),
    "migrate.channels": (8, 2),
    "migrate-incoming.channels": (8, 2),
    "migrate-incoming.exit-on-error": (9, 1),
    "vcpu-dirty-limit": (8, 1),
    "x-vcpu-dirty-limit-period": (8, 1),
    "avail-switchover-bandwidth": (8, 2),
    "mode": (8, 2),
    "zero-page-detection": (9, 0),
    "direct-io": (9, 1),
    "multifd-qatzip-level": (9, 2),
    "cpr-exec-command": (10, 2),
    # Values of an enum argument: ``argument=value``.
    "transport=file": (8, 2),
    "mode=cpr-reboot": (8, 2),
    "mode=cpr-transfer": (10, 0),
    "mode=cpr-exec": (10, 2),
    "multifd-compression=qpl": (9, 1),
    "multifd-compression=uadk": (9, 1),
    "multifd-compression=qatzip": (9, 2),
}
#: Combinations of features that the schema cannot show, and the version
#: they work from.  Postcopy with multifd: 8.x to 10.0 refuse it
#: ("Postcopy is not yet compatible with multifd"); 7.2 accepts it, then
#: aborts or hangs (README, Findings); 10.1 made them work together.
WORKS_FROM: Dict[str, Tuple[int, int]] = {
    "postcopy-ram+multifd": (10, 1),
}
REMOVED_IN: Dict[str, Tuple[int, int]] = {
    "compress": (9, 1),
    "block": (9, 1),
    "zero-blocks": (11, 0),
    "migrate.detach": (11, 0),
    "compress-level": (9, 1),
    "compress-threads": (9, 1),
    "compress-wait-thread": (9, 1),
    "decompress-threads": (9, 1),
    "block-incremental": (9, 1),
}


def expected_in(feature: str, version: Tuple[int, int]) -> bool:
    """Whether QEMU ``version`` (major, minor) should have ``feature``.

    :param feature: a capability, or ``command.argument``.
    """
    return ADDED_IN.get(feature, (0, 0)) <= version < REMOVED_IN.get(feature, (999, 0))


def lifetime(feature: str) -> str:
    """When ``feature`` came or went, for messages: `` (added in QEMU 8.2)``."""
    if feature in ADDED_IN:
        return " (added in QEMU {}.{})".format(*ADDED_IN[feature])
    if feature in REMOVED_IN:
        return " (removed in QEMU {}.{})".format(*REMOVED_IN[feature])
    return ""


#: ``migrate-set-parameters`` arguments (and ``query-migrate-parameters``
#: members).  A TypedDict, so a dict literal with a misspelt key, or a
#: value of the wrong type, is a type error.
MigrationParameters = TypedDict(
    "MigrationParameters",
    {
        "announce-initial": int,
        "announce-max": int,
        "announce-rounds": int,
        "announce-step": int,
        "throttle-trigger-threshold": int,
        "cpu-throttle-initial": int,
        "cpu-throttle-increment": int,
        "cpu-throttle-tailslow": bool,
        "tls-creds": str,
        "tls-hostname": str,
        "tls-authz": str,
        "max-bandwidth": int,
        "avail-switchover-bandwidth": int,
        "downtime-limit": int,
        "x-checkpoint-delay": int,
        "multifd-channels": int,
        "xbzrle-cache-size": int,
        "max-postcopy-bandwidth": int,
        "max-cpu-throttle": int,
        "multifd-compression": str,
        "multifd-zlib-level": int,
        "multifd-qatzip-level": int,
        "multifd-zstd-level": int,
        "mode": str,
        "zero-page-detection": str,
        "direct-io": bool,
        "x-vcpu-dirty-limit-period": int,
        "vcpu-dirty-limit": int,
        "cpr-exec-command": List[str],
        # Removed in 9.1 (compression), still in 7.2.
        "compress-level": int,
        "compress-threads": int,
        "compress-wait-thread": bool,
        "decompress-threads": int,
        "block-incremental": bool,
    },
    total=False,
)

#: ``query-migrate``'s ``ram`` member.
RamStats = TypedDict(
    "RamStats",
    {
        "transferred": int,
        "remaining": int,
        "total": int,
        "duplicate": int,
        "normal": int,
        "normal-bytes": int,
        "dirty-pages-rate": int,
        "mbps": float,
        "dirty-sync-count": int,
        "postcopy-requests": int,
        "page-size": int,
        "multifd-bytes": int,
        "pages-per-second": int,
        "precopy-bytes": int,
        "downtime-bytes": int,
        "postcopy-bytes": int,
        "dirty-sync-missed-zero-copy": int,
    },
    total=False,
)

#: The answer to ``query-migrate``.  ``status`` stays a plain string: a
#: newer QEMU may report one that :data:`~migtest.status.Status` lacks.
MigrationInfo = TypedDict(
    "MigrationInfo",
    {
        "status": str,
        "ram": RamStats,
        "xbzrle-cache": Dict[str, Any],
        "vfio": Dict[str, Any],
        "total-time": int,
        "expected-downtime": int,
        "downtime": int,
        "setup-time": int,
        "cpu-throttle-percentage": int,
        "error-desc": str,
        "blocked-reasons": List[str],
        "postcopy-blocktime": int,
        "postcopy-vcpu-blocktime": List[int],
        "socket-address": List[Dict[str, Any]],
        "dirty-limit-throttle-time-per-round": int,
        "dirty-limit-ring-full-time": int,
    },
    total=False,
)

#: One element of the ``channels`` argument of ``migrate`` and
#: ``migrate-incoming`` (QEMU 8.2 on): ``{"channel-type": "main", "addr": {...}}``.
MigrationChannel = Dict[str, Any]


#: Where a migration goes: a URI, or (QEMU 8.2 on) a list of channels.
Target = Union[str, List[MigrationChannel]]


def target_arguments(target: Target) -> Dict[str, Any]:
    """The ``migrate``/``migrate-incoming`` arguments that name ``target``."""
    if isinstance(target, str):
        return {"uri": target}
    return {"channels": target}


#: The ``object-add`` arguments of TLS credentials (``qapi/crypto.json``'s
#: ``TlsCreds*Properties``, flat as QEMU 6.0 on takes them).
TlsCredsArguments = TypedDict(
    "TlsCredsArguments",
    {
        "qom-type": str,
        "id": str,
        "endpoint": Literal["server", "client"],
        "dir": str,
        "verify-peer": bool,
        "username": str,
    },
    total=False,
)
