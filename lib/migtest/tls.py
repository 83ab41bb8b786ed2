"""The TLS credentials of a migration test, made by the test itself.

QEMU reads its credentials from a directory (``-object tls-creds-x509`` or
``tls-creds-psk`` with ``dir=``), under names of its own; an anonymous
``tls-creds-anon`` needs none.  A test makes its own: a throwaway
:class:`CertificateAuthority` that issues the certificates, or a PSK file,
written into the test's work directory, so that no key outlives the test or
is shared between tests, and a deliberately wrong credential (a hostname the
client will not ask for, a client of another CA, a key the other side does
not know) is a parameter rather than a file kept in the tree.

What QEMU checks, and so what is made here (``crypto/tlscredsx509.c``, as
it loads the directory; ``crypto/tlssession.c``, in the handshake):

- the CA: ``basicConstraints CA:TRUE`` and ``keyCertSign``;
- a server's or client's certificate: not a CA, usable for a digital
  signature, with the TLS Web Server or Client purpose, chained to a CA of
  ``ca-cert.pem`` and within its validity period;
- the server's certificate names the host the client connects to (the
  migration parameter ``tls-hostname``, or else the host of a ``tcp:`` URI;
  a client on a UNIX socket needs ``tls-hostname``), in its
  subjectAltName: a DNS name, or an IP address for an address.

A PSK directory holds ``keys.psk``, one ``username:hexkey`` a line: a
server accepts any identity listed, a client presents its ``username``.

Every directory also gets ``dh-params.pem``, the Diffie-Hellman group of
RFC 7919 (ffdhe2048): a server whose directory lacks it makes a group of
its own as it loads (``qcrypto_tls_creds_get_dh_params_file()``,
crypto/tlscreds.c), which took QEMU 7.2 0.8 s of every TLS test here.

The functions that end in ``_arguments`` say how to create each kind of
credentials: the arguments of ``object-add``, which QEMU takes as they are.
"""

from __future__ import annotations

import base64
import datetime
import decimal
import functools
import ipaddress
import logging
import os
import secrets
from pathlib import Path
from typing import Iterable, List, Literal, Optional, Sequence, Tuple

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .errors import ConfigError
from .qapi import TlsCredsArguments

_log = logging.getLogger(__name__)

#: Which side of the TLS session the credentials are for: the migration's
#: destination listens, so it is the server; the source is the client.
TlsRole = Literal["server", "client"]
ROLES: Tuple[TlsRole, ...] = ("server", "client")

#: The file names QEMU looks for in a credentials directory.
CA_CERT = "ca-cert.pem"
DH_PARAMS = "dh-params.pem"
SERVER_CERT = "server-cert.pem"
SERVER_KEY = "server-key.pem"
CLIENT_CERT = "client-cert.pem"
CLIENT_KEY = "client-key.pem"
PSK_FILE = "keys.psk"
#: A server's or client's certificate and key.
_IDENTITY_FILES = {"server": (SERVER_CERT, SERVER_KEY), "client": (CLIENT_CERT, CLIENT_KEY)}

#: The names a server certificate carries unless told otherwise: those a
#: migration between two QEMUs of the same host connects with.
LOCAL_HOSTNAMES = ("localhost", "127.0.0.1", "::1")
#: The common name of a server certificate that names no host: with a space,
#: no host name can match it.
NAMELESS_SERVER = "migtest server"
#: The PSK identity a client presents; QEMU's own default when none is set.
PSK_USERNAME = "qemu"
#: Bytes of a generated PSK: 256 bits, as ``psktool`` (in QEMU's
#: documentation) makes them.
PSK_BYTES = 32
#: The ``id`` of the credentials object unless told otherwise.
CREDS_ID = "tls0"

#: How long before now a certificate becomes valid: a QEMU whose clock is a
#: little behind ours must not find it "not yet active".
VALID_BEFORE_NOW = datetime.timedelta(hours=1)
#: How long after now it stays valid: longer than any test, so a slow one
#: never meets an expiry, shorter than anything worth keeping.
VALID_AFTER_NOW = datetime.timedelta(days=1)


