"""HTTPS for the local web server: when to encrypt, the self-signed certificate, the server context.

The self-signed certificate (EC P-256, valid 825 days) lives in ``<state_dir>/tls/server.crt`` and
``server.key`` (0600). It is made at the first start that needs it and made again when it is about to
expire or does not name every wanted host (the machine's host name, ``localhost``, ``127.0.0.1``, ``::1``,
the listen address and ``http.names``). Configured files (``tls: files``) are read at every start and
never changed.
"""

from __future__ import annotations

import datetime
import ipaddress
import logging
import socket
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from avila_edge.config.model import HttpConfig
from avila_edge.core import ConfigError, ConfigIssue
from avila_edge.core.files import write_private
from avila_edge.core.net import is_loopback

logger = logging.getLogger(__name__)

CERT_FILE = "tls/server.crt"
KEY_FILE = "tls/server.key"
VALID_DAYS = 825
RENEW_DAYS = 30


def wants_tls(http: HttpConfig) -> bool:
    if http.tls == "auto":
        return not is_loopback(http.host)
    return http.tls != "off"


def server_context(http: HttpConfig, state_dir: Path) -> ssl.SSLContext | None:
    """The TLS context the listener serves with, or ``None`` for plain HTTP. Blocking: run in a thread."""
    if not wants_tls(http):
        return None
    if http.tls == "files":
        assert http.cert_file is not None  # both checked by HttpConfig
        assert http.key_file is not None
        cert, key = state_dir / http.cert_file, state_dir / http.key_file  # absolute paths stay as they are
    else:
        cert, key = ensure_self_signed(state_dir, wanted_names(http))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            [ConfigIssue(str(cert), None, "http.cert_file", f"cannot load the certificate and key {key}: {exc}")]
        ) from None
    return context


def wanted_names(http: HttpConfig) -> list[str]:
    """Host names and addresses the certificate must name, in order, without repeats."""
    names = [socket.gethostname(), "localhost", "127.0.0.1", "::1"]
    if http.host not in ("", "0.0.0.0", "::"):  # noqa: S104 - comparing, not binding
        names.append(http.host)
    names += http.names
    return list(dict.fromkeys(n for n in names if n))


def _san(names: list[str]) -> list[x509.GeneralName]:
    out: list[x509.GeneralName] = []
    for name in names:
        try:
            out.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            out.append(x509.DNSName(name))
    return out


def ensure_self_signed(state_dir: Path, names: list[str]) -> tuple[Path, Path]:
    """The self-signed certificate and key for ``names``, made or renewed when needed."""
    cert_path, key_path = state_dir / CERT_FILE, state_dir / KEY_FILE
    if cert_path.exists() and key_path.exists() and _still_good(cert_path, names):
        return cert_path, key_path
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0][:64])])
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
        .add_extension(x509.SubjectAlternativeName(_san(names)), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path.parent.mkdir(parents=True, exist_ok=True)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    write_private(key_path, key_pem)
    write_private(cert_path, cert.public_bytes(serialization.Encoding.PEM))
    fingerprint = cert.fingerprint(hashes.SHA256()).hex(":")
    logger.warning("made a self-signed HTTPS certificate for %s (SHA-256 %s)", ", ".join(names), fingerprint)
    return cert_path, key_path


def _still_good(cert_path: Path, names: list[str]) -> bool:
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (ValueError, x509.ExtensionNotFound):
        return False
    have = {str(n.value) for n in san}
    left = cert.not_valid_after_utc - datetime.datetime.now(datetime.UTC)
    return set(names) <= have and left > datetime.timedelta(days=RENEW_DAYS)
