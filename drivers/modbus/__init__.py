"""Modbus driver (TCP, and RTU on a serial line): block-optimised polling of registers, coils and discrete inputs."""

from __future__ import annotations

from avila_edge.config.model import DeviceConfig
from avila_edge.core import Clock
from avila_edge.driver import Driver, DriverPlugin
from drivers.modbus.config import ModbusAddress, ModbusConnection


def _create(device: DeviceConfig, clock: Clock) -> Driver:
    from drivers.modbus.driver import ModbusDriver  # noqa: PLC0415 - pymodbus loads only when used

    return ModbusDriver(device, clock=clock)


def _check(device: DeviceConfig) -> list[tuple[str, str]]:
    from drivers.modbus.driver import check_device  # noqa: PLC0415

    return check_device(device)


plugin = DriverPlugin(
    name="modbus",
    connection_type=ModbusConnection,
    address_type=ModbusAddress,
    create=_create,
    check_device=_check,
)

__all__ = ["ModbusAddress", "ModbusConnection", "plugin"]
