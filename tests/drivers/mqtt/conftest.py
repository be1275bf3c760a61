from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import pytest

from avila_edge.config.model import DataType, DeviceConfig, PointConfig, TimingConfig
from avila_edge.core import Quality, Reading, SystemClock
from drivers.mqtt.config import MqttAddress, MqttConnection, Subscription
from drivers.mqtt.driver import MqttDriver
from hil.mosquitto import Mosquitto

_ADDRESS_KEYS = set(MqttAddress.__struct_fields__)


def point(pid: str, kind: str = "float64", **kw: Any) -> PointConfig:
    """A point whose address takes the MqttAddress keys of ``kw`` (the rest go to PointConfig)."""
    address = MqttAddress(**{k: v for k, v in kw.items() if k in _ADDRESS_KEYS})
    rest = {k: v for k, v in kw.items() if k not in _ADDRESS_KEYS}
    return PointConfig(id=pid, address=address, type=DataType(kind), **rest)


def device(
    port: int,
    points: Sequence[PointConfig],
    *,
    subscriptions: Sequence[Subscription] = (),
    timeout: float = 2.0,
    device_id: str = "broker1",
    **conn: Any,
) -> DeviceConfig:
    if "max_payload" in conn:
        conn["max_payload"] = conn["max_payload"]
    if "keepalive" in conn:
        conn["keepalive"] = conn["keepalive"]
    return DeviceConfig(
        id=device_id,
        driver="mqtt",
        connection=MqttConnection(host="127.0.0.1", port=port, subscriptions=tuple(subscriptions), **conn),
        points=tuple(points),
        timing=TimingConfig(timeout=timeout, backoff_initial=0.05, backoff_max=0.3),
    )


class Collector:
    """A reading sink that keeps every reading and the latest one per point."""

    def __init__(self) -> None:
        self.all: list[Reading] = []
        self.latest: dict[str, Reading] = {}
        self.changed = asyncio.Event()

    async def __call__(self, batch: Sequence[Reading]) -> None:
        for r in batch:
            self.all.append(r)
            self.latest[r.point] = r
        self.changed.set()

    def of(self, point_id: str) -> list[Reading]:
        return [r for r in self.all if r.point == point_id]

    async def wait_for(self, predicate: Callable[[Collector], bool], within: float = 10.0) -> None:
        async with asyncio.timeout(within):
            while not predicate(self):
                self.changed.clear()
                await self.changed.wait()

    async def wait_value(self, point_id: str, value: Any, within: float = 10.0) -> Reading:
        def seen(c: Collector) -> bool:
            r = c.latest.get(point_id)
            return r is not None and r.value == value and r.quality is Quality.GOOD

        await self.wait_for(seen, within)
        return self.latest[point_id]

    async def wait_quality(self, point_id: str, quality: Quality, within: float = 10.0) -> Reading:
        def seen(c: Collector) -> bool:
            r = c.latest.get(point_id)
            return r is not None and r.quality is quality

        await self.wait_for(seen, within)
        return self.latest[point_id]


@contextlib.asynccontextmanager
async def running(dev: DeviceConfig, *, connected: bool = True) -> AsyncIterator[tuple[MqttDriver, Collector]]:
    """Run the driver in a task group; wait until it has subscribed (unless ``connected=False``)."""
    sink = Collector()
    async with MqttDriver(dev, clock=SystemClock()) as driver, asyncio.TaskGroup() as tg:
        task = tg.create_task(driver.run(sink), name=f"driver[mqtt:{dev.id}].run")
        try:
            if connected:
                await wait_connected(driver)
            yield driver, sink
        finally:
            task.cancel()


async def wait_connected(driver: MqttDriver, within: float = 10.0) -> None:
    async with asyncio.timeout(within):
        while not driver.health().connected:
            await asyncio.sleep(0.01)


async def mosquitto_pub(
    broker: Mosquitto, topic: str, payload: bytes, *, qos: int = 0, retain: bool = False, port: int | None = None
) -> None:
    """Publish with Debian's mosquitto_pub (an independent client): payload from stdin, as is."""
    source = "-s" if payload else "-n"  # -n: a zero-length message (stdin must not be empty)
    args = ["-h", broker.host, "-p", str(port or broker.port), "-t", topic, "-q", str(qos), source]
    if retain:
        args.append("-r")
    proc = await asyncio.create_subprocess_exec(
        "mosquitto_pub", *args, stdin=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    async with asyncio.timeout(10):
        _, err = await proc.communicate(payload)
    assert proc.returncode == 0, err.decode()


@pytest.fixture
async def broker() -> AsyncIterator[Mosquitto]:
    async with Mosquitto() as b:
        yield b
