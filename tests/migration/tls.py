"""TLS on the migration stream, with credentials each test makes for itself."""

from pathlib import Path
from typing import Optional, Sequence

from migtest.checks import check_multifd_used
from migtest.qapi import Capability, TlsCredsArguments
from migtest.scenarios import live_precopy, postcopy, postcopy_recovered
from migtest.test import MigrationTest
from migtest.tls import (
    CertificateAuthority,
    psk_arguments,
    write_psk,
    x509_arguments,
)
from migtest.verify import RUN_TIMEOUT

#: What a source says when the server cuts it off after the handshake:
#: whichever write failed first (7.2: "Cannot write to TLS channel:
#: Input/output error"; 11.1.3: "Cannot uncork TLS output: Error in the
#: push function."; 10.0.2, 10.0.13 and 11.1.2: "Unable to write to
#: socket: Connection reset by peer").
SOURCE_CUT_OFF = r"Cannot (write to|uncork) TLS|Unable to write to socket"


class Tls(MigrationTest):
    """Migration over TLS: it completes with matching credentials, and is refused without.

    A refused migration must end the way QEMU's own tests say: the source
    in ``failed`` with the TLS error, its guest running on; the destination
    either still waiting (a failed handshake leaves it listening) or gone
    with an error (a certificate it rejects ends it), never ``completed``.

    :avocado: enable
    :avocado: tags=migration,tls,tcp
    :avocado: tags=arch:x86_64,arch:aarch64,arch:s390x,arch:ppc64,arch:riscv64
    """

    def credentials(self, name: str) -> Path:
        """A directory of the test's own for one side's credentials."""
        return Path(self.workdir) / f"tls-{name}"

    def tls_pair(
        self,
        src: TlsCredsArguments,
        dst: TlsCredsArguments,
        hostname: Optional[str] = None,
        dst_paused: bool = True,
    ) -> None:
        """A pair whose migration runs over TLS with ``src``'s and ``dst``'s credentials."""
        pair = self.start_pair(dst_paused=dst_paused)
        for side, credentials in ((pair.dst, dst), (pair.src, src)):
            side.add_tls_credentials(credentials)
            side.set_parameters({"tls-creds": credentials["id"]})
        if hostname is not None:
            pair.src.set_parameters({"tls-hostname": hostname})

    def migrate_over_tls(self, channel: str = "tcp") -> None:
        """Live precopy, held back for two syncs, then verified byte for byte."""
        live_precopy(self.pair, channel)
        self.verify_migration()

    def migration_refused(
        self, *, src_says: str, dst_says: Optional[str], dst_exits: bool = False
    ) -> None:
        """The migration is refused as QEMU promises: the source fails and runs on.

        :param src_says: a pattern the source's ``error-desc`` must match.
        :param dst_says: a pattern of what the destination must print, why
            it refused; ``None`` where it has no say (the source gave up).
        :param dst_exits: whether the destination must exit with an error
            (a server the client left mid-handshake); otherwise it must
            wait on, its migration neither completed nor failed.
        """
        pair = self.pair
        pair.allow_convergence()
        pair.migrate("tcp")
        info = pair.src.wait_for_status("failed", fail_on=("completed",))
        self.assertRegex(info.get("error-desc", ""), src_says, "the source's error names the cause")
        self.assert_guest_runs(pair.src.machine)
        if dst_says is not None:
            pair.dst.machine.wait_for_output(dst_says, timeout=RUN_TIMEOUT)
        if dst_exits:
            code = pair.dst.machine.wait_for_exit(timeout=RUN_TIMEOUT)
            self.assertNotEqual(code, 0, "the destination exits with an error")
        else:
            self.assertTrue(pair.dst.machine.is_running(), "the destination waits on")
            history = pair.dst.status_history()
            self.assertFalse({"completed", "failed"} & set(history), f"destination: {history}")

    # -- PSK --------------------------------------------------------------------

    def psk_pair(self, src_key: Optional[bytes] = None, dst_paused: bool = True) -> None:
        """PSK credentials; the source's key is the destination's unless ``src_key``."""
        key = write_psk(self.credentials("dst"))
        write_psk(self.credentials("src"), key if src_key is None else src_key)
        self.tls_pair(
            psk_arguments("client", self.credentials("src")),
            psk_arguments("server", self.credentials("dst")),
            dst_paused=dst_paused,
        )

    def multifd_over_tls(self) -> None:
        """Multifd on both sides: every channel does its own TLS handshake."""
        self.pair.set_capabilities({"multifd": True})
        self.pair.set_parameters({"multifd-channels": 4})

    def test_psk_match(self) -> None:
        """Both sides hold the same pre-shared key: the migration completes.

        :avocado: tags=qtest-7.2
        """
        self.psk_pair()
        self.migrate_over_tls()

    def test_psk_over_unix(self) -> None:
        """The same over a unix socket: PSK needs no hostname.

        :avocado: tags=qtest-7.2
        """
        self.psk_pair()
        self.migrate_over_tls("unix")

    def test_psk_mismatch(self) -> None:
        """The source's key is not the destination's: the handshake fails.

        :avocado: tags=qtest-7.2
        """
        self.psk_pair(src_key=b"\x00" * 32)
        self.migration_refused(src_says="TLS handshake failed", dst_says="TLS handshake failed")

    def test_no_tls(self) -> None:
        """tls-creds set back to empty: a plain migration, credentials unused."""
        self.psk_pair()
        self.pair.set_parameters({"tls-creds": ""})
        self.migrate_over_tls()

    # -- x509 -------------------------------------------------------------------

    def x509_pair(
        self,
        server_names: Sequence[str] = ("localhost", "127.0.0.1"),
        hostname: Optional[str] = None,
    ) -> None:
        """x509 credentials of one CA; the server's certificate names ``server_names``."""
        ca = CertificateAuthority()
        ca.issue_server(self.credentials("dst"), server_names)
        ca.issue_client(self.credentials("src"))
        self.tls_pair(
            x509_arguments("client", self.credentials("src")),
            x509_arguments("server", self.credentials("dst")),
            hostname,
        )

    def test_x509_default_host(self) -> None:
        """The server's certificate names 127.0.0.1, the address the source dials.

        :avocado: tags=qtest-7.2
        """
        self.x509_pair()
        self.migrate_over_tls()

    def test_x509_override_host(self) -> None:
        """tls-hostname names the server instead of the address dialled.

        :avocado: tags=qtest-7.2
        """
        self.x509_pair(("qemu.example.org",), hostname="qemu.example.org")
        self.migrate_over_tls()

    def test_x509_hostile_client(self) -> None:
        """The client's certificate is of another CA (of the same name): refused.

        :avocado: tags=qtest-7.2
        """
        ca = CertificateAuthority()
        hostile = CertificateAuthority(ca.name)
        ca.issue_server(self.credentials("dst"))
        hostile.issue_client(self.credentials("src"), also_trust=[ca])
        self.tls_pair(
            x509_arguments("client", self.credentials("src")),
            x509_arguments("server", self.credentials("dst")),
        )
        self.migration_refused(
            src_says=SOURCE_CUT_OFF, dst_says="The certificate hasn't got a known issuer"
        )

    def anonymous_client_pair(self, server_verifies: bool) -> None:
        """A client with the CA's certificate only, none of its own."""
        ca = CertificateAuthority()
        ca.issue_server(self.credentials("dst"))
        ca.write_trust(self.credentials("src"))
        self.tls_pair(
            x509_arguments("client", self.credentials("src")),
            x509_arguments("server", self.credentials("dst"), verify_peer=server_verifies),
        )

    def test_x509_reject_anon_client(self) -> None:
        """A client without a certificate, a server that verifies clients: refused.

        :avocado: tags=qtest-7.2
        """
        self.anonymous_client_pair(server_verifies=True)
        self.migration_refused(src_says=SOURCE_CUT_OFF, dst_says="No certificate was found")

    def test_x509_allow_anon_client(self) -> None:
        """A client without a certificate, a server that does not ask: completes.

        :avocado: tags=qtest-7.2
        """
        self.anonymous_client_pair(server_verifies=False)
        self.migrate_over_tls()

    def test_x509_friendly_client(self) -> None:
        """The server lets in only the client it names (``tls-authz``): that one completes.

        :avocado: tags=qtest-7.2
        """
        self.x509_pair()
        self.authorize_client("CN=migtest client")
        self.migrate_over_tls()

    def test_x509_unauthorized_client(self) -> None:
        """A client of the right CA, but not the one ``tls-authz`` names: refused."""
        self.x509_pair()
        self.authorize_client("CN=another client")
        self.migration_refused(
            src_says=SOURCE_CUT_OFF, dst_says="authz check for CN=migtest client is denied"
        )

    def authorize_client(self, identity: str) -> None:
        """The destination lets in only the client whose certificate is ``identity``."""
        self.pair.dst.add_authz("migtest-authz", identity)
        self.pair.dst.set_parameters({"tls-authz": "migtest-authz"})

    def test_x509_no_hostname(self) -> None:
        """The certificate names no host, and no tls-hostname: the source refuses."""
        ca = CertificateAuthority()
        ca.issue_nameless_server(self.credentials("dst"))
        ca.issue_client(self.credentials("src"))
        self.tls_pair(
            x509_arguments("client", self.credentials("src")),
            x509_arguments("server", self.credentials("dst")),
        )
        self.migration_refused(
            src_says="does not match the hostname 127.0.0.1",
            dst_says="Not a migration stream",
            dst_exits=True,
        )

    def test_x509_mismatch_host(self) -> None:
        """The certificate names another host: the source refuses the server.

        :avocado: tags=qtest-7.2
        """
        self.x509_pair(("qemu.example.org",), hostname="other.example.org")
        self.migration_refused(
            src_says="does not match the hostname other.example.org",
            dst_says="Not a migration stream",
            dst_exits=True,
        )

    # -- multifd ----------------------------------------------------------------

    def test_multifd_psk_match(self) -> None:
        """Four multifd channels, each over PSK: the migration completes.

        :avocado: tags=qtest-7.2
        """
        self.psk_pair()
        self.multifd_over_tls()
        final = live_precopy(self.pair, "tcp")
        check_multifd_used(final["ram"])
        self.verify_migration()

    def test_multifd_psk_mismatch(self) -> None:
        """The same with a key the destination does not hold: refused.

        :avocado: tags=qtest-7.2
        """
        self.psk_pair(src_key=b"\x00" * 32)
        self.multifd_over_tls()
        self.migration_refused(src_says="TLS handshake failed", dst_says="TLS handshake failed")

    def test_multifd_x509(self) -> None:
        """Four multifd channels, each over x509: the migration completes.

        :avocado: tags=qtest-7.2
        """
        self.x509_pair()
        self.multifd_over_tls()
        final = live_precopy(self.pair, "tcp")
        check_multifd_used(final["ram"])
        self.verify_migration()

    def test_multifd_x509_mismatch_host(self) -> None:
        """Multifd to a server whose certificate names another host: refused.

        Unlike a single channel, the destination waits on (7.2 and 11.1.3
        alike): presumably it starts loading only once every channel is
        there, so the aborted handshake leaves it nothing to fail on.

        :avocado: tags=qtest-7.2
        """
        self.x509_pair(("qemu.example.org",), hostname="other.example.org")
        self.multifd_over_tls()
        self.migration_refused(
            src_says="does not match the hostname other.example.org", dst_says=None
        )

    # -- postcopy ---------------------------------------------------------------

    def postcopy_psk_pair(self, *more: Capability) -> None:
        """PSK credentials, a running destination, postcopy (and ``more``) enabled."""
        self.psk_pair(dst_paused=False)
        self.enable_postcopy(*more)

    def test_postcopy_psk(self) -> None:
        """Postcopy over PSK: the destination pulls pages through TLS.

        :avocado: tags=qtest-7.2
        """
        self.postcopy_psk_pair()
        postcopy(self.pair, "tcp")
        self.verify_migration()

    def test_postcopy_recovery_psk(self) -> None:
        """Postcopy over PSK paused, then recovered over a new TLS connection.

        :avocado: tags=qtest-7.2
        """
        self.postcopy_psk_pair()
        postcopy_recovered(self.pair, "tcp", "tcp")
        self.verify_migration()

    def test_postcopy_preempt_psk(self) -> None:
        """Postcopy-preempt over PSK: its second channel does a handshake too.

        :avocado: tags=qtest-7.2
        """
        self.postcopy_psk_pair("postcopy-preempt")
        postcopy(self.pair, "tcp")
        self.verify_migration()

    def test_postcopy_preempt_recovery_psk(self) -> None:
        """Postcopy-preempt over PSK, paused and recovered.

        :avocado: tags=qtest-7.2
        """
        self.postcopy_psk_pair("postcopy-preempt")
        postcopy_recovered(self.pair, "tcp", "tcp")
        self.verify_migration()
