"""TLS credentials: what the files hold, checked with ``cryptography``, and
that a real QEMU loads them (it checks them as it creates the object)."""

from __future__ import annotations

import datetime
import ipaddress
import stat
import warnings
from pathlib import Path
from typing import TypeVar

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from test_strict import run_avocado

from migtest.errors import ConfigError, QMPError
from migtest.machine import QEMUMachine
from migtest.tls import (
    LOCAL_HOSTNAMES,
    PSK_BYTES,
    CertificateAuthority,
    anon_arguments,
    ffdhe2048_prime,
    psk_arguments,
    write_psk,
    x509_arguments,
)

# QEMU's file names, spelled out rather than imported: they are its contract.
SERVER_FILES = ["ca-cert.pem", "dh-params.pem", "server-cert.pem", "server-key.pem"]
CLIENT_FILES = ["ca-cert.pem", "client-cert.pem", "client-key.pem", "dh-params.pem"]

E = TypeVar("E", bound=x509.ExtensionType)


@pytest.fixture(scope="module")
def ca() -> CertificateAuthority:
    return CertificateAuthority()


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def load_cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def load_certs(path: Path) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(path.read_bytes())


def extension(cert: x509.Certificate, kind: type[E]) -> x509.Extension[E]:
    return cert.extensions.get_extension_for_class(kind)


# -- files ----------------------------------------------------------------------


def test_server_and_client_directories_hold_qemus_files_keys_private(
    ca: CertificateAuthority, tmp_path: Path
) -> None:
    server = ca.issue_server(tmp_path / "server")
    client = ca.issue_client(tmp_path / "client")
    assert server == tmp_path / "server" and client == tmp_path / "client"
    assert sorted(p.name for p in server.iterdir()) == SERVER_FILES
    assert sorted(p.name for p in client.iterdir()) == CLIENT_FILES
    for directory, endpoint in ((server, "server"), (client, "client")):
        assert mode(directory) == 0o700
        assert mode(directory / f"{endpoint}-key.pem") == 0o600
        key = serialization.load_pem_private_key(
            (directory / f"{endpoint}-key.pem").read_bytes(), password=None
        )
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        cert = load_cert(directory / f"{endpoint}-cert.pem")
        assert cert.public_key() == key.public_key(), "the key is not the certificate's"


def test_existing_key_file_is_made_private_again(ca: CertificateAuthority, tmp_path: Path) -> None:
    key = tmp_path / "server-key.pem"
    key.write_text("old")
    key.chmod(0o644)
    ca.issue_server(tmp_path)
    assert mode(key) == 0o600
    assert key.read_text().startswith("-----BEGIN PRIVATE KEY-----")


# -- certificates ------------------------------------------------------------------


def test_certificates_chain_to_their_ca(ca: CertificateAuthority, tmp_path: Path) -> None:
    ca.certificate.verify_directly_issued_by(ca.certificate)  # self-signed
    for endpoint in ("server", "client"):
        directory = getattr(ca, f"issue_{endpoint}")(tmp_path / endpoint)
        (trusted,) = load_certs(directory / "ca-cert.pem")
        assert trusted == ca.certificate
        load_cert(directory / f"{endpoint}-cert.pem").verify_directly_issued_by(trusted)


def test_hostile_ca_certificates_do_not_verify(ca: CertificateAuthority, tmp_path: Path) -> None:
    # Same name as the good CA: only the signature tells them apart.
    hostile = CertificateAuthority(ca.name)
    forged = load_cert(hostile.issue_client(tmp_path / "hostile") / "client-cert.pem")
    assert forged.issuer == ca.certificate.subject
    forged.verify_directly_issued_by(hostile.certificate)
    with pytest.raises(InvalidSignature):
        forged.verify_directly_issued_by(ca.certificate)
    # A hostile CA of another name does not even claim to be the issuer.
    other = load_cert(
        CertificateAuthority("evil").issue_server(tmp_path / "evil") / "server-cert.pem"
    )
    with pytest.raises(ValueError, match=r"[Ii]ssuer"):
        other.verify_directly_issued_by(ca.certificate)


def test_client_may_trust_other_cas_besides_its_own(
    ca: CertificateAuthority, tmp_path: Path
) -> None:
    """The hostile client: its certificate from its CA, the server's CA trusted too."""
    hostile = CertificateAuthority("migtest hostile CA")
    directory = hostile.issue_client(tmp_path, also_trust=[ca])
    assert load_certs(directory / "ca-cert.pem") == [hostile.certificate, ca.certificate]
    load_cert(directory / "client-cert.pem").verify_directly_issued_by(hostile.certificate)


def test_ca_carries_what_qemu_checks_of_a_ca(ca: CertificateAuthority) -> None:
    constraints = extension(ca.certificate, x509.BasicConstraints)
    assert constraints.critical and constraints.value.ca
    usage = extension(ca.certificate, x509.KeyUsage)
    assert usage.critical and usage.value.key_cert_sign
    assert not usage.value.digital_signature


