"""The gateway's OPC UA certificates: its own application instance certificate, and server trust.

Blocking file and crypto work (run it in a worker thread). Files in ``certificate_dir``:

- ``client-cert.der`` / ``client-key.pem``: made on first start (RSA 2048, SHA-256, valid 10 years,
  SubjectAltName URI = the application URI, which asyncua and most servers require, plus the host
  name); the key is mode 0600. An existing certificate whose URI differs from the configured
  application URI is refused rather than silently replaced (the server trusts that certificate).
- ``rejected/<sha256>.der``: every server certificate that was refused, for an operator to review
  and then copy into a folder named in ``trusted_server_certificates``.

Trust is strict: a server certificate is accepted when it is one of the trusted certificates or
was issued by one of them (a site CA), and is within its validity period.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CERT_FILE: Final = "client-cert.der"
KEY_FILE: Final = "client-key.pem"
REJECTED_DIR: Final = "rejected"
VALID_DAYS: Final = 3650
_CERT_SUFFIXES: Final = (".der", ".pem", ".crt", ".cer")


class PkiError(Exception):
    """A certificate problem, in plain words."""


@dataclass(frozen=True, slots=True)
class ClientIdentity:
    """The gateway's application instance certificate and key, as files and bytes."""

    cert_path: Path
    key_path: Path
    cert_der: bytes
    application_uri: str


def default_application_uri(hostname: str) -> str:
    return f"urn:avila-edge:{hostname}"


def ensure_client_certificate(
    folder: Path, application_uri: str, *, hostname: str, cert_file: str = CERT_FILE, key_file: str = KEY_FILE
) -> ClientIdentity:
    """The certificate in ``folder``, made first if absent; refuse one made for another application URI.
    (The gateway's OPC UA server keeps its own under other file names: ``cert_file``/``key_file``.)"""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    cert_path, key_path = folder / cert_file, folder / key_file
    with _locked(folder):
        if not cert_path.exists() or not key_path.exists():
            _create(cert_path, key_path, application_uri, hostname)
        der = cert_path.read_bytes()
    try:
        cert = x509.load_der_x509_certificate(der)
    except ValueError as exc:
        raise PkiError(f"{cert_path} is not a DER certificate: {exc}") from None
    uris = _san_uris(cert)
    if application_uri not in uris:
        raise PkiError(
            f"{cert_path} was made for application URI {', '.join(uris) or '(none)'}, not {application_uri}: "
            "set connection.application_uri to match, or remove both files to make a new certificate"
            " (the server must then trust the new one)"
        )
    if cert.not_valid_after_utc < dt.datetime.now(dt.UTC):
        raise PkiError(
            f"{cert_path} expired on {cert.not_valid_after_utc:%Y-%m-%d}: remove it and {key_file} to make a new one"
        )
    return ClientIdentity(cert_path=cert_path, key_path=key_path, cert_der=der, application_uri=application_uri)


def _create(cert_path: Path, key_path: Path, application_uri: str, hostname: str) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = dt.datetime.now(dt.UTC)
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, f"avila-edge@{hostname}"[:64]),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "avila-edge"),
        ]
    )
    san: list[x509.GeneralName] = [x509.UniformResourceIdentifier(application_uri), x509.DNSName(hostname)]
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=VALID_DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=True,
                key_encipherment=True,
                data_encipherment=True,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .add_extension(x509.SubjectAlternativeName(san), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    _write_atomic(key_path, key_pem, 0o600)
    _write_atomic(cert_path, cert.public_bytes(serialization.Encoding.DER), 0o644)


def load_trusted(paths: Sequence[str]) -> list[x509.Certificate]:
    """Every certificate in the named files and folders (DER, or PEM with one or more certificates)."""
    found: list[x509.Certificate] = []
    for entry in paths:
        path = Path(entry)
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.suffix.lower() in _CERT_SUFFIXES and p.is_file())
        elif path.is_file():
            files = [path]
        else:
            raise PkiError(f"trusted_server_certificates: {path} does not exist")
        for file in files:
            found.extend(_read_certificates(file))
    return found


def _read_certificates(path: Path) -> list[x509.Certificate]:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise PkiError(f"cannot read {path}: {exc.strerror}") from None
    try:
        if b"-----BEGIN CERTIFICATE-----" in data:
            return x509.load_pem_x509_certificates(data)
        return [x509.load_der_x509_certificate(data)]
    except ValueError:
        raise PkiError(f"{path} is not a DER or PEM certificate") from None


def check_server_certificate(der: bytes, trusted: Sequence[x509.Certificate]) -> None:
    """Raise ``PkiError`` unless the certificate is trusted (itself, or issued by a trusted one) and valid now."""
    try:
        cert = x509.load_der_x509_certificate(der)
    except ValueError:
        raise PkiError("the server sent a certificate that cannot be read") from None
    now = dt.datetime.now(dt.UTC)
    if not any(_vouches_for(anchor, cert) for anchor in trusted):
        where = "no certificates are trusted yet" if not trusted else f"it is not among the {len(trusted)} trusted"
        raise PkiError(f"the server certificate {describe(der)} is not trusted ({where})")
    if cert.not_valid_after_utc < now:
        raise PkiError(f"the server certificate {describe(der)} expired on {cert.not_valid_after_utc:%Y-%m-%d}")
    if cert.not_valid_before_utc > now:
        raise PkiError(
            f"the server certificate {describe(der)} is valid only from {cert.not_valid_before_utc:%Y-%m-%d %H:%M}"
        )


def _vouches_for(anchor: x509.Certificate, cert: x509.Certificate) -> bool:
    if anchor == cert:
        return True
    if anchor.subject != cert.issuer:
        return False
    try:
        constraints = anchor.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return False
    if not constraints.ca:
        return False
    try:
        cert.verify_directly_issued_by(anchor)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def reject(folder: Path, der: bytes) -> Path:
    """Keep a refused server certificate in ``<folder>/rejected/`` for review; returns its path."""
    target = folder / REJECTED_DIR / f"{fingerprint(der)}.der"
    target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not target.exists():
        _write_atomic(target, der, 0o644)
    return target


def fingerprint(der: bytes) -> str:
    return hashlib.sha256(der).hexdigest()


def describe(der: bytes) -> str:
    """``CN=..., URI ..., sha256 ab12cd34...`` for messages."""
    try:
        cert = x509.load_der_x509_certificate(der)
    except ValueError:
        return f"sha256 {fingerprint(der)[:16]}"
    cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    name = f"CN={cn[0].value!s}" if cn else cert.subject.rfc4514_string() or "(no subject)"
    uris = _san_uris(cert)
    uri = f", URI {uris[0]}" if uris else ""
    return f"'{name}'{uri}, sha256 {fingerprint(der)[:16]}"


def _san_uris(cert: x509.Certificate) -> list[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [str(u) for u in san.get_values_for_type(x509.UniformResourceIdentifier)]


def _write_atomic(path: Path, data: bytes, mode: int) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """Serialise certificate creation between devices (and processes) sharing one folder."""
    fd = os.open(folder / ".lock", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


__all__ = [
    "CERT_FILE",
    "KEY_FILE",
    "REJECTED_DIR",
    "ClientIdentity",
    "PkiError",
    "check_server_certificate",
    "default_application_uri",
    "describe",
    "ensure_client_certificate",
    "fingerprint",
    "load_trusted",
    "reject",
]
