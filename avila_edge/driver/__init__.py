"""The driver interface and the registry that finds installed drivers."""

from avila_edge.driver.interface import Driver, DriverHealth, HealthSnapshot, ReadingSink
from avila_edge.driver.registry import ENTRY_POINT_GROUP, DriverPlugin, load_plugins

__all__ = [
    "ENTRY_POINT_GROUP",
    "Driver",
    "DriverHealth",
    "DriverPlugin",
    "HealthSnapshot",
    "ReadingSink",
    "load_plugins",
]