@pytest.mark.parametrize(
    "endpoint, purpose",
    [("server", ExtendedKeyUsageOID.SERVER_AUTH), ("client", ExtendedKeyUsageOID.CLIENT_AUTH)],
)
def test_leaf_carries_what_qemu_checks(
    ca: CertificateAuthority, tmp_path: Path, endpoint: str, purpose: x509.ObjectIdentifier
) -> None:
    cert = load_cert(getattr(ca, f"issue_{endpoint}")(tmp_path) / f"{endpoint}-cert.pem")
    constraints = extension(cert, x509.BasicConstraints)
    assert constraints.critical and not constraints.value.ca
    usage = extension(cert, x509.KeyUsage)
    # QEMU up to 10.0.2 refuses a critical key usage without key encipherment.
    assert usage.critical and usage.value.digital_signature and usage.value.key_encipherment
    assert not usage.value.key_cert_sign
    assert list(extension(cert, x509.ExtendedKeyUsage).value) == [purpose]


def test_certificates_are_valid_from_an_hour_ago_for_a_day(
    ca: CertificateAuthority, tmp_path: Path
) -> None:
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = load_cert(ca.issue_server(tmp_path) / "server-cert.pem")
    for c in (ca.certificate, cert):
        assert c.not_valid_before_utc <= now - datetime.timedelta(minutes=59)
        assert c.not_valid_before_utc >= now - datetime.timedelta(minutes=61)
        assert now + datetime.timedelta(hours=23) <= c.not_valid_after_utc
        assert c.not_valid_after_utc <= now + datetime.timedelta(days=1, minutes=1)


def test_server_certificate_names_localhost_by_default(
    ca: CertificateAuthority, tmp_path: Path
) -> None:
    cert = load_cert(ca.issue_server(tmp_path) / "server-cert.pem")
    names = extension(cert, x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["localhost"]
    assert names.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
    ]
    assert set(LOCAL_HOSTNAMES) == {"localhost", "127.0.0.1", "::1"}


def test_server_certificate_names_only_the_hostnames_asked(
    ca: CertificateAuthority, tmp_path: Path
) -> None:
    cert = load_cert(ca.issue_server(tmp_path, ["wrong.invalid"]) / "server-cert.pem")
    names = extension(cert, x509.SubjectAlternativeName).value
    assert list(names) == [x509.DNSName("wrong.invalid")]
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "wrong.invalid"


def test_a_nameless_server_certificate_names_no_host(
    ca: CertificateAuthority, tmp_path: Path
) -> None:
    cert = load_cert(ca.issue_nameless_server(tmp_path) / "server-cert.pem")
    with pytest.raises(x509.ExtensionNotFound):
        extension(cert, x509.SubjectAlternativeName)
    (common_name,) = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    assert " " in str(common_name.value), "a common name that could be a host name"


def test_server_certificate_needs_a_hostname(ca: CertificateAuthority, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="hostnames"):
        ca.issue_server(tmp_path, [])


# -- PSK ------------------------------------------------------------------------


def test_dh_params_are_rfc_7919_ffdhe2048(tmp_path: Path) -> None:
    # What the RFC prints of the prime: its first and last 64 bits, and its size.
    prime = ffdhe2048_prime()
    assert prime.bit_length() == 2048
    assert prime >> 1984 == 0xFFFFFFFFFFFFFFFF
    assert (prime >> 1920) & (2**64 - 1) == 0xADF85458A2BB4A9A
    assert prime & (2**128 - 1) == 0x886B423861285C97FFFFFFFFFFFFFFFF
    # A safe prime: Fermat's test holds for p and for (p - 1) / 2.
    assert pow(3, prime - 1, prime) == 1
    assert pow(3, (prime - 1) // 2 - 1, (prime - 1) // 2) == 1
    write_psk(tmp_path)
    pem = (tmp_path / "dh-params.pem").read_bytes()
    assert pem.startswith(b"-----BEGIN DH PARAMETERS-----\n")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # cryptography deprecates finite-field DH
        numbers = serialization.load_pem_parameters(pem).parameter_numbers()
    assert (numbers.p, numbers.g) == (prime, 2)


def test_psk_file_is_username_colon_hex_key(tmp_path: Path) -> None:
    key = write_psk(tmp_path)
    assert len(key) == PSK_BYTES
    assert (tmp_path / "keys.psk").read_text() == f"qemu:{key.hex()}\n"
    assert mode(tmp_path / "keys.psk") == 0o600 and mode(tmp_path) == 0o700


def test_psk_keys_differ_unless_given(tmp_path: Path) -> None:
    key = write_psk(tmp_path / "server")
    assert write_psk(tmp_path / "client", key, "migration") == key
    assert (tmp_path / "client" / "keys.psk").read_text() == f"migration:{key.hex()}\n"
    assert write_psk(tmp_path / "other") != key


@pytest.mark.parametrize("username", ["", "a:b", "a\nb"])
def test_psk_username_must_read_back(tmp_path: Path, username: str) -> None:
    with pytest.raises(ConfigError, match="username"):
        write_psk(tmp_path, username=username)
    assert not (tmp_path / "keys.psk").exists()


def test_psk_key_must_not_be_empty(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="key"):
        write_psk(tmp_path, b"")


# -- object-add arguments ---------------------------------------------------------


def test_x509_arguments(tmp_path: Path) -> None:
    assert x509_arguments("server", tmp_path) == {
        "qom-type": "tls-creds-x509",
        "id": "tls0",
        "endpoint": "server",
        "dir": str(tmp_path),
        "verify-peer": True,
    }
    client = x509_arguments("client", tmp_path, object_id="c", verify_peer=False)
    assert client["id"] == "c" and client["endpoint"] == "client"
    assert client["verify-peer"] is False


def test_directory_is_made_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """QEMU runs in the machine's work directory: a relative one would be another."""
    monkeypatch.chdir(tmp_path)
    assert x509_arguments("client", Path("creds"))["dir"] == str(tmp_path / "creds")
    assert psk_arguments("client", Path("creds"))["dir"] == str(tmp_path / "creds")


def test_psk_arguments_name_a_user_on_the_client_only(tmp_path: Path) -> None:
    assert psk_arguments("server", tmp_path) == {
        "qom-type": "tls-creds-psk",
        "id": "tls0",
        "endpoint": "server",
        "dir": str(tmp_path),
    }
    assert psk_arguments("client", tmp_path)["username"] == "qemu"
    assert psk_arguments("client", tmp_path, username="other")["username"] == "other"
    with pytest.raises(ConfigError, match="username"):
        psk_arguments("server", tmp_path, username="qemu")


def test_anon_arguments() -> None:
    assert anon_arguments("client", object_id="a") == {
        "qom-type": "tls-creds-anon",
        "id": "a",
        "endpoint": "client",
    }


def test_unknown_endpoint_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="server or client"):
        x509_arguments("listener", tmp_path)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="endpoint"):
        anon_arguments("Server")  # type: ignore[arg-type]