class CertificateAuthority:
    """A CA that lives as long as the test: its key never touches the disk.

    Each instance has a key of its own, so a second one is the "hostile" CA
    of a test: what it issues does not chain to the first, whatever name it
    has.  Which name decides where a hostile client is stopped, because a
    gnutls client sends only a certificate whose issuer the server names as
    one it trusts: under another name the client sends none (the server
    says "No certificate was found"); under the good CA's own name,
    ``CertificateAuthority(good.name)``, it sends the forged one, and the
    server's signature check refuses it ("The certificate hasn't got a
    known issuer").

    :param name: its common name, in the certificates it issues.
    """

    def __init__(self, name: str = "migtest CA") -> None:
        self.name = name
        self._key = _new_key()
        self._subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        public = self._key.public_key()
        builder = (
            _builder(self._subject, public)
            .issuer_name(self._subject)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_key_usage(ca=True), critical=True)
        )
        #: The CA's own self-signed certificate.
        self.certificate = builder.sign(self._key, hashes.SHA256())

    def issue_server(
        self,
        directory: Path,
        hostnames: Sequence[str] = LOCAL_HOSTNAMES,
        *,
        also_trust: Sequence[CertificateAuthority] = (),
    ) -> Path:
        """Write a server's credentials: certificate, key, and the CAs it trusts.

        :param directory: where to write them (made if missing, private).
        :param hostnames: what the certificate names, each a DNS name or an
            IP address (written as such: QEMU matches an address only with
            an address); the first is also its common name.  A name the
            client does not connect with makes the handshake fail.
        :param also_trust: CAs whose clients it accepts besides this one's.
        :return: ``directory``, for :func:`x509_arguments`.
        :raise ConfigError: ``hostnames`` is empty.
        """
        if not hostnames:
            raise ConfigError("hostnames", hostnames, "at least one DNS name or IP address")
        extensions: List[x509.ExtensionType] = [
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
            x509.SubjectAlternativeName([_general_name(h) for h in hostnames]),
        ]
        self._write(directory, "server", hostnames[0], extensions, also_trust)
        return directory

    def issue_nameless_server(self, directory: Path) -> Path:
        """Write a server's credentials whose certificate names no host at all.

        A common name that is no host name, and no subjectAltName: a client
        has nothing to match the host it dialled against, and must refuse.

        :return: ``directory``, for :func:`x509_arguments`.
        """
        extensions = [x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH])]
        self._write(directory, "server", NAMELESS_SERVER, extensions, ())
        return directory

    def issue_client(
        self,
        directory: Path,
        name: str = "migtest client",
        *,
        also_trust: Sequence[CertificateAuthority] = (),
    ) -> Path:
        """Write a client's credentials: certificate, key, and the CAs it trusts.

        A client of a hostile CA that is to reach the server's own check
        trusts the server's CA as well (``also_trust``): otherwise it is the
        client that gives up, on the server's certificate.  QEMU checks a
        client's own certificate against its ``ca-cert.pem`` too, when the
        credentials are created, so that file always lists this CA, first.

        :param directory: where to write them (made if missing, private).
        :param name: its common name: the distinguished name a server's
            ``tls-authz`` sees.
        :param also_trust: CAs whose servers it accepts besides this one's.
        :return: ``directory``, for :func:`x509_arguments`.
        """
        extensions: List[x509.ExtensionType] = [
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]),
        ]
        self._write(directory, "client", name, extensions, also_trust)
        return directory

    def write_trust(self, directory: Path) -> Path:
        """Write only this CA's certificate: a client with no certificate of its own.

        Such a client checks the server but shows none itself, which a
        server that verifies its peers must refuse, and one that does not
        accepts (QEMU's "anonymous client", not the ``tls-creds-anon`` kind).

        :return: ``directory``, for :func:`x509_arguments`.
        """
        _private_directory(directory)
        for identity in _IDENTITY_FILES["client"]:
            (directory / identity).unlink(missing_ok=True)  # or QEMU would present it
        (directory / CA_CERT).write_bytes(_pem(self.certificate))
        return directory

    def _write(
        self,
        directory: Path,
        endpoint: TlsRole,
        common_name: str,
        extensions: Iterable[x509.ExtensionType],
        also_trust: Sequence[CertificateAuthority],
    ) -> None:
        """Issue a certificate for ``endpoint`` and write the directory's three files."""
        key = _new_key()
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        builder = (
            _builder(subject, key.public_key())
            .issuer_name(self._subject)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_key_usage(ca=False), critical=True)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()),
                critical=False,
            )
        )
        for extension in extensions:
            builder = builder.add_extension(extension, critical=False)
        certificate = builder.sign(self._key, hashes.SHA256())

        _private_directory(directory)
        cas = [self, *also_trust]
        (directory / CA_CERT).write_bytes(b"".join(_pem(ca.certificate) for ca in cas))
        cert_file, key_file = _IDENTITY_FILES[endpoint]
        (directory / cert_file).write_bytes(_pem(certificate))
        key_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        _write_private(directory / key_file, key_pem)
        _log.debug(
            "%s: %s certificate for %r issued by %s, trusting %s",
            directory,
            endpoint,
            common_name,
            self.name,
            ", ".join(ca.name for ca in cas),
        )

    def __repr__(self) -> str:
        return f"<CertificateAuthority {self.name!r}>"


