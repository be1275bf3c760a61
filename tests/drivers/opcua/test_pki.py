"""The gateway's OPC UA certificate and the server trust decision, with certificates from hil/certs.py."""

from __future__ import annotations

import datetime as dt
import stat
from pathlib import Path

import pytest
from cryptography import x509

from drivers.opcua import pki
from hil.certs import application_certificate, make_ca


def test_the_client_certificate_is_made_once_with_the_application_uri_and_a_private_key(tmp_path: Path) -> None:
    folder = tmp_path / "pki"
    first = pki.ensure_client_certificate(folder, "urn:avila-edge:gw7", hostname="gw7")
    again = pki.ensure_client_certificate(folder, "urn:avila-edge:gw7", hostname="gw7")
    assert again.cert_der == first.cert_der
    cert = x509.load_der_x509_certificate(first.cert_der)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == ["urn:avila-edge:gw7"]
    assert san.get_values_for_type(x509.DNSName) == ["gw7"]
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature and usage.key_encipherment and usage.data_encipherment
    assert stat.S_IMODE(first.key_path.stat().st_mode) == 0o600
    assert cert.not_valid_after_utc > dt.datetime.now(dt.UTC) + dt.timedelta(days=3000)


def test_a_certificate_made_for_another_application_uri_is_refused_not_replaced(tmp_path: Path) -> None:
    folder = tmp_path / "pki"
    made = pki.ensure_client_certificate(folder, "urn:avila-edge:gw7", hostname="gw7")
    with pytest.raises(pki.PkiError, match="was made for application URI urn:avila-edge:gw7, not urn:other"):
        pki.ensure_client_certificate(folder, "urn:other", hostname="gw7")
    assert made.cert_path.read_bytes() == made.cert_der


def test_a_server_certificate_is_trusted_when_listed_or_issued_by_a_trusted_ca(tmp_path: Path) -> None:
    ca = make_ca(tmp_path / "ca")
    issued = application_certificate(tmp_path / "s1", "plant", "urn:plant", issuer=ca)
    listed = application_certificate(tmp_path / "s2", "other plant", "urn:other")
    stranger = application_certificate(tmp_path / "s3", "stranger", "urn:stranger")
    trusted = pki.load_trusted([str(ca.files.cert), str(listed.cert)])
    pki.check_server_certificate(issued.der, trusted)
    pki.check_server_certificate(listed.der, trusted)
    with pytest.raises(pki.PkiError, match=r"'CN=stranger', URI urn:stranger, sha256 [0-9a-f]{16} is not trusted"):
        pki.check_server_certificate(stranger.der, trusted)


def test_a_leaf_certificate_does_not_vouch_for_others_it_did_not_sign(tmp_path: Path) -> None:
    ca = make_ca(tmp_path / "ca")
    rogue_ca = make_ca(tmp_path / "rogue", name=ca.certificate.subject.rfc4514_string().removeprefix("CN="))
    forged = application_certificate(tmp_path / "forged", "plant", "urn:plant", issuer=rogue_ca)
    leaf = application_certificate(tmp_path / "leaf", "plant", "urn:plant", issuer=ca)
    with pytest.raises(pki.PkiError, match="not trusted"):
        pki.check_server_certificate(forged.der, [ca.certificate])  # same issuer name, wrong key
    with pytest.raises(pki.PkiError, match="not trusted"):
        pki.check_server_certificate(forged.der, [x509.load_der_x509_certificate(leaf.der)])


def test_an_expired_or_not_yet_valid_server_certificate_is_refused(tmp_path: Path) -> None:
    now = dt.datetime.now(dt.UTC)
    old = application_certificate(
        tmp_path / "old",
        "plant",
        "urn:plant",
        not_before=now - dt.timedelta(days=10),
        not_after=now - dt.timedelta(days=1),
    )
    early = application_certificate(tmp_path / "early", "plant", "urn:plant", not_before=now + dt.timedelta(days=1))
    with pytest.raises(pki.PkiError, match="expired on"):
        pki.check_server_certificate(old.der, pki.load_trusted([str(old.cert)]))
    with pytest.raises(pki.PkiError, match="is valid only from"):
        pki.check_server_certificate(early.der, pki.load_trusted([str(early.cert)]))


def test_trusted_certificates_are_read_from_folders_and_pem_bundles(tmp_path: Path) -> None:
    a = application_certificate(tmp_path / "a", "a", "urn:a")
    b = application_certificate(tmp_path / "b", "b", "urn:b")
    folder = tmp_path / "trusted"
    folder.mkdir()
    (folder / "a.der").write_bytes(a.der)
    (folder / "bundle.pem").write_bytes(a.pem() + b.pem())
    (folder / "notes.txt").write_text("ignored")
    assert len(pki.load_trusted([str(folder)])) == 3
    (folder / "broken.pem").write_text("-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----\n")
    with pytest.raises(pki.PkiError, match=r"broken\.pem is not a DER or PEM certificate"):
        pki.load_trusted([str(folder)])
    with pytest.raises(pki.PkiError, match="does not exist"):
        pki.load_trusted([str(tmp_path / "absent")])


def test_a_refused_certificate_is_kept_once_under_its_fingerprint(tmp_path: Path) -> None:
    cert = application_certificate(tmp_path / "s", "plant", "urn:plant")
    path = pki.reject(tmp_path / "pki", cert.der)
    assert path == tmp_path / "pki" / "rejected" / f"{cert.fingerprint}.der"
    assert pki.reject(tmp_path / "pki", cert.der) == path
    assert path.read_bytes() == cert.der
