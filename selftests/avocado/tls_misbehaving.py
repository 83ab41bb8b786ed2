"""Avocado tests for selftests/test_tls.py: the TLS refusal checks, given a
migration QEMU should (and does) let through, must FAIL: a QEMU that let a
wrong key or host through would be caught the same way.

They live here, not in tests/migration, so that no suite run picks them up.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests" / "migration"))
from tls import Tls


class RightCredentialsExpectedRefused(Tls):
    """Matching credentials, checked as if they did not match.

    :avocado: enable
    """

    def test_psk_mismatch(self) -> None:
        self.psk_pair()
        self.migration_refused(src_says="TLS handshake failed", dst_says="TLS handshake failed")

    def test_x509_mismatch_host(self) -> None:
        self.x509_pair(("qemu.example.org",), hostname="qemu.example.org")
        self.migration_refused(
            src_says="does not match the hostname",
            dst_says="Not a migration stream",
            dst_exits=True,
        )
