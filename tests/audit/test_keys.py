"""The device key: made once with tight permissions, reused, refused when others may read it."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ec import SECP256R1, generate_private_key
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from avila_edge.audit import KEY_FILE, DeviceKey, Verifier, check_name
from avila_edge.core import AuditError

NAME = "avila-edge/plant-7"


def test_first_start_makes_a_key_readable_by_the_owner_only(tmp_path: Path) -> None:
    path = tmp_path / KEY_FILE
    key = DeviceKey.load_or_create(path, name=NAME)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert [p.name for p in path.parent.iterdir()] == ["device.ed25519"]  # no temporary file left behind
    again = DeviceKey.load_or_create(path, name=NAME)
    assert again.verifier == key.verifier
    message = b"checkpoint"
    assert again.verifier.verify(message, key.sign(message))


def test_a_key_file_group_or_others_may_read_is_refused_and_not_repaired(tmp_path: Path) -> None:
    path = tmp_path / KEY_FILE
    DeviceKey.load_or_create(path, name=NAME)
    os.chmod(path, 0o640)
    with pytest.raises(AuditError) as err:
        DeviceKey.load_or_create(path, name=NAME)
    assert str(path) in str(err.value)
    assert "mode 0640" in str(err.value)
    assert f"chmod 600 {path}" in str(err.value)
    assert stat.S_IMODE(path.stat().st_mode) == 0o640


def test_a_key_file_that_is_not_an_ed25519_pkcs8_key_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "device.ed25519"
    path.write_bytes(b"not a key")
    os.chmod(path, 0o600)
    with pytest.raises(AuditError, match="not an unencrypted PKCS#8 PEM private key"):
        DeviceKey.load(path, name=NAME)
    ec = generate_private_key(SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    path.write_bytes(ec)
    with pytest.raises(AuditError, match="not an Ed25519 key"):
        DeviceKey.load(path, name=NAME)


def test_the_verifier_key_id_is_sha256_of_name_newline_type_and_key() -> None:
    key = DeviceKey(Ed25519PrivateKey.from_private_bytes(bytes([19]) * 32), NAME)
    public = key.verifier.public
    assert key.key_id == hashlib.sha256(NAME.encode() + b"\n\x01" + public).digest()[:4]
    # this key's base64 holds '+' characters: only the first two '+' separate the fields
    text = key.verifier.text()
    assert text == "avila-edge/plant-7+4d0e1e22+AWbNYIuSi4jlDg7+qjP68cQ87+BylLC4fp/gq6ajz3Yz"
    assert Verifier.parse(text) == key.verifier


@pytest.mark.parametrize("name", ["", "has space", "a+b", "tab\there", "line\nbreak", "nbsp\u00a0x"])
def test_key_names_with_spaces_plus_or_control_characters_are_refused(name: str) -> None:
    with pytest.raises(AuditError):
        check_name(name)
    with pytest.raises(AuditError):
        DeviceKey.generate(name)
