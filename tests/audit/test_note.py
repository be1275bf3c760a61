"""C2SP signed notes and tlog checkpoints: golden vectors from golang.org/x/mod/sumdb/note, strict
parsing, and our checkpoints verified by code written here from the specs and by the openssl tool."""

from __future__ import annotations

import base64
import hashlib
import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from avila_edge.audit import Checkpoint, DeviceKey, Verifier, open_checkpoint, open_note, sign_note, split_note
from avila_edge.core import AuditError

# Test vectors of golang.org/x/mod/sumdb/note (note_test.go).
PETER_SEED = base64.b64decode("AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz")[1:]
PETER_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
ENOCH_VKEY = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop"
TEXT = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n"
PETER_SIG = (
    "— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
)
ENOCH_SIG = "— EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ=\n"


def peter() -> DeviceKey:
    return DeviceKey(Ed25519PrivateKey.from_private_bytes(PETER_SEED), "PeterNeumann")


def test_verifier_key_and_signed_note_are_byte_identical_to_the_go_reference() -> None:
    key = peter()
    assert key.verifier.text() == PETER_VKEY
    assert sign_note(TEXT, key) == TEXT + "\n" + PETER_SIG


def test_a_note_opens_with_a_trusted_key_and_skips_unknown_signers() -> None:
    text, signer = open_note(TEXT + "\n" + PETER_SIG + ENOCH_SIG, [Verifier.parse(PETER_VKEY)])
    assert text == TEXT
    assert signer.name == "PeterNeumann"
    _, signer = open_note(TEXT + "\n" + PETER_SIG + ENOCH_SIG, [Verifier.parse(ENOCH_VKEY)])
    assert signer.name == "EnochRoot"


def test_a_note_no_trusted_key_signed_is_rejected() -> None:
    with pytest.raises(AuditError, match="no trusted key signed this note"):
        open_note(TEXT + "\n" + ENOCH_SIG, [Verifier.parse(PETER_VKEY)])
    with pytest.raises(AuditError, match="no trusted key"):
        open_note(TEXT + "\n" + PETER_SIG, [])


def test_a_bad_signature_by_a_trusted_key_rejects_the_note() -> None:
    forged = TEXT.replace("cryptography", "blockchain") + "\n" + PETER_SIG
    with pytest.raises(AuditError, match="bad signature by PeterNeumann"):
        open_note(forged, [Verifier.parse(PETER_VKEY)])
    mangled = TEXT + "\n" + PETER_SIG[:60] + "ABCD" + PETER_SIG[60:]
    with pytest.raises(AuditError, match="bad signature"):
        open_note(mangled, [Verifier.parse(PETER_VKEY)])


@pytest.mark.parametrize(
    "note",
    [
        TEXT,
        TEXT + "\n",
        TEXT + "\n" + PETER_SIG[:-1],
        "\x01" + TEXT + "\n" + PETER_SIG,
        TEXT
        + "\n"
        + "— Bad Name x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=",
        TEXT + "\n" + PETER_SIG + "Unexpected line.\n",
        TEXT + "\n" + "— PeterNeumann AAAA\n",
        TEXT + "\n" + "— PeterNeumann not*base64\n",
    ],
)
def test_malformed_notes_are_rejected(note: str) -> None:
    with pytest.raises(AuditError):
        open_note(note, [Verifier.parse(PETER_VKEY)])


def test_every_mangling_of_a_verifier_key_is_refused() -> None:
    assert Verifier.parse(PETER_VKEY).text() == PETER_VKEY
    for i in range(len(PETER_VKEY) + 1):
        for j in range(i + 1, len(PETER_VKEY) + 1):
            if (i, j) != (0, len(PETER_VKEY)):
                with pytest.raises(AuditError):
                    Verifier.parse(PETER_VKEY[i:j])
    for i in range(len(PETER_VKEY)):
        mangled = PETER_VKEY[:i] + chr(ord(PETER_VKEY[i]) + 1) + PETER_VKEY[i + 1 :]
        with pytest.raises(AuditError):
            Verifier.parse(mangled)


def test_checkpoint_text_round_trips_and_parsing_is_strict() -> None:
    cp = Checkpoint("avila-edge/plant-7", 1024, hashlib.sha256(b"root").digest())
    assert cp.text() == f"avila-edge/plant-7\n1024\n{base64.b64encode(cp.root).decode()}\n"
    assert Checkpoint.parse(cp.text()) == cp
    root = base64.b64encode(cp.root).decode()
    for bad in [
        f"avila-edge/plant-7\n01024\n{root}\n",
        f"avila-edge/plant-7\n-1\n{root}\n",
        f"avila-edge/plant-7\n1024\n{root}",
        f"avila-edge/plant-7\n1024\n{base64.b64encode(b'short').decode()}\n",
        f"avila-edge/plant-7\n1024\n{root[:-1]}!\n",
        f"\n1024\n{root}\n",
        f"avila-edge/plant-7\n1024\n{root}\nextension\n",
        "avila-edge/plant-7\n1024\n",
    ]:
        with pytest.raises(AuditError):
            Checkpoint.parse(bad)


