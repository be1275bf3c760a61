"""Frozen configuration of an MQTT broker connection, its subscriptions, and one point's address.

A point is reached in one of three ways (its ``address`` says which):

- ``{topic: plant/pump1/status, value_path: $.flow}`` — an exact topic (JSON or plain number);
- ``{group: plant, node: edge1, device: pump1, metric: Speed}`` — a Sparkplug B metric;
- ``{}`` (or only decoding keys) — through a device ``subscriptions:`` entry whose ``template``
  turns the topic (or the Sparkplug path ``spBv1.0/<group>/<node>/<device>/<metric>``) into the
  point id; decoding keys given in the address override the subscription's.

The configured points are the source of truth: a message that maps to no configured point is
counted (``unknown_point``) and dropped.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from avila_edge.config.units import ByteSize, Duration

Format = Literal["json", "number", "sparkplug"]
ProtocolVersion = Literal[5, "3.1.1"]

DEFAULT_QOS = 1
DEFAULT_MAX_PAYLOAD = 256 * 1024
DEFAULT_MAX_QUEUED = 10_000


class TlsFiles(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """TLS towards the broker. Without ``ca_file`` the system's trusted CAs verify the broker;
    ``cert_file`` + ``key_file`` present a client certificate (mutual TLS)."""

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    verify_hostname: bool = True


class Subscription(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One topic filter the driver subscribes to, and how its messages become points.

    ``template`` names the levels that hold the asset and the point, e.g. ``plant/{asset}/{point}``;
    for ``format: sparkplug`` it is matched against ``spBv1.0/<group>/<node>/<device>/<metric>``.
    A subscription without a template only gathers the topics of points with explicit addresses.
    """

    filter: str
    template: str | None = None
    format: Format = "json"
    value_path: str | None = None
    timestamp_path: str | None = None
    qos: int = DEFAULT_QOS


class MqttConnection(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Where the broker is and how the gateway logs in.

    ``persistent_session`` keeps the session (subscriptions and queued QoS 1/2 messages) on the broker
    while the gateway is away: MQTT 5 session expiry ``session_expiry``, MQTT 3.1.1 clean session off.
    The password is read from ``password_file`` at each connect and never logged.
    ``max_queued`` bounds the messages received and not yet committed: QoS 1/2 messages beyond it wait
    at the broker (they are acknowledged only once committed); QoS 0 messages beyond it are dropped and
    counted as ``queue_full``.
    """

    host: str
    port: int = 1883
    client_id: str | None = None
    protocol: ProtocolVersion = 5
    persistent_session: bool = False
    session_expiry: Duration = 86400.0
    keepalive: Duration = 30.0
    tls: TlsFiles | None = None
    username: str | None = None
    password_file: str | None = None
    max_payload: ByteSize = DEFAULT_MAX_PAYLOAD
    max_queued: int = DEFAULT_MAX_QUEUED
    subscriptions: tuple[Subscription, ...] = ()


class MqttAddress(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Where one point's value arrives (see the module docstring for the three ways)."""

    topic: str | None = None
    format: Format | None = None
    value_path: str | None = None
    timestamp_path: str | None = None
    qos: int | None = None
    group: str | None = None
    node: str | None = None
    device: str | None = None
    metric: str | None = None
    command_topic: str | None = None

    @property
    def is_sparkplug(self) -> bool:
        return self.metric is not None or self.group is not None or self.node is not None

    @property
    def via_subscription(self) -> bool:
        return self.topic is None and not self.is_sparkplug
