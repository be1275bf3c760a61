"""OPC UA: data-change notifications per second through the gateway's driver versus a raw asyncua
client subscription, both against the same hil pump plant server in its own process.

The server (``python -m hil.opcua_server``) serves ``ASSETS`` pumps whose analog variables change at
every plant step (every ``TICK`` seconds); both clients monitor the same variables with a 10 ms
publishing interval, one after the other, so the server's own write rate is the same for both.
The server's write rate is what limits the count on this machine, so the CPU the client process
spends per data change (the server runs elsewhere) is the figure that compares the two clients.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

from avila_edge.config.model import DataType, DeviceConfig, PointConfig, TimingConfig
from avila_edge.core import Reading, SystemClock
from bench._table import Row
from drivers.opcua.config import OpcUaAddress, OpcUaConnection, SubscriptionSettings
from drivers.opcua.driver import OpcUaDriver
from hil.mosquitto import free_port
from hil.opcua_server import NAMESPACE_URI

ASSETS = 20
QUICK_ASSETS = 6  # with a budget under a second: the server starts faster
ANALOG = ("flow", "pressure", "motor_temperature", "vibration", "current", "speed")
TICK = 0.01
PUBLISHING = 0.01
WARM_UP = 0.5


@contextlib.asynccontextmanager
async def plant_server(assets: int) -> AsyncIterator[str]:
    """The hil OPC UA plant in a subprocess; yields its endpoint once it answers."""
    port = free_port()
    cmd = [sys.executable, "-m", "hil.opcua_server", "--port", str(port), "--assets", ",".join(f"a{i}" for i in range(assets)),
           "--tick", str(TICK), "--policy", "NoSecurity"]  # fmt: skip
    proc = await asyncio.create_subprocess_exec(*cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(30):
            line = await proc.stdout.readline()
        if not line.startswith(b"OPC UA plant:"):
            raise RuntimeError(f"the OPC UA plant did not start: {line!r}")
        yield line.split()[3].decode()
    finally:
        if proc.returncode is None:
            proc.terminate()
            await proc.wait()


def _nodes(assets: int) -> list[tuple[str, str]]:
    return [(f"a{i}/{name}", f"nsu={NAMESPACE_URI};s=a{i}.{name}") for i in range(assets) for name in ANALOG]


async def _raw(endpoint: str, assets: int, seconds: float) -> tuple[float, float]:
    from asyncua import ua
    from asyncua.client.client import Client

    count = 0

    class Handler:
        def datachange_notification(self, node: Any, val: Any, data: Any) -> None:
            nonlocal count
            count += 1

    async with Client(endpoint, timeout=5) as client:
        ns = await client.get_namespace_index(NAMESPACE_URI)
        nodes = [
            client.get_node(ua.NodeId(ua.String(node.split(";s=")[1]), ua.Int16(ns))) for _, node in _nodes(assets)
        ]
        sub = await client.create_subscription(PUBLISHING * 1000, Handler())
        await sub.subscribe_data_change(nodes, queuesize=1)
        await asyncio.sleep(WARM_UP)
        start_count, started, cpu = count, time.perf_counter(), time.process_time()
        await asyncio.sleep(seconds)
        done, elapsed, cpu = count - start_count, time.perf_counter() - started, time.process_time() - cpu
        await sub.delete()
    return done / elapsed, cpu / max(done, 1) * 1e6


async def _driver(endpoint: str, assets: int, seconds: float) -> tuple[float, float]:
    points = tuple(
        PointConfig(id=pid, address=OpcUaAddress(node=node), type=DataType.FLOAT64) for pid, node in _nodes(assets)
    )
    conn = OpcUaConnection(endpoint=endpoint, subscription=SubscriptionSettings(publishing_interval=PUBLISHING))
    device = DeviceConfig(id="plant", driver="opcua", connection=conn, points=points, timing=TimingConfig(timeout=5.0))
    count = 0

    async def sink(batch: Sequence[Reading]) -> None:
        nonlocal count
        count += len(batch)

    async with OpcUaDriver(device, clock=SystemClock()) as driver, asyncio.TaskGroup() as tasks:
        task = tasks.create_task(driver.run(sink), name="driver[opcua:plant]")
        await asyncio.sleep(WARM_UP)
        start_count, started, cpu = count, time.perf_counter(), time.process_time()
        await asyncio.sleep(seconds)
        done, elapsed, cpu = count - start_count, time.perf_counter() - started, time.process_time() - cpu
        task.cancel()
    return done / elapsed, cpu / max(done, 1) * 1e6


async def run(seconds: float) -> list[Row]:
    logging.getLogger("asyncua").setLevel(logging.ERROR)
    assets = ASSETS if seconds >= 1 else QUICK_ASSETS
    async with plant_server(assets) as endpoint:
        raw, raw_cpu = await _raw(endpoint, assets, seconds)
        ours, our_cpu = await _driver(endpoint, assets, seconds)
    return [
        Row("opcua", f"data changes through the driver ({assets * len(ANALOG)} items)", ours, "changes/s", raw,
            "raw asyncua subscription, same server"),
        Row("opcua", "client CPU per data change", our_cpu, "µs", raw_cpu, "raw asyncua subscription"),
    ]  # fmt: skip
