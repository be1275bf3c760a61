"""Serial driver: line instruments on RS-232/RS-485 (text lines, regex frames, NMEA 0183) become point
readings; command templates write to them."""

from __future__ import annotations

from avila_edge.config.model import DeviceConfig
from avila_edge.core import Clock
from avila_edge.driver import Driver, DriverPlugin
from drivers.serial.config import SerialAddress, SerialConnection


def _create(device: DeviceConfig, clock: Clock) -> Driver:
    from drivers.serial.driver import SerialDriver  # noqa: PLC0415 - pyserial loads only when used

    return SerialDriver(device, clock=clock)


def _check(device: DeviceConfig) -> list[tuple[str, str]]:
    from drivers.serial.mapping import check_device  # noqa: PLC0415

    return check_device(device)


plugin = DriverPlugin(
    name="serial",
    connection_type=SerialConnection,
    address_type=SerialAddress,
    create=_create,
    check_device=_check,
)

__all__ = ["SerialAddress", "SerialConnection", "plugin"]
