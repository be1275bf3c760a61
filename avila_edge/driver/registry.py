"""Finds southbound drivers through the ``avila_edge.drivers`` entry-point group."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points

import msgspec

from avila_edge.config.model import DeviceConfig
from avila_edge.core import Clock
from avila_edge.driver.interface import Driver

ENTRY_POINT_GROUP = "avila_edge.drivers"


@dataclass(frozen=True, slots=True)
class DriverPlugin:
    """What a driver package declares (``drivers/<name>/__init__.py`` exports ``plugin``).

    ``connection_type`` and ``address_type`` are frozen msgspec structs with
    ``forbid_unknown_fields=True``; the config loader converts a device's ``connection`` mapping and
    each point's ``address`` into them and reports errors at the right file:line.
    ``check_device`` reports cross-field problems as ``(key path relative to the device, message)``
    pairs, e.g. ``("points[2].type", "a coil holds a bool, not float32")``.
    ``create`` builds the driver; it is only imported when a device uses the driver.
    """

    name: str
    connection_type: type[msgspec.Struct]
    address_type: type[msgspec.Struct]
    create: Callable[[DeviceConfig, Clock], Driver]
    check_device: Callable[[DeviceConfig], list[tuple[str, str]]] | None = None


def load_plugins() -> dict[str, DriverPlugin]:
    """Every installed driver plugin by name."""
    plugins: dict[str, DriverPlugin] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        plugin = ep.load()
        if not isinstance(plugin, DriverPlugin):
            raise TypeError(f"entry point {ep.name} = {ep.value} is not a DriverPlugin")
        plugins[plugin.name] = plugin
    return plugins
