from __future__ import annotations

from typing import Any

import msgspec

from avila_edge.config.model import (
    AssetConfig,
    DataType,
    DeviceConfig,
    GatewayConfig,
    PointConfig,
    SiteConfig,
    TimingConfig,
)
from avila_edge.config.twins import AssetTypeConfig
from drivers.modbus.config import ModbusAddress, ModbusConnection

PUMP_TYPE: dict[str, Any] = {
    "id": "pump",
    "derived": {"hydraulic_power": "flow * pressure / 36", "vibration_mean": 'mean(vibration, "5m")'},
    "alarms": [
        {"id": "hot", "value": "motor_temperature", "kind": "high", "limit": 80, "hysteresis": 3, "delay": 30},
        {"id": "vibration", "value": "vibration", "kind": "high", "limit": 7.1, "hysteresis": 0.5, "delay": 60},
        {"id": "comms", "value": "flow", "kind": "bad_quality", "delay": 5},
    ],
    "maintenance": {"indicator": "vibration", "failure_threshold": 11.0},
    "writable": {"speed_setpoint": {"tolerance": 1, "timeout": 5}, "trim": {"tolerance": 0, "timeout": 5}},
}
LINE_TYPE: dict[str, Any] = {"id": "line", "aggregates": {"total_flow": {"function": "sum", "of": "flow"}}}


def site(port: int = 502, *, pump_type: dict[str, Any] | None = None) -> GatewayConfig:
    def p(name: str, address: int, kind: str = "float32", **kw: Any) -> PointConfig:
        return PointConfig(
            id=f"pump1/{name}", address=ModbusAddress(table="holding", address=address), type=DataType(kind), **kw
        )

    points = (
        p("flow", 0),
        p("pressure", 8, "int16", scale=0.01),
        p("motor_temperature", 9, "int16", scale=0.1),
        p("speed_setpoint", 10, "uint16", writable=True),
        p("vibration", 32),
        p("trim", 90, "int16", writable=True),
    )
    dev = DeviceConfig(
        id="plc1",
        driver="modbus",
        connection=ModbusConnection(host="127.0.0.1", port=port, max_gap=0),
        points=points,
        timing=TimingConfig(poll_interval=0.1, timeout=0.5, backoff_initial=0.05, backoff_max=0.2),
    )
    return GatewayConfig(
        site=SiteConfig(id="test"),
        devices=(dev,),
        assets=(AssetConfig(id="line1", type="line"), AssetConfig(id="pump1", type="pump", parent="line1")),
        asset_types=(
            msgspec.convert(pump_type or PUMP_TYPE, AssetTypeConfig),
            msgspec.convert(LINE_TYPE, AssetTypeConfig),
        ),
    )
