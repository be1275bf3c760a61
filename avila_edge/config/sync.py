"""Configuration of uplinks: where the journal is shipped, how it is confirmed, how fast."""

from __future__ import annotations

import enum
from pathlib import Path

import msgspec


class AckMode(enum.StrEnum):
    """When an uplink's cursor moves: at the broker's PUBACK, or at the fleet receiver's own ack."""

    PUBACK = "puback"
    FLEET = "fleet"


class MqttTls(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    ca_file: Path
    cert_file: Path | None = None
    key_file: Path | None = None


class MqttUplinkConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """An MQTT uplink to a cloud broker. TLS is required unless ``plaintext: true`` (loopback tests)."""

    host: str
    name: str = "cloud"
    port: int = 8883
    tls: MqttTls | None = None
    plaintext: bool = False
    username: str | None = None
    password_file: Path | None = None
    client_id: str | None = None
    protocol: int = 5
    topic_prefix: str = "avila"
    ack: AckMode = AckMode.PUBACK
    ack_timeout: float = 30.0
    batch_max: int = 1000
    batch_age: float = 1.0
    max_in_flight: int = 8
    bandwidth: int | None = None
    """Bytes per second the uplink may use (metered links); None: no cap."""
    keepalive: int = 30
    session_expiry: int = 7 * 86400
