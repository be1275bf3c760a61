from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest

from avila_edge.config.model import DataType, DeviceConfig, PointConfig, TimingConfig
from avila_edge.core import Reading
from drivers.modbus.config import ModbusAddress, ModbusConnection
from hil.modbus_plc import ModbusPlc


def point(pid: str, table: str, address: int, kind: str = "float32", **kw: Any) -> PointConfig:
    addr_keys = {"unit_id", "bit", "length", "byte_order", "word_order"}
    addr = ModbusAddress(table=table, address=address, **{k: v for k, v in kw.items() if k in addr_keys})  # type: ignore[arg-type]
    rest = {k: v for k, v in kw.items() if k not in addr_keys}
    return PointConfig(id=pid, address=addr, type=DataType(kind), **rest)


def device(
    port: int, points: Sequence[PointConfig], *, poll: float = 0.1, timeout: float = 0.5, **conn: Any
) -> DeviceConfig:
    return DeviceConfig(
        id="plc1",
        driver="modbus",
        connection=ModbusConnection(host="127.0.0.1", port=port, **conn),
        points=tuple(points),
        timing=TimingConfig(poll_interval=poll, timeout=timeout, backoff_initial=0.05, backoff_max=0.2),  # type: ignore[arg-type]
    )


class Collector:
    """A reading sink that remembers the latest reading per point."""

    def __init__(self) -> None:
        self.latest: dict[str, Reading] = {}
        self.all: list[Reading] = []
        self.batches = 0
        self.changed = asyncio.Event()

    async def __call__(self, batch: Sequence[Reading]) -> None:
        self.batches += 1
        for r in batch:
            self.latest[r.point] = r
        self.all.extend(batch)
        self.changed.set()

    async def wait_for(self, predicate: Any, within: float = 10.0) -> None:
        async with asyncio.timeout(within):
            while not predicate(self.latest):
                self.changed.clear()
                await self.changed.wait()


@pytest.fixture
async def plc() -> AsyncIterator[ModbusPlc]:
    async with ModbusPlc(unit_ids=(1, 2)) as p:
        yield p
