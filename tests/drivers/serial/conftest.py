from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import Any

from avila_edge.config.model import DataType, DeviceConfig, PointConfig, TimingConfig
from avila_edge.core import SystemClock
from avila_edge.driver import DriverHealth
from drivers.serial.config import SerialAddress, SerialConnection
from drivers.serial.driver import SerialDriver
from drivers.serial.intake import Intake
from hil.pty import PtyPair
from hil.serial_instrument import Protocol, SerialInstrument

from ..harness import Collector, run_driver

WITHIN = 4.0
"""Deadline of the waits in these tests."""
INTERVAL = 0.05
"""Seconds between two frames of the simulated instrument."""

_ADDRESS_KEYS = set(SerialAddress.__struct_fields__)


def point(pid: str, kind: str = "float64", **kw: Any) -> PointConfig:
    """A point whose address takes the SerialAddress keys of ``kw`` (the rest go to PointConfig)."""
    address = SerialAddress(**{k: v for k, v in kw.items() if k in _ADDRESS_KEYS})
    rest = {k: v for k, v in kw.items() if k not in _ADDRESS_KEYS}
    return PointConfig(id=pid, address=address, type=DataType(kind), **rest)


def device(port: str, points: Sequence[PointConfig], *, poll_interval: float = 0.1, **conn: Any) -> DeviceConfig:
    conn.setdefault("idle_timeout", 0.6)
    return DeviceConfig(
        id="instr1",
        driver="serial",
        connection=SerialConnection(port=port, **conn),
        points=tuple(points),
        timing=TimingConfig(timeout=1.0, poll_interval=poll_interval, backoff_initial=0.1, backoff_max=0.3),
    )


def intake(points: Sequence[PointConfig], **conn: Any) -> Intake:
    dev = device("/dev/null", points, **conn)
    return Intake(dev, DriverHealth(dev.id, dev.driver))


NMEA_POINTS = (
    point("gps/lat", sentence="GGA", field="latitude"),
    point("gps/lon", sentence="GGA", field="longitude"),
    point("gps/fix", "int16", sentence="GGA", field="fix_quality"),
    point("gps/sog", sentence="RMC", field="speed_knots"),
    point("pump1/water_temp", sentence="MTW", field="temperature"),
    point("pump1/motor_temp", sentence="XDR", transducer="MOTOR"),
    point("pump1/setpoint", sentence="XDR", transducer="SETPOINT", writable=True, command="SET {value:.1f}\r\n"),
)

LINE_PATTERN = r"^PUMP,(?P<flow>[^,]*),(?P<pressure>[^,]*),"
LINE_POINTS = (
    point("pump1/flow", group="flow"),
    point("pump1/pressure", group="pressure"),
    point("pump1/motor_temp", pattern="^PUMP,", field=3),
    point("pump1/setpoint", pattern="^PUMP,", field=6, writable=True, command="SET {value:.1f}\r"),
    point("pump1/running", "bool", pattern="^PUMP,", field=7),
)


@contextlib.asynccontextmanager
async def rig(
    protocol: Protocol, points: Sequence[PointConfig], *, polled: bool = False, **conn: Any
) -> AsyncIterator[tuple[PtyPair, SerialInstrument, SerialDriver, Collector]]:
    """A pty pair, the simulated instrument on one end and a running serial driver on the other."""
    if protocol == "nmea":
        conn.setdefault("framing", "nmea")
    async with PtyPair() as pair:
        dev = device(str(pair.device), points, **conn)
        async with (
            SerialInstrument(pair.instrument, protocol=protocol, interval=INTERVAL, polled=polled) as inst,
            asyncio.TaskGroup() as tg,
        ):
            task = tg.create_task(inst.run(), name="hil.serial_instrument.run")
            try:
                async with run_driver(SerialDriver(dev, clock=SystemClock()), connected=True, within=WITHIN) as (
                    drv,
                    sink,
                ):
                    yield pair, inst, drv, sink
            finally:
                task.cancel()
