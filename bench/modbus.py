"""Modbus: readings per second through the driver versus a raw pymodbus client loop, same simulator."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

from avila_edge.config.model import DataType, DeviceConfig, PointConfig, TimingConfig
from avila_edge.core import Reading, SystemClock
from bench._table import Row
from drivers.modbus.config import ModbusAddress, ModbusConnection
from drivers.modbus.driver import ModbusDriver
from hil.modbus_plc import ModbusPlc

POINTS = 50  # float32 points: holding 0..99, one request per poll


async def _raw(port: int, seconds: float) -> float:
    from pymodbus.client import AsyncModbusTcpClient

    client = AsyncModbusTcpClient("127.0.0.1", port=port, retries=0, reconnect_delay=0)
    await client.connect()
    for _ in range(50):  # warm up, as the driver does
        await client.read_holding_registers(0, count=POINTS * 2, device_id=1)
    n, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        r = await client.read_holding_registers(0, count=POINTS * 2, device_id=1)
        values = client.convert_from_registers(r.registers, client.DATATYPE.FLOAT32)
        n += len(values) if isinstance(values, list) else 1
    elapsed = time.perf_counter() - started
    client.close()
    return n / elapsed


async def _driver(port: int, seconds: float) -> float:
    points = tuple(
        PointConfig(id=f"pump1/p{i}", address=ModbusAddress(table="holding", address=i * 2), type=DataType.FLOAT32)
        for i in range(POINTS)
    )
    device = DeviceConfig(id="plc1", driver="modbus", connection=ModbusConnection(host="127.0.0.1", port=port),
                          points=points, timing=TimingConfig(poll_interval=1e-6, timeout=1.0))  # fmt: skip
    count = 0

    async def sink(batch: Sequence[Reading]) -> None:
        nonlocal count
        count += len(batch)

    async with ModbusDriver(device, clock=SystemClock()) as driver, asyncio.TaskGroup() as tasks:
        task = tasks.create_task(driver.run(sink), name="driver[modbus:plc1].poll")
        await asyncio.sleep(0.3)  # connect and warm up
        start_count, started = count, time.perf_counter()
        await asyncio.sleep(seconds)
        elapsed, done = time.perf_counter() - started, count - start_count
        task.cancel()
    return done / elapsed


async def run(seconds: float) -> list[Row]:
    async with ModbusPlc() as plc:
        raw = await _raw(plc.port, seconds)
        ours = await _driver(plc.port, seconds)
    return [Row("modbus", f"readings through the driver ({POINTS} float32/req)", ours, "readings/s", raw,
                "raw pymodbus client loop")]  # fmt: skip