# -- a real QEMU ------------------------------------------------------------------


def test_qemu_accepts_the_credentials_and_refuses_a_dir_without_ca(
    x86_binary: str, workdir: Path
) -> None:
    """QEMU reads and checks the files as it creates the object, before it
    answers ``object-add`` (QEMU's ``loaded`` property, removed in 9.2, would
    say nothing more).  QEMUs before 11 also generate DH parameters for a
    server then: up to a second or two each."""
    ca = CertificateAuthority()
    hostile = CertificateAuthority("migtest hostile CA")
    creds = workdir / "creds"
    key = write_psk(creds / "psk-server")
    write_psk(creds / "psk-client", key)
    accepted = [
        x509_arguments("server", ca.issue_server(creds / "server"), object_id="x509-server"),
        x509_arguments("client", ca.issue_client(creds / "client"), object_id="x509-client"),
        x509_arguments(
            "client",
            hostile.issue_client(creds / "hostile", also_trust=[ca]),
            object_id="x509-hostile-client",
        ),
        psk_arguments("server", creds / "psk-server", object_id="psk-server"),
        psk_arguments("client", creds / "psk-client", object_id="psk-client"),
        anon_arguments("server", object_id="anon-server"),
        anon_arguments("client", object_id="anon-client"),
    ]
    no_ca = ca.issue_client(creds / "no-ca")
    (no_ca / "ca-cert.pem").unlink()
    # A certificate QEMU's own check must find issued by nobody it trusts.
    foreign = hostile.issue_server(creds / "foreign")
    (foreign / "ca-cert.pem").write_bytes(ca.certificate.public_bytes(serialization.Encoding.PEM))

    with QEMUMachine(x86_binary, ["-machine", "none"], name="vm", workdir=workdir) as vm:
        vm.launch()
        for arguments in accepted:  # QEMU loads the files before it answers
            vm.cmd("object-add", **arguments)
        with pytest.raises(QMPError) as refused:
            vm.cmd("object-add", **x509_arguments("client", no_ca, object_id="no-ca"))
        assert str(no_ca / "ca-cert.pem") in refused.value.desc
        with pytest.raises(QMPError, match=r"server-cert\.pem|no issuer"):
            vm.cmd("object-add", **x509_arguments("server", foreign, object_id="foreign"))
        objects = {o["name"]: o["type"] for o in vm.cmd("qom-list", path="/objects")}
    for arguments in accepted:
        assert objects.get(arguments["id"]) == f"child<{arguments['qom-type']}>"
    assert "no-ca" not in objects and "foreign" not in objects


def test_a_refusal_check_fails_when_qemu_lets_the_migration_through(tmp_path: Path) -> None:
    """What a QEMU accepting a wrong key or host would look like: FAIL, not PASS."""
    result = run_avocado(
        tmp_path, "selftests/avocado/tls_misbehaving.py", "-p", "arch=x86_64", "-p", "accel=tcg",
        strict=True,
    )  # fmt: skip
    statuses = {t["name"].split(".")[-1]: (t["status"], t["fail_reason"]) for t in result["tests"]}
    for test in ("test_psk_mismatch", "test_x509_mismatch_host"):
        status, reason = statuses[test]
        assert status == "FAIL", (test, status, reason)
        assert "completed" in reason, reason
