"""C2SP formats: tlog-checkpoint bodies and signed notes (Ed25519).

A checkpoint body is three lines: origin, tree size in decimal, base64 root hash::

    avila-edge/plant-7
    1024
    3PYOk6Pb0DYkaEMcNMVSKBxWhgF2BXwSvuDzZSTm7Ns=

A signed note is the body, an empty line, and one line per signature: em dash (U+2014), space, key
name, space, ``base64(4-byte key id ‖ Ed25519 signature of the body)``.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from typing import Self

import msgspec

from avila_edge.audit._keys import DeviceKey, Verifier
from avila_edge.audit._tree import HASH_SIZE
from avila_edge.core import AuditError

DASH = "\u2014"
MAX_SIGNATURES = 100


class Checkpoint(msgspec.Struct, frozen=True):
    """A tree head: the log ``origin``, its ``size`` in leaves and its ``root`` hash."""

    origin: str
    size: int
    root: bytes

    def text(self) -> str:
        return f"{self.origin}\n{self.size}\n{base64.b64encode(self.root).decode()}\n"

    @classmethod
    def parse(cls, text: str) -> Self:
        """Read a checkpoint body; ``AuditError`` names what is wrong."""
        if not text.endswith("\n"):
            raise AuditError("checkpoint text does not end with a newline")
        lines = text[:-1].split("\n")
        if len(lines) < 3:
            raise AuditError(f"checkpoint has {len(lines)} lines; it needs origin, size and root hash")
        if len(lines) > 3:
            raise AuditError("checkpoint has extension lines; this log never writes any")
        origin, size_text, root_text = lines
        if not origin:
            raise AuditError("checkpoint origin line is empty")
        if not size_text.isascii() or not size_text.isdigit() or (size_text != "0" and size_text.startswith("0")):
            raise AuditError(f"checkpoint size '{size_text}' is not a decimal number without leading zeros")
        try:
            root = base64.b64decode(root_text, validate=True)
        except binascii.Error:
            raise AuditError(f"checkpoint root hash '{root_text}' is not base64") from None
        if len(root) != HASH_SIZE or base64.b64encode(root).decode() != root_text:
            raise AuditError(f"checkpoint root hash '{root_text}' is not a base64 SHA-256 hash")
        return cls(origin, int(size_text), root)


class Signature(msgspec.Struct, frozen=True):
    """One signature line: key ``name``, 4-byte ``key_id`` and the signature bytes."""

    name: str
    key_id: bytes
    signature: bytes


def sign_note(text: str, key: DeviceKey) -> str:
    """``text`` (ending in a newline) signed by ``key`` as a signed note."""
    if not text.endswith("\n"):
        raise AuditError("note text must end with a newline")
    signature = base64.b64encode(key.key_id + key.sign(text.encode())).decode()
    return f"{text}\n{DASH} {key.name} {signature}\n"


def split_note(note: str) -> tuple[str, list[Signature]]:
    """The text and signature lines of a signed note, checked for form only."""
    if any(ord(c) < 0x20 and c != "\n" for c in note):
        raise AuditError("signed note contains control characters")
    cut = note.rfind("\n\n")
    if cut < 0:
        raise AuditError("signed note has no empty line before its signatures")
    text, block = note[: cut + 1], note[cut + 2 :]
    if not block.endswith("\n"):
        raise AuditError("signed note does not end with a newline")
    signatures: list[Signature] = []
    for line in block[:-1].split("\n"):
        if not line.startswith(DASH + " "):
            raise AuditError(f"signed note line '{line}' is not a signature (— <name> <base64>)")
        fields = line[2:].split(" ")
        if len(fields) != 2 or not fields[0]:
            raise AuditError(f"signed note line '{line}' is not '— <name> <base64>'")
        try:
            raw = base64.b64decode(fields[1], validate=True)
        except binascii.Error:
            raise AuditError(f"signed note line '{line}': the signature is not base64") from None
        if len(raw) < 5:
            raise AuditError(f"signed note line '{line}': the signature is too short")
        signatures.append(Signature(fields[0], raw[:4], raw[4:]))
    if len(signatures) > MAX_SIGNATURES:
        raise AuditError(f"signed note has {len(signatures)} signatures (at most {MAX_SIGNATURES})")
    return text, signatures


def open_note(note: str, verifiers: Sequence[Verifier]) -> tuple[str, Verifier]:
    """The text of ``note`` and the known key that signed it.

    Signatures of unknown keys are skipped; a known key's signature that fails rejects the note, and
    so does a note no known key signed (c2sp.org/signed-note)."""
    text, signatures = split_note(note)
    known = {(v.name, v.key_id): v for v in verifiers}
    signer: Verifier | None = None
    for sig in signatures:
        verifier = known.get((sig.name, sig.key_id))
        if verifier is None:
            continue
        if not verifier.verify(text.encode(), sig.signature):
            raise AuditError(f"bad signature by {sig.name} (key id {sig.key_id.hex()})")
        signer = signer or verifier
    if signer is None:
        names = ", ".join(f"{s.name} ({s.key_id.hex()})" for s in signatures)
        trusted = ", ".join(f"{v.name} ({v.key_id.hex()})" for v in verifiers) or "none"
        raise AuditError(f"no trusted key signed this note (signed by {names}; trusted: {trusted})")
    return text, signer


def open_checkpoint(note: str, verifiers: Sequence[Verifier]) -> Checkpoint:
    """The checkpoint in a signed note, once a trusted key's signature is verified; its origin must be
    the signer's name."""
    text, signer = open_note(note, verifiers)
    checkpoint = Checkpoint.parse(text)
    if checkpoint.origin != signer.name:
        raise AuditError(f"checkpoint origin '{checkpoint.origin}' is not its signer's name '{signer.name}'")
    return checkpoint
