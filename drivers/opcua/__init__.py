"""OPC UA client driver: subscriptions to a server's nodes become point readings; setpoints are written."""

from __future__ import annotations

from avila_edge.config.model import DeviceConfig
from avila_edge.core import Clock
from avila_edge.driver import Driver, DriverPlugin
from drivers.opcua.config import OpcUaAddress, OpcUaConnection, SubscriptionSettings, check_device


def _create(device: DeviceConfig, clock: Clock) -> Driver:
    from drivers.opcua.driver import OpcUaDriver  # noqa: PLC0415 - asyncua loads only when used

    return OpcUaDriver(device, clock=clock)


plugin = DriverPlugin(
    name="opcua",
    connection_type=OpcUaConnection,
    address_type=OpcUaAddress,
    create=_create,
    check_device=check_device,
)

__all__ = ["OpcUaAddress", "OpcUaConnection", "SubscriptionSettings", "plugin"]
