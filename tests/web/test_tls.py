"""HTTPS: the self-signed certificate made at first start, served and trusted by a client that pins it;
configured certificate files; secure cookies."""

from __future__ import annotations

import ssl
import stat
from pathlib import Path

import aiohttp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from avila_edge.config import parse_config
from avila_edge.core import ConfigError
from avila_edge.web.tls import CERT_FILE, KEY_FILE, ensure_self_signed, wants_tls

from .site import ADMIN, client, running


async def test_a_self_signed_certificate_is_made_once_served_and_usable_by_a_client_that_trusts_it(
    tmp_path: Path,
) -> None:
    http = "host: 127.0.0.1, port: 0, tls: self-signed, names: [gateway.plant.example, 10.1.2.3]"
    async with running(tmp_path, http=http) as gateway:
        assert gateway.http_url.startswith("https://127.0.0.1:")
        cert_path, key_path = tmp_path / CERT_FILE, tmp_path / KEY_FILE
        assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
        assert stat.S_IMODE(cert_path.stat().st_mode) == 0o600
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
        assert cert.public_key().curve.name == "secp256r1"  # type: ignore[union-attr]
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert {"localhost", "gateway.plant.example"} <= set(san.get_values_for_type(x509.DNSName))
        assert {"127.0.0.1", "10.1.2.3"} <= {str(ip) for ip in san.get_values_for_type(x509.IPAddress)}
        trusting = ssl.create_default_context(cafile=cert_path)
        async with client() as h:
            async with h.get(f"{gateway.http_url}/healthz", ssl=trusting) as r:
                assert r.status == 200
            with pytest.raises(aiohttp.ClientConnectorCertificateError):
                await h.get(f"{gateway.http_url}/healthz")  # the system trust store does not know it
            token = (tmp_path / "setup-token").read_text().strip()
            body = {"token": token, "username": ADMIN[0], "password": ADMIN[1]}
            async with h.post(f"{gateway.http_url}/api/setup", json=body, ssl=trusting) as r:
                assert r.status == 201
                assert "Secure" in r.headers.getall("Set-Cookie")[0]
        first = cert_path.read_bytes()
    async with running(tmp_path, http=http):
        assert cert_path.read_bytes() == first  # kept across restarts


def test_the_certificate_is_made_again_when_a_configured_name_is_missing(tmp_path: Path) -> None:
    cert, _ = ensure_self_signed(tmp_path, ["localhost"])
    first = cert.read_bytes()
    assert ensure_self_signed(tmp_path, ["localhost"])[0].read_bytes() == first
    assert ensure_self_signed(tmp_path, ["localhost", "new.example"])[0].read_bytes() != first


async def test_configured_certificate_files_are_served(tmp_path: Path) -> None:
    cert, key = ensure_self_signed(tmp_path / "pki", ["localhost", "127.0.0.1"])
    http = f"host: 127.0.0.1, port: 0, tls: files, cert_file: {cert}, key_file: {key}"
    async with running(tmp_path / "state", http=http) as gateway, client() as h:
        assert not (tmp_path / "state" / CERT_FILE).exists()
        async with h.get(f"{gateway.http_url}/healthz", ssl=ssl.create_default_context(cafile=cert)) as r:
            assert r.status == 200


def test_tls_settings_are_checked_with_file_and_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config("site: {id: a}\nhttp:\n  tls: files\n", filename="site.yaml")
    assert str(err.value.issues[0]).startswith("site.yaml:")
    assert "cert_file and key_file" in str(err.value)
    off = parse_config("site: {id: a}\nhttp: {host: 0.0.0.0, tls: off}\n", filename="site.yaml")
    assert off.http.tls == "off"  # YAML reads `off` as false
    assert not wants_tls(off.http)
    on = parse_config("site: {id: a}\nhttp: {tls: on}\n", filename="site.yaml")
    assert on.http.tls == "self-signed"
    assert wants_tls(on.http)
    assert not wants_tls(parse_config("site: {id: a}\n", filename="site.yaml").http)  # auto on loopback
