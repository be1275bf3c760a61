"""The device identity: an Ed25519 key made on first start, and its C2SP signed-note verifier key.

The private key lives in ``<state_dir>/keys/device.ed25519`` (PKCS#8 PEM, mode 0600, folder 0700).
A key file that group or others may read is refused, not repaired: someone may already have copied
it, and only the operator can judge that.

The verifier key is ``<name>+<key id, 8 hex digits>+<base64(0x01 ‖ 32-byte public key)>`` with
``key id = SHA-256(name ‖ 0x0A ‖ 0x01 ‖ public key)[:4]`` (golang.org/x/mod/sumdb/note, c2sp.org/signed-note).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import os
import stat
from pathlib import Path
from typing import Self

import msgspec
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from avila_edge.core import AuditError

KEY_FILE = Path("keys") / "device.ed25519"
"""Where the device key lives, relative to the state directory."""

ED25519 = 0x01
"""The signed-note signature type of Ed25519."""


def check_name(name: str, what: str = "key name") -> str:
    """``name`` if it is a valid signed-note key name / checkpoint origin, else ``AuditError``."""
    if not name:
        raise AuditError(f"the {what} must not be empty")
    bad = sorted({c for c in name if c.isspace() or c == "+" or ord(c) < 0x20 or ord(c) == 0x7F})
    if bad:
        shown = ", ".join(repr(c) for c in bad)
        raise AuditError(f"the {what} '{name}' must not contain spaces, control characters or '+' (found {shown})")
    return name


def key_id(name: str, public: bytes) -> bytes:
    """The 4-byte signed-note key id of an Ed25519 key called ``name``."""
    return hashlib.sha256(name.encode() + b"\n" + bytes([ED25519]) + public).digest()[:4]


class Verifier(msgspec.Struct, frozen=True):
    """A signed-note verifier key: who signs (``name``, ``key_id``) and the Ed25519 ``public`` key."""

    name: str
    key_id: bytes
    public: bytes

    @classmethod
    def of(cls, name: str, public: bytes) -> Self:
        return cls(check_name(name), key_id(name, public), public)

    @classmethod
    def parse(cls, text: str) -> Self:
        """Read ``<name>+<hex id>+<base64 key>``; ``AuditError`` says what is wrong with it."""
        parts = text.strip().split("+", 2)
        if len(parts) != 3:
            raise AuditError(f"'{text}' is not a verifier key (expected <name>+<8 hex digits>+<base64 key>)")
        name, hex_id, b64 = parts
        check_name(name)
        if len(hex_id) != 8 or any(c not in "0123456789abcdef" for c in hex_id):
            raise AuditError(f"verifier key '{text}': the key id '{hex_id}' is not 8 lowercase hex digits")
        try:
            raw = base64.b64decode(b64, validate=True)
        except binascii.Error:
            raise AuditError(f"verifier key '{text}': the key part is not base64") from None
        if len(raw) != 33 or raw[0] != ED25519:
            raise AuditError(f"verifier key '{text}': not an Ed25519 key (type byte 0x01 and 32 key bytes)")
        verifier = cls(name, bytes.fromhex(hex_id), raw[1:])
        if key_id(name, verifier.public) != verifier.key_id:
            raise AuditError(f"verifier key '{text}': the key id does not match the name and key")
        return verifier

    def text(self) -> str:
        return f"{self.name}+{self.key_id.hex()}+{base64.b64encode(bytes([ED25519]) + self.public).decode()}"

    def verify(self, message: bytes, signature: bytes) -> bool:
        try:
            Ed25519PublicKey.from_public_bytes(self.public).verify(signature, message)
        except InvalidSignature:
            return False
        return True


class DeviceKey:
    """The gateway's signing key under the signed-note key name ``name``."""

    def __init__(self, private: Ed25519PrivateKey, name: str, path: Path | None = None) -> None:
        self._private = private
        self.path = path
        public = private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        self.verifier = Verifier.of(name, public)

    @property
    def name(self) -> str:
        return self.verifier.name

    @property
    def key_id(self) -> bytes:
        return self.verifier.key_id

    def sign(self, message: bytes) -> bytes:
        return self._private.sign(message)

    @classmethod
    def generate(cls, name: str) -> Self:
        """A fresh key that lives only in memory (tests, tools)."""
        return cls(Ed25519PrivateKey.generate(), name)

    @classmethod
    def load(cls, path: Path, *, name: str) -> Self:
        """Read the key at ``path``; refuse it if group or others may read or write it."""
        try:
            info = path.stat()
            loose = stat.S_IMODE(info.st_mode) & 0o077
            if loose:
                mode = stat.S_IMODE(info.st_mode)
                raise AuditError(
                    f"device key {path} is open to group or others (mode {mode:04o}); it is not used because "
                    f"others may have read it. If it was never exposed: chmod 600 {path}. Otherwise delete it: "
                    "the gateway then makes a new key and journals the change"
                )
            pem = path.read_bytes()
        except OSError as exc:
            raise AuditError(f"device key {path} cannot be read: {exc.strerror or exc}") from exc
        try:
            private = serialization.load_pem_private_key(pem, password=None)
        except (ValueError, TypeError) as exc:
            raise AuditError(f"device key {path} is not an unencrypted PKCS#8 PEM private key: {exc}") from exc
        if not isinstance(private, Ed25519PrivateKey):
            raise AuditError(f"device key {path} is not an Ed25519 key")
        return cls(private, name, path)

    @classmethod
    def load_or_create(cls, path: Path, *, name: str) -> Self:
        """The key at ``path``, made first (0600 in a 0700 folder) if there is none."""
        check_name(name)
        if not path.exists():
            _create(path)
        return cls.load(path, name=name)


def _create(path: Path) -> None:
    """Write a new key next to ``path`` and link it into place unless another process was first."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    pem = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    temp = path.with_name(f".{path.name}.{os.getpid()}.new")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
            f.flush()
            os.fsync(f.fileno())
        with contextlib.suppress(FileExistsError):  # someone else made it first: theirs stands
            os.link(temp, path)
    finally:
        temp.unlink(missing_ok=True)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
