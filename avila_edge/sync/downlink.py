"""Fleet → gateway commands: Ed25519-signed envelopes with monotonic ids and an expiry.

Wire format on ``<prefix>/<gateway>/command`` (QoS 1), UTF-8 JSON::

    {"command": "<base64 of the canonical command JSON>", "signature": "<base64 Ed25519 signature of those bytes>"}

The command itself is one of::

    {"id": 42, "gateway": "plant-a", "expires_ns": ..., "kind": "desired", "asset": "pump1",
     "name": "speed_setpoint", "value": 1800}
    {"id": 43, "gateway": "plant-a", "expires_ns": ..., "kind": "config", "config": "<the whole YAML>"}

A command is accepted only when the
signature verifies with the configured fleet key, it names this gateway, it has not expired, and its
id is above every id accepted before (the highest id is kept in the state directory).
"""

from __future__ import annotations

import base64
import binascii
from pathlib import Path

import msgspec
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from avila_edge.core.files import write_private


class CommandRefused(Exception):
    """The command is not acted upon; the message says why (it is journaled)."""


class DesiredCommand(msgspec.Struct, frozen=True, forbid_unknown_fields=True, tag="desired", tag_field="kind"):
    """Set a twin's desired value (reaches the device through its driver)."""

    id: int
    gateway: str
    expires_ns: int
    asset: str
    name: str
    value: bool | int | float | str


class ConfigCommand(msgspec.Struct, frozen=True, forbid_unknown_fields=True, tag="config", tag_field="kind"):
    """Replace the gateway's whole configuration with ``config`` (YAML text): a configuration bundle."""

    id: int
    gateway: str
    expires_ns: int
    config: str


Command = DesiredCommand | ConfigCommand


class Envelope(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    command: str
    signature: str


_encoder = msgspec.json.Encoder(order="sorted")


def sign_command(key: Ed25519PrivateKey, command: Command) -> bytes:
    """What the fleet publishes (``avila-edge fleet sign`` makes it from the command line)."""
    raw = _encoder.encode(command)
    envelope = Envelope(base64.b64encode(raw).decode(), base64.b64encode(key.sign(raw)).decode())
    return msgspec.json.encode(envelope)


def load_fleet_key(text: str) -> Ed25519PublicKey:
    """The fleet's public key: base64 of the 32 raw bytes."""
    try:
        raw = base64.b64decode(text.strip(), validate=True)
        return Ed25519PublicKey.from_public_bytes(raw)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"not an Ed25519 public key in base64: {exc}") from exc


class CommandGate:
    """Verifies commands for one gateway and remembers the highest accepted id."""

    def __init__(self, gateway: str, fleet_key: Ed25519PublicKey, state_file: Path) -> None:
        self.gateway = gateway
        self.key = fleet_key
        self.state_file = state_file
        self.last_id = int(state_file.read_text()) if state_file.exists() else 0

    def check(self, payload: bytes, now_ns: int) -> Command:
        """The verified command, or ``CommandRefused`` with the reason."""
        try:
            envelope = msgspec.json.decode(payload, type=Envelope)
            raw = base64.b64decode(envelope.command, validate=True)
            signature = base64.b64decode(envelope.signature, validate=True)
        except (msgspec.DecodeError, binascii.Error, ValueError) as exc:
            raise CommandRefused(f"not a signed command: {exc}") from None
        try:
            self.key.verify(signature, raw)
        except InvalidSignature:
            raise CommandRefused("bad signature: not signed by the fleet key") from None
        try:
            command: Command = msgspec.json.decode(raw, type=Command)
        except msgspec.DecodeError as exc:
            raise CommandRefused(f"malformed command: {exc}") from None
        if command.gateway != self.gateway:
            raise CommandRefused(f"command {command.id} is for gateway {command.gateway!r}")
        if command.expires_ns <= now_ns:
            raise CommandRefused(f"command {command.id} expired")
        if command.id <= self.last_id:
            raise CommandRefused(f"command {command.id} replayed or out of order (last accepted {self.last_id})")
        return command

    def accept(self, command: Command) -> None:
        """Remember ``command.id`` durably before acting on it."""
        write_private(self.state_file, str(command.id).encode())
        self.last_id = command.id
