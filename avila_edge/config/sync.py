"""Configuration of uplinks: where the journal is shipped, how it is confirmed, how fast."""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Literal

import msgspec

from avila_edge.config.units import ByteSize, Duration


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
    protocol: Literal[5, "3.1.1"] = 5
    """MQTT 5 (session expiry ``session_expiry``) or 3.1.1 (clean session off)."""
    topic_prefix: str = "avila"
    ack: AckMode = AckMode.PUBACK
    ack_timeout: Duration = 30.0
    batch_max: int = 1000
    batch_age: Duration = 1.0
    """When the uplink has sent everything, new readings wait up to this long for a batch to fill
    (fewer, larger messages: fewer bytes per reading); a full batch or any event goes at once."""
    max_in_flight: int = 8
    bandwidth: ByteSize | None = None
    """Bytes per second the uplink may use (metered links); None: no cap."""
    fleet_key: str | None = None
    """The fleet's Ed25519 public key (base64): when set, signed commands are taken on
    ``<topic_prefix>/<gateway>/command``."""
    keepalive: Duration = 30.0
    session_expiry: Duration = 7 * 86400.0
    reconnect_initial: Duration = 0.5
    reconnect_max: Duration = 30.0
    """Reconnection waits double from ``reconnect_initial`` up to ``reconnect_max`` (with jitter)."""
    live_first: bool = False
    """After an outage, send new readings (``live`` lane) before the backlog (backfill) when the
    readings lane lags by more than ``live_first_after`` entries."""
    live_first_after: int = 10_000

    def __post_init__(self) -> None:
        if self.batch_max < 1:
            raise ValueError("batch_max must be at least 1")
        if not 1 <= self.max_in_flight <= 65_535:
            raise ValueError("max_in_flight must be between 1 and 65535 (MQTT packet ids)")
        if self.batch_age < 0 or self.ack_timeout <= 0:
            raise ValueError("batch_age must be 0 or more and ack_timeout more than 0")
        if self.reconnect_initial <= 0 or self.reconnect_max < self.reconnect_initial:
            raise ValueError("reconnect waits need 0 < reconnect_initial <= reconnect_max")
        if self.live_first_after < 1:
            raise ValueError("live_first_after must be at least 1")


class InfluxSinkConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A time-series database speaking the InfluxDB v2 write API (InfluxDB, VictoriaMetrics ...).

    ``url`` must be https unless the host is loopback or ``plaintext: true``. The token is read from
    ``token_file`` (or a systemd credential), never from this file.
    """

    url: str
    bucket: str
    org: str = "avila"
    name: str = "tsdb"
    token_file: Path | None = None
    plaintext: bool = False
    batch_max: int = 5000
    timeout: Duration = 10.0

    def __post_init__(self) -> None:
        if self.batch_max < 1:
            raise ValueError("batch_max must be at least 1")
        if self.timeout <= 0:
            raise ValueError("timeout must be more than 0")