def write_psk(directory: Path, key: Optional[bytes] = None, username: str = PSK_USERNAME) -> bytes:
    """Write a PSK file, ``keys.psk``, holding one identity and its key.

    Two sides share a key when the same one is written for both; two calls
    without ``key`` give two different keys: the mismatch case.

    :param directory: where to write it (made if missing, private).
    :param key: the key; a new random one (:data:`PSK_BYTES`) if ``None``.
    :param username: the identity the key belongs to: a client finds its
        key under its ``username``, a server under the one the client sends.
    :return: the key, to write the same on the other side.
    :raise ConfigError: an empty key, or a username QEMU could not read
        back (the file is one ``username:hexkey`` a line).
    """
    if key is None:
        key = secrets.token_bytes(PSK_BYTES)
    if not key:
        raise ConfigError("key", key, "at least one byte")
    if not username or any(c in username for c in ":\r\n"):
        raise ConfigError("username", username, "a non-empty name without ':' or line breaks")
    _private_directory(directory)
    _write_private(directory / PSK_FILE, f"{username}:{key.hex()}\n".encode())
    _log.debug("%s: PSK for %r written", directory, username)
    return key


def x509_arguments(
    endpoint: TlsRole, directory: Path, *, object_id: str = CREDS_ID, verify_peer: bool = True
) -> TlsCredsArguments:
    """The ``object-add`` arguments of x509 credentials read from ``directory``.

    :param verify_peer: whether the other side must show a certificate of
        a CA this side trusts: on a server, whether clients need one at all.
    :raise ConfigError: ``endpoint`` is neither ``server`` nor ``client``.
    """
    return {
        "qom-type": "tls-creds-x509",
        "id": object_id,
        "endpoint": _checked(endpoint),
        "dir": _absolute(directory),
        "verify-peer": verify_peer,
    }


def psk_arguments(
    endpoint: TlsRole,
    directory: Path,
    *,
    object_id: str = CREDS_ID,
    username: Optional[str] = None,
) -> TlsCredsArguments:
    """The ``object-add`` arguments of PSK credentials read from ``directory``.

    :param username: a client's identity (:data:`PSK_USERNAME` if ``None``).
        A server has none: it learns the client's from the handshake.
    :raise ConfigError: ``endpoint`` is neither ``server`` nor ``client``,
        or a server is given a username (QEMU refuses it).
    """
    arguments: TlsCredsArguments = {
        "qom-type": "tls-creds-psk",
        "id": object_id,
        "endpoint": _checked(endpoint),
        "dir": _absolute(directory),
    }
    if endpoint == "client":
        arguments["username"] = PSK_USERNAME if username is None else username
    elif username is not None:
        raise ConfigError("username", username, "none on a server: QEMU refuses one there")
    return arguments


def anon_arguments(endpoint: TlsRole, *, object_id: str = CREDS_ID) -> TlsCredsArguments:
    """The ``object-add`` arguments of anonymous credentials: encrypted, unauthenticated.

    :raise ConfigError: ``endpoint`` is neither ``server`` nor ``client``.
    """
    return {"qom-type": "tls-creds-anon", "id": object_id, "endpoint": _checked(endpoint)}


# -- helpers ------------------------------------------------------------------


