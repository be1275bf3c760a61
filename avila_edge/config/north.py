"""Configuration of the northbound endpoints: the OPC UA server and the MQTT publisher PLCs and SCADA use.

Both are off unless their section is present::

    north:
      opcua: {port: 4840, users: [{name: scada, password_file: /etc/avila-edge/scada.pass}]}
      mqtt: {host: 127.0.0.1, port: 1883}
"""

from __future__ import annotations

import enum
from pathlib import Path

import msgspec

from avila_edge.config.sync import MqttTls
from avila_edge.config.units import Duration
from avila_edge.core.net import is_loopback


class ServerPolicy(enum.StrEnum):
    """Security policies the OPC UA server offers (the SHA-1 ones are not offered at all)."""

    BASIC256SHA256 = "basic256sha256"
    AES128_SHA256_RSAOAEP = "aes128_sha256_rsaoaep"
    AES256_SHA256_RSAPSS = "aes256_sha256_rsapss"


class ServerMode(enum.StrEnum):
    SIGN = "sign"
    SIGN_AND_ENCRYPT = "sign_and_encrypt"


class OpcUaRole(enum.StrEnum):
    """What an OPC UA user may do: ``viewer`` browses, reads, subscribes and reads history; ``operator``
    also writes the writable points (as the console's roles)."""

    VIEWER = "viewer"
    OPERATOR = "operator"


class OpcUaUser(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A user name that may log in; its password is the content of ``password_file`` (never the YAML)."""

    name: str
    password_file: Path
    role: OpcUaRole = OpcUaRole.OPERATOR


class OpcUaServerConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The gateway's OPC UA server (endpoint ``opc.tcp://<host>:<port>/<path>``).

    Secure endpoints: every ``policies`` x ``modes`` pair. ``allow_none: true`` adds the unsecured
    endpoint (None/None); never on a plant network. The server certificate is made on first start in
    ``certificate_dir`` (default ``<state_dir>/opcua-server``). Client application certificates are
    accepted when found in ``trusted_client_certificates`` (files or folders; a CA there trusts what it
    issued); a refused one is saved to ``<certificate_dir>/rejected/`` for review.

    Logins: ``users`` (user name + password file, role ``operator`` or ``viewer``), ``user_certificates``
    (X.509 identity tokens: certificates, or a CA, in files or folders; operators), ``anonymous``
    (read-only; off by default).
    """

    host: str = "127.0.0.1"
    port: int = 4840
    path: str = "avila-edge"
    application_uri: str | None = None
    certificate_dir: Path | None = None
    policies: tuple[ServerPolicy, ...] = (
        ServerPolicy.BASIC256SHA256,
        ServerPolicy.AES128_SHA256_RSAOAEP,
        ServerPolicy.AES256_SHA256_RSAPSS,
    )
    modes: tuple[ServerMode, ...] = (ServerMode.SIGN, ServerMode.SIGN_AND_ENCRYPT)
    allow_none: bool = False
    trusted_client_certificates: tuple[Path, ...] = ()
    users: tuple[OpcUaUser, ...] = ()
    user_certificates: tuple[Path, ...] = ()
    anonymous: bool = False
    history: bool = True
    """Serve HistoryRead (raw values) from the journal."""
    history_max_values: int = 10_000
    """At most this many values per node and HistoryRead call (the rest with a continuation point)."""

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ValueError("port must be between 0 and 65535")
        if not self.policies and not self.allow_none:
            raise ValueError("no endpoint: give at least one of policies, or allow_none: true")
        if self.policies and not self.modes:
            raise ValueError("modes must name sign and/or sign_and_encrypt")
        if not (self.users or self.user_certificates or self.anonymous):
            raise ValueError("nobody can log in: add users, user_certificates or anonymous: true")
        if len({u.name for u in self.users}) != len(self.users):
            raise ValueError("users: a user name is given twice")
        if self.application_uri is not None and ":" not in self.application_uri:
            raise ValueError("application_uri must be a URI such as urn:avila-edge:gateway-7")
        if not 1 <= self.history_max_values <= 1_000_000:
            raise ValueError("history_max_values must be between 1 and 1000000")


class SparkplugConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The gateway as a Sparkplug B edge node ``spBv1.0/<group_id>/.../<edge_node>`` (default: the
    site id), one Sparkplug device per asset, on its own connection to the same broker."""

    group_id: str
    edge_node: str | None = None

    def __post_init__(self) -> None:
        for key, value in (("group_id", self.group_id), ("edge_node", self.edge_node)):
            if value is not None and (not value or any(c in value for c in "/#+")):
                raise ValueError(f"{key} must be a non-empty name without '/', '#' or '+'")


class MqttPublisherConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Publishes twins and events to the site's MQTT broker and takes set commands from it.

    Topics (``<prefix>`` is ``topic_prefix``/``site.id``): ``<prefix>/status`` (online/offline,
    retained, offline as the will), ``<prefix>/<asset>/state`` (retained snapshot),
    ``<prefix>/<asset>/points/<point>`` (retained value), ``<prefix>/events/<kind>`` (QoS 1),
    ``<prefix>/<asset>/set/<property>`` (commands, only with ``commands: true``) and ``.../result``
    (replies).

    Plain TCP is allowed to a loopback broker; elsewhere ``tls`` is needed unless ``plaintext: true``.
    """

    host: str = "127.0.0.1"
    port: int = 1883
    tls: MqttTls | None = None
    plaintext: bool = False
    username: str | None = None
    password_file: Path | None = None
    client_id: str | None = None
    topic_prefix: str = "avila"
    keepalive: Duration = 30.0
    reconnect_initial: Duration = 0.5
    reconnect_max: Duration = 30.0
    events: tuple[str, ...] = ("alarm", "anomaly", "desired")
    """Event kinds published on ``<prefix>/events/<kind>``."""
    commands: bool = False
    """Take set commands (``<prefix>/<asset>/set/<property>``, and Sparkplug DCMD with ``sparkplug``).

    Off by default: a broker cannot tell the gateway who published a message, so whoever may publish to
    those topics can move a device. Turn it on together with a broker ACL that lets only operators'
    broker users publish there (docs/north.md shows one). On a broker that is not on loopback the
    gateway must log in (``username``): an anonymous connection there means anyone may command."""
    sparkplug: SparkplugConfig | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.port <= 65535:
            raise ValueError("port must be between 1 and 65535")
        if self.tls is None and not self.plaintext and not is_loopback(self.host):
            raise ValueError(f"{self.host} is not loopback: give tls, or plaintext: true on a trusted network")
        if self.password_file is not None and self.username is None:
            raise ValueError("a password_file needs a username")
        if not self.topic_prefix or any(c in self.topic_prefix for c in "#+") or self.topic_prefix.endswith("/"):
            raise ValueError("topic_prefix must be a topic without wildcards or a trailing '/'")
        if self.reconnect_initial <= 0 or self.reconnect_max < self.reconnect_initial:
            raise ValueError("reconnect waits need 0 < reconnect_initial <= reconnect_max")
        if self.commands and self.username is None and not is_loopback(self.host):
            raise ValueError(
                f"commands on {self.host} without a username: anyone reaching that broker could set values;"
                " log in (username, password_file) and let only operators publish set topics in the broker's ACL"
            )


class NorthConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Northbound endpoints; each is off when its section is absent."""

    opcua: OpcUaServerConfig | None = None
    mqtt: MqttPublisherConfig | None = None
