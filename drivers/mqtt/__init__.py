"""MQTT driver: JSON, plain-number and Sparkplug B messages from a broker become point readings."""

from __future__ import annotations

from avila_edge.config.model import DeviceConfig
from avila_edge.core import Clock
from avila_edge.driver import Driver, DriverPlugin
from drivers.mqtt.config import MqttAddress, MqttConnection, Subscription, TlsFiles


def _create(device: DeviceConfig, clock: Clock) -> Driver:
    from drivers.mqtt.driver import MqttDriver  # noqa: PLC0415 - aiomqtt loads only when used

    return MqttDriver(device, clock=clock)


def _check(device: DeviceConfig) -> list[tuple[str, str]]:
    from drivers.mqtt.routing import check_device  # noqa: PLC0415

    return check_device(device)


plugin = DriverPlugin(
    name="mqtt",
    connection_type=MqttConnection,
    address_type=MqttAddress,
    create=_create,
    check_device=_check,
)

__all__ = ["MqttAddress", "MqttConnection", "Subscription", "TlsFiles", "plugin"]
