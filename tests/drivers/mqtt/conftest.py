from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest

from avila_edge.config.model import DataType, DeviceConfig, PointConfig, TimingConfig
from avila_edge.core import SystemClock
from drivers.mqtt.config import MqttAddress, MqttConnection, Subscription
from drivers.mqtt.driver import MqttDriver
from hil.mosquitto import Mosquitto

from ..harness import Collector, run_driver
from ..harness import wait_connected as _wait_connected

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


WITHIN = 10.0
"""Deadline of the waits in these tests."""


def running(
    dev: DeviceConfig, *, connected: bool = True
) -> contextlib.AbstractAsyncContextManager[tuple[MqttDriver, Collector]]:
    """Run the driver in a task group; wait until it is connected (unless ``connected=False``)."""
    return run_driver(MqttDriver(dev, clock=SystemClock()), connected=connected, within=WITHIN)


async def wait_connected(driver: MqttDriver, within: float = WITHIN) -> None:
    await _wait_connected(driver, within)


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