def test_a_checkpoint_must_be_signed_under_its_own_origin() -> None:
    key = DeviceKey.generate("avila-edge/plant-7")
    good = sign_note(Checkpoint("avila-edge/plant-7", 3, b"\x01" * 32).text(), key)
    assert open_checkpoint(good, [key.verifier]).size == 3
    other = sign_note(Checkpoint("avila-edge/plant-8", 3, b"\x01" * 32).text(), key)
    with pytest.raises(AuditError, match="is not its signer's name"):
        open_checkpoint(other, [key.verifier])


def test_split_note_returns_each_signature_line() -> None:
    text, sigs = split_note(TEXT + "\n" + PETER_SIG + ENOCH_SIG)
    assert text == TEXT
    assert [(s.name, s.key_id.hex(), len(s.signature)) for s in sigs] == [
        ("PeterNeumann", "c74f20a3", 64),
        ("EnochRoot", "af0cfe78", 64),
    ]


# -- our checkpoints, verified without our code ----------------------------------------------------------


def spec_verify(note: str, vkey: str) -> tuple[str, int, bytes]:
    """c2sp.org/signed-note + tlog-checkpoint, read here from the specs with hashlib and cryptography."""
    name, hex_id, key_b64 = vkey.split("+", 2)
    key = base64.b64decode(key_b64)
    assert key[0] == 0x01 and len(key) == 33
    assert hashlib.sha256(name.encode() + b"\n" + key).digest()[:4].hex() == hex_id
    text, _, sigs = note.rpartition("\n\n")
    text += "\n"
    verified = False
    for line in sigs.splitlines():
        dash, signer, sig_b64 = line.split(" ")
        assert dash == "\u2014"
        raw = base64.b64decode(sig_b64)
        if signer == name and raw[:4].hex() == hex_id:
            Ed25519PublicKey.from_public_bytes(key[1:]).verify(raw[4:], text.encode())
            verified = True
    assert verified
    origin, size, root = text.splitlines()
    assert origin == name
    return origin, int(size), base64.b64decode(root)


def test_our_signed_checkpoint_verifies_with_an_implementation_of_the_specs_written_here() -> None:
    key = DeviceKey.generate("avila-edge/plant-7")
    root = hashlib.sha256(b"some root").digest()
    note = sign_note(Checkpoint("avila-edge/plant-7", 42, root).text(), key)
    assert spec_verify(note, key.verifier.text()) == ("avila-edge/plant-7", 42, root)
    forged = note.replace("\n42\n", "\n43\n")
    with pytest.raises(InvalidSignature):
        spec_verify(forged, key.verifier.text())


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command (Debian package openssl)")
def test_our_checkpoint_signature_verifies_with_the_openssl_command(tmp_path: Path) -> None:
    key = DeviceKey.generate("avila-edge/plant-7")
    note = sign_note(Checkpoint("avila-edge/plant-7", 42, b"\x07" * 32).text(), key)
    _, _, key_b64 = key.verifier.text().split("+", 2)
    public = base64.b64decode(key_b64)[1:]
    # SubjectPublicKeyInfo of an Ed25519 key (RFC 8410): fixed 12-byte prefix, then the 32 key bytes.
    der = bytes.fromhex("302a300506032b6570032100") + public
    pem = "-----BEGIN PUBLIC KEY-----\n" + base64.b64encode(der).decode() + "\n-----END PUBLIC KEY-----\n"
    text, _, sig_line = note.rpartition("\n\n")
    signature = base64.b64decode(sig_line.split(" ")[2])[4:]
    (tmp_path / "pub.pem").write_text(pem)
    (tmp_path / "text").write_bytes((text + "\n").encode())
    (tmp_path / "sig").write_bytes(signature)
    (tmp_path / "forged").write_bytes((text.replace("42", "41") + "\n").encode())

    def openssl(message: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                "openssl",
                "pkeyutl",
                "-verify",
                "-pubin",
                "-inkey",
                "pub.pem",
                "-rawin",
                "-in",
                message,
                "-sigfile",
                "sig",
            ],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )

    good = openssl("text")
    assert good.returncode == 0, good.stdout + good.stderr
    assert "Signature Verified Successfully" in good.stdout
    assert openssl("forged").returncode != 0
