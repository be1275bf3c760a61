"""Frozen configuration of an OPC UA server connection and of one point's address.

A point names its node by NodeId string: ``{node: "ns=2;s=Pump1.Flow"}``, ``{node: "ns=2;i=1001"}``,
or with the namespace URI instead of its index (which a server may renumber when it restarts):
``{node: "nsu=urn:vendor:plant;s=Pump1.Flow"}``. Points are monitored items of a subscription;
points with the same publishing interval share one subscription.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final, Literal
from urllib.parse import urlsplit

import msgspec

from avila_edge.config.units import Duration
from drivers.opcua.codec import CodecError, parse_node_id

if TYPE_CHECKING:
    from avila_edge.config.model import DeviceConfig

SecurityMode = Literal["none", "sign", "sign_and_encrypt"]
SecurityPolicy = Literal[
    "basic256sha256",
    "aes128_sha256_rsaoaep",
    "aes256_sha256_rsapss",
    "basic128rsa15",
    "basic256",
]

POLICY_URIS: Final[dict[str, str]] = {
    "basic256sha256": "http://opcfoundation.org/UA/SecurityPolicy#Basic256Sha256",
    "aes128_sha256_rsaoaep": "http://opcfoundation.org/UA/SecurityPolicy#Aes128_Sha256_RsaOaep",
    "aes256_sha256_rsapss": "http://opcfoundation.org/UA/SecurityPolicy#Aes256_Sha256_RsaPss",
    "basic128rsa15": "http://opcfoundation.org/UA/SecurityPolicy#Basic128Rsa15",
    "basic256": "http://opcfoundation.org/UA/SecurityPolicy#Basic256",
}
DEPRECATED_POLICIES: Final = frozenset({"basic128rsa15", "basic256"})
"""SHA-1 based policies the OPC Foundation deprecated: refused unless ``allow_deprecated_policies``."""
DEFAULT_POLICY: Final = "basic256sha256"


class SubscriptionSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """How the server samples and reports the points (a point's address may override the last four).

    ``publishing_interval`` defaults to the device's ``timing.poll_interval``; a point with its own
    ``poll_interval`` gets a subscription of that publishing interval. ``sampling_interval`` unset
    asks the server to sample at the publishing interval. ``deadband_abs`` / ``deadband_percent``
    (of the node's EURange) make the server report only changes larger than that; at most one of them.
    """

    publishing_interval: Duration | None = None
    sampling_interval: Duration | None = None
    deadband_abs: float | None = None
    deadband_percent: float | None = None
    queue_size: int = 1


class OpcUaConnection(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Where the server is, how the channel is secured and how the gateway logs in.

    With ``security_mode`` sign or sign_and_encrypt the gateway presents its application instance
    certificate from ``certificate_dir`` (made on first start when absent) and accepts the server
    only if its certificate is in ``trusted_server_certificates`` (files or folders of DER/PEM
    certificates; a CA certificate there trusts the certificates it issued). An untrusted server
    certificate is refused and copied to ``<certificate_dir>/rejected/`` for review.
    The password is read from ``password_file`` at each connect and never logged.
    """

    endpoint: str
    security_mode: SecurityMode = "none"
    security_policy: SecurityPolicy = DEFAULT_POLICY
    allow_deprecated_policies: bool = False
    certificate_dir: str | None = None
    application_uri: str | None = None
    trusted_server_certificates: tuple[str, ...] = ()
    username: str | None = None
    password_file: str | None = None
    session_timeout: Duration = 60.0
    subscription: SubscriptionSettings = SubscriptionSettings()


class OpcUaAddress(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One point's node and, optionally, its own monitoring settings."""

    node: str
    sampling_interval: Duration | None = None
    deadband_abs: float | None = None
    deadband_percent: float | None = None
    queue_size: int | None = None


def check_device(device: DeviceConfig) -> list[tuple[str, str]]:
    """Cross-field problems in an OPC UA device's configuration."""
    problems: list[tuple[str, str]] = []
    conn: OpcUaConnection = device.connection
    url = urlsplit(conn.endpoint)
    try:
        port = url.port
    except ValueError:
        port = -1
    if url.scheme != "opc.tcp" or not url.hostname or port == -1:
        problems.append(("connection.endpoint", "must look like opc.tcp://host:4840/path"))
    if conn.security_mode != "none":
        if not conn.certificate_dir:
            problems.append(
                (
                    "connection.certificate_dir",
                    f"security_mode {conn.security_mode} needs a folder for the gateway's certificate"
                    " (made there on first start)",
                )
            )
        if not conn.trusted_server_certificates:
            problems.append(
                (
                    "connection.trusted_server_certificates",
                    f"security_mode {conn.security_mode} needs the server's certificate (or its CA) to trust;"
                    " a folder may start empty: a refused certificate is saved to <certificate_dir>/rejected/",
                )
            )
        if conn.security_policy in DEPRECATED_POLICIES and not conn.allow_deprecated_policies:
            problems.append(
                (
                    "connection.security_policy",
                    f"{conn.security_policy} is deprecated (SHA-1); use basic256sha256, aes128_sha256_rsaoaep or"
                    " aes256_sha256_rsapss, or set allow_deprecated_policies: true",
                )
            )
    if conn.password_file is not None and conn.username is None:
        problems.append(("connection.username", "a password_file needs a username"))
    if conn.application_uri is not None and ":" not in conn.application_uri:
        problems.append(("connection.application_uri", "must be a URI such as urn:avila-edge:gateway-7"))
    if conn.session_timeout < 1:
        problems.append(("connection.session_timeout", "must be at least 1s"))
    problems.extend(_check_settings(conn.subscription, "connection.subscription"))
    for i, point in enumerate(device.points):
        address: OpcUaAddress = point.address
        here = f"points[{i}].address"
        try:
            parse_node_id(address.node)
        except CodecError as exc:
            problems.append((f"{here}.node", str(exc)))
        problems.extend(
            _check_monitoring(
                here, address.sampling_interval, address.queue_size, address.deadband_abs, address.deadband_percent
            )
        )
        if point.poll_interval is not None and point.poll_interval <= 0:
            problems.append((f"points[{i}].poll_interval", "must be more than 0"))
    return problems


def _check_settings(sub: SubscriptionSettings, here: str) -> list[tuple[str, str]]:
    problems = _check_monitoring(here, sub.sampling_interval, sub.queue_size, sub.deadband_abs, sub.deadband_percent)
    if sub.publishing_interval is not None and sub.publishing_interval <= 0:
        problems.append((f"{here}.publishing_interval", "must be more than 0"))
    return problems


def _check_monitoring(
    here: str,
    sampling: float | None,
    queue_size: int | None,
    deadband_abs: float | None,
    deadband_percent: float | None,
) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    if sampling is not None and sampling < 0:
        problems.append((f"{here}.sampling_interval", "must be 0 (as fast as the server can) or more"))
    if queue_size is not None and not 1 <= queue_size <= 10_000:
        problems.append((f"{here}.queue_size", "must be between 1 and 10000"))
    if deadband_abs is not None and deadband_percent is not None:
        problems.append((f"{here}.deadband_percent", "give deadband_abs or deadband_percent, not both"))
    if deadband_abs is not None and deadband_abs < 0:
        problems.append((f"{here}.deadband_abs", "must be 0 or more"))
    if deadband_percent is not None and not 0 <= deadband_percent <= 100:
        problems.append((f"{here}.deadband_percent", "must be between 0 and 100"))
    return problems


__all__ = [
    "DEFAULT_POLICY",
    "DEPRECATED_POLICIES",
    "POLICY_URIS",
    "OpcUaAddress",
    "OpcUaConnection",
    "SecurityMode",
    "SecurityPolicy",
    "SubscriptionSettings",
    "check_device",
]
