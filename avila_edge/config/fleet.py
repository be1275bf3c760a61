"""Configuration of the fleet receiver (the cloud side): broker, dedupe store, time-series database."""

from __future__ import annotations

from pathlib import Path

import msgspec

from avila_edge.config.sync import InfluxSinkConfig, MqttTls
from avila_edge.config.units import Duration


class FleetBroker(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    host: str
    port: int = 8883
    tls: MqttTls | None = None
    plaintext: bool = False
    username: str | None = None
    password_file: Path | None = None
    client_id: str | None = None
    reconnect_initial: Duration = 0.5
    reconnect_max: Duration = 30.0


class FleetHttp(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    host: str = "127.0.0.1"
    port: int = 8090


class FleetConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Receivers that share ``share_group`` split the gateways' batches between them; their only state
    is the dedupe store in ``state_dir`` (receivers on one host may share it; across hosts give each
    receiver set its own ``topic_prefix`` and store, see docs/fleet.md "Scaling out").

    ``gateway_keys`` holds one ``<gateway id>.vkey`` file per gateway with its audit verifier key
    (``avila-edge audit pubkey`` on the gateway prints it); checkpoints are verified against it.
    ``trust_first_key`` instead pins the first key a gateway announces (convenient, weaker)."""

    broker: FleetBroker
    state_dir: Path
    share_group: str = "avila-fleet"
    topic_prefix: str = "avila"
    tsdb: InfluxSinkConfig | None = None
    http: FleetHttp = FleetHttp()
    ack: bool = True
    gateway_keys: Path | None = None
    trust_first_key: bool = False
