"""Northbound endpoints: the OPC UA server and the MQTT publisher that PLCs and SCADA use.

``services(...)`` builds the configured ones for ``Gateway.services()``; asyncua and aiomqtt are
imported only when their section is configured.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine, Sequence

from avila_edge.config.model import GatewayConfig
from avila_edge.config.secrets import read_secret
from avila_edge.core import Clock, Event
from avila_edge.journal import Journal
from avila_edge.north.counters import Endpoint, NorthStats
from avila_edge.twins.service import TwinService

Service = tuple[str, Callable[[], Coroutine[None, None, None]]]


def services(
    config: GatewayConfig,
    *,
    twins: TwinService,
    journal: Journal,
    record: Callable[[Sequence[Event]], Awaitable[None]],
    clock: Clock,
) -> tuple[list[Service], dict[str, Endpoint]]:
    """The configured northbound endpoints as (task name, coroutine factory), and the endpoints by
    name (``opcua``, ``mqtt``, ``sparkplug``) for their counters."""
    found: list[Service] = []
    endpoints: dict[str, Endpoint] = {}
    north = config.north
    if north.opcua is not None:
        from avila_edge.north.opcua_server import OpcUaServer  # noqa: PLC0415 - asyncua only when configured

        passwords = {
            u.name: read_secret(u.password_file, what=f"OPC UA user {u.name} password") or "" for u in north.opcua.users
        }
        server = OpcUaServer(north.opcua, config, twins=twins, journal=journal, record=record, passwords=passwords,
                             clock=clock)  # fmt: skip
        found.append(("north.opcua", server.run))
        endpoints["opcua"] = server
    if north.mqtt is not None:
        from avila_edge.north.mqtt_publisher import MqttPublisher  # noqa: PLC0415 - aiomqtt only when configured

        password = read_secret(north.mqtt.password_file, what="MQTT publisher password")
        publisher = MqttPublisher(north.mqtt, config, twins=twins, journal=journal, record=record, clock=clock,
                                  password=password)  # fmt: skip
        found.append(("north.mqtt", publisher.run))
        endpoints["mqtt"] = publisher
        if north.mqtt.sparkplug is not None:
            from avila_edge.north.sparkplug_node import SparkplugNode  # noqa: PLC0415

            node = SparkplugNode(north.mqtt, north.mqtt.sparkplug, config, twins=twins, record=record, clock=clock,
                                 password=password)  # fmt: skip
            found.append(("north.sparkplug", node.run))
            endpoints["sparkplug"] = node
    return found, endpoints


__all__ = ["Endpoint", "NorthStats", "Service", "services"]
