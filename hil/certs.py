"""Test PKI made with ``cryptography``: a CA and OPC UA application instance certificates.

    ca = make_ca(folder / "ca")
    server = application_certificate(folder / "server", "hil plant", "urn:avila-edge:hil:plant", issuer=ca)
    ... server.cert (DER), server.key (PEM), server.fingerprint ...

An OPC UA application instance certificate is RSA, signed with SHA-256, and carries the
application URI as a URI SubjectAltName (clients and servers compare it with the URI the
application announces), the host names as DNS/IP SubjectAltNames, and the key usages the secure
channel needs (digital signature, non-repudiation, key and data encipherment). Without ``issuer``
the certificate is self-signed (and may then sign itself: ``keyCertSign``).

Imports nothing of the gateway: simulators and tests of any part may use it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DEFAULT_HOSTS = ("localhost", "127.0.0.1")


@dataclass(frozen=True, slots=True)
class CertPair:
    """A certificate (DER) and its private key (PEM, PKCS#8, unencrypted, mode 0600) on disk."""

    cert: Path
    key: Path

    @property
    def der(self) -> bytes:
        return self.cert.read_bytes()

    @property
    def fingerprint(self) -> str:
        """SHA-256 of the DER certificate, lower-case hex."""
        return fingerprint(self.der)

    def pem(self) -> bytes:
        """The certificate as PEM (some tools and trust lists want that form)."""
        return x509.load_der_x509_certificate(self.der).public_bytes(serialization.Encoding.PEM)


@dataclass(frozen=True, slots=True)
class Authority:
    """A certificate authority that can sign application certificates."""

    files: CertPair
    certificate: x509.Certificate
    private_key: rsa.RSAPrivateKey


def fingerprint(cert_der: bytes) -> str:
    return hashlib.sha256(cert_der).hexdigest()


def make_ca(folder: Path, name: str = "hil test CA", *, days: int = 2) -> Authority:
    """A self-signed CA certificate (``ca.der``) and key (``ca.key.pem``) in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(cert_sign=True, leaf=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    files = _write(folder, "ca", cert, key)
    return Authority(files=files, certificate=cert, private_key=key)


def application_certificate(
    folder: Path,
    name: str,
    application_uri: str,
    *,
    issuer: Authority | None = None,
    hosts: Sequence[str] = DEFAULT_HOSTS,
    key_size: int = 2048,
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
    stem: str = "cert",
) -> CertPair:
    """An OPC UA application instance certificate (``<stem>.der``) and key (``<stem>.key.pem``) in ``folder``.

    ``hosts`` become DNS or IP SubjectAltNames; ``not_before``/``not_after`` default to "five
    minutes ago" and "in two days" (pass past dates to make an expired certificate).
    """
    folder.mkdir(parents=True, exist_ok=True)
    key = rsa.generate_private_key(public_exponent=65537, key_size=key_size)
    now = dt.datetime.now(dt.UTC)
    subject = x509.Name(
        [x509.NameAttribute(NameOID.COMMON_NAME, name), x509.NameAttribute(NameOID.ORGANIZATION_NAME, "avila-edge hil")]
    )
    san: list[x509.GeneralName] = [x509.UniformResourceIdentifier(application_uri)]
    for host in hosts:
        try:
            san.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            san.append(x509.DNSName(host))
    signer_key: rsa.RSAPrivateKey = issuer.private_key if issuer is not None else key
    issuer_name = issuer.certificate.subject if issuer is not None else subject
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before or now - dt.timedelta(minutes=5))
        .not_valid_after(not_after or now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(cert_sign=issuer is None, leaf=True), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
        .add_extension(x509.SubjectAlternativeName(san), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(signer_key.public_key()), critical=False)
    )
    cert = builder.sign(signer_key, hashes.SHA256())
    return _write(folder, stem, cert, key)


def _key_usage(*, cert_sign: bool, leaf: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=leaf,
        key_encipherment=leaf,
        data_encipherment=leaf,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=not leaf,
        encipher_only=False,
        decipher_only=False,
    )


def _write(folder: Path, stem: str, cert: x509.Certificate, key: rsa.RSAPrivateKey) -> CertPair:
    pair = CertPair(cert=folder / f"{stem}.der", key=folder / f"{stem}.key.pem")
    pair.cert.write_bytes(cert.public_bytes(serialization.Encoding.DER))
    pair.key.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    pair.key.chmod(0o600)
    return pair


__all__ = ["DEFAULT_HOSTS", "Authority", "CertPair", "application_certificate", "fingerprint", "make_ca"]