def _new_key() -> ec.EllipticCurvePrivateKey:
    """A P-256 key: made in a millisecond, where RSA takes tens, and every
    gnutls QEMU is built with accepts it."""
    return ec.generate_private_key(ec.SECP256R1())


def _builder(subject: x509.Name, public: ec.EllipticCurvePublicKey) -> x509.CertificateBuilder:
    """A certificate for ``public``, valid around now, its issuer still to name."""
    now = datetime.datetime.now(datetime.timezone.utc)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - VALID_BEFORE_NOW)
        .not_valid_after(now + VALID_AFTER_NOW)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
    )


def _key_usage(*, ca: bool) -> x509.KeyUsage:
    """What a key may do: a CA's signs certificates, a server's or client's signs
    the handshake.

    Critical, so that QEMU checks it.  A server's or client's also allows key
    encipherment, meaningless for an EC key: QEMU refused a critical key
    usage without it until its commit 3995fc238e05 (October 2025, for 10.2,
    and in the stable releases after it: 7.2.22 and 10.0.13 take one without,
    10.0.2 does not), and gnutls ignores it in the handshake.
    """
    return x509.KeyUsage(
        digital_signature=not ca,
        content_commitment=False,
        key_encipherment=not ca,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def _general_name(hostname: str) -> x509.GeneralName:
    """``hostname`` as a subjectAltName entry: an IP address if it is one."""
    try:
        return x509.IPAddress(ipaddress.ip_address(hostname))
    except ValueError:
        return x509.DNSName(hostname)


def _pem(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.PEM)


def _private_directory(directory: Path) -> None:
    """Make ``directory`` if missing, readable by its owner only, with its DH group."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    (directory / DH_PARAMS).write_bytes(_dh_params_pem())


@functools.cache
def _dh_params_pem() -> bytes:
    """RFC 7919's ffdhe2048 group as PKCS#3 ``DHParameter`` in PEM, which gnutls reads.

    ``SEQUENCE { prime INTEGER, base INTEGER }`` in DER, written here:
    ``cryptography`` writes X9.42 parameters for it and deprecates FFDH.
    """
    prime = ffdhe2048_prime().to_bytes(257, "big")  # a leading 0: the top bit is set
    body = _der(0x02, prime) + _der(0x02, bytes([2]))
    encoded = base64.encodebytes(_der(0x30, body)).replace(b"\n", b"")
    lines = [encoded[i : i + 64] for i in range(0, len(encoded), 64)]
    return b"\n".join([b"-----BEGIN DH PARAMETERS-----", *lines, b"-----END DH PARAMETERS-----\n"])


def _der(tag: int, content: bytes) -> bytes:
    """A DER element of ``tag`` holding ``content`` (definite length)."""
    size = len(content)
    if size < 0x80:
        return bytes([tag, size]) + content
    length = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(length)]) + length + content


def ffdhe2048_prime() -> int:
    """The prime of RFC 7919's ffdhe2048, from the RFC's definition rather than its digits.

    p = 2^2048 - 2^1984 + (floor(2^1918 * e) + 560316) * 2^64 - 1, with e
    to 800 digits, 2^1918 * e needing fewer than 600.
    """
    with decimal.localcontext() as context:
        context.prec = 800
        e, term, k = decimal.Decimal(0), decimal.Decimal(1), 0
        while term > decimal.Decimal(10) ** -780:
            e, k = e + term, k + 1
            term /= k
        whole = int(decimal.Decimal(2) ** 1918 * e)
    return 2**2048 - 2**1984 + (whole + 560316) * 2**64 - 1


def _write_private(path: Path, data: bytes) -> None:
    """Write a secret into ``path``, created (or truncated) with mode 0600.

    Created with that mode rather than changed after: the secret is never
    readable by others, not even for a moment.
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as file:
        os.fchmod(file.fileno(), 0o600)  # an existing file keeps its mode otherwise
        file.write(data)


def _checked(endpoint: str) -> TlsRole:
    """:raise ConfigError: ``endpoint`` is not one QEMU knows."""
    for known in ROLES:
        if endpoint == known:
            return known
    raise ConfigError("endpoint", endpoint, " or ".join(ROLES))


def _absolute(directory: Path) -> str:
    """``directory`` as QEMU must get it: QEMU's working directory is not ours."""
    return str(Path(directory).absolute())
