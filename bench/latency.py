"""Latency: from a value changing in a simulator to the reading in the journal (and the twin), and to
its arrival at a northbound MQTT consumer.

The whole gateway runs (``Gateway.running``: drivers, pipeline, journal, audit, twins, uplink) with
a Modbus device polled every ``POLL`` seconds against the hil PLC and an OPC UA device monitoring
the hil plant server with a ``POLL`` publishing interval. Its MQTT uplink (``batch_age: 0``: a batch
leaves as soon as the journal committed it) publishes to a real Mosquitto, where a subscriber in
the same process decodes the batches. For each sample the value is changed in the simulator and
the clock runs until the twin shows it (journal committed, twins applied) and until the consumer
receives it. Both include the wait for the next poll or publishing cycle (0..``POLL``).
"""

from __future__ import annotations

import asyncio
import logging
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from avila_edge.config.model import (
    AssetConfig,
    DataType,
    DeviceConfig,
    GatewayConfig,
    HttpConfig,
    PointConfig,
    SiteConfig,
    TimingConfig,
)
from avila_edge.config.sync import MqttUplinkConfig
from avila_edge.core import SystemClock
from avila_edge.journal import EntryKind, decode_reading
from avila_edge.runtime.gateway import Gateway
from avila_edge.sync.batch import decode_batch
from bench._table import Row
from drivers.modbus.config import ModbusAddress, ModbusConnection
from drivers.opcua.config import OpcUaAddress, OpcUaConnection, SubscriptionSettings
from hil.modbus_plc import ModbusPlc
from hil.mosquitto import Mosquitto
from hil.opcua_server import OpcUaPlant

POLL = 0.005
MODBUS_POINT, OPCUA_POINT = "lat/modbus", "lat/opcua"
TIMEOUT = 1.0
"""A change not northbound by then counts as stalled, at this latency (it leaves with the next commit)."""

Arrivals = dict[tuple[str, float], float]


def _config(state_dir: Path, plc: ModbusPlc, plant: OpcUaPlant, broker: Mosquitto) -> GatewayConfig:
    timing = TimingConfig(poll_interval=POLL, timeout=1.0)
    modbus = DeviceConfig(
        id="plc", driver="modbus", connection=ModbusConnection(host="127.0.0.1", port=plc.port), timing=timing,
        points=(PointConfig(id=MODBUS_POINT, address=ModbusAddress(table="holding", address=40), type=DataType.UINT32),),
    )  # fmt: skip
    opcua = DeviceConfig(
        id="plant", driver="opcua", timing=timing,
        connection=OpcUaConnection(endpoint=plant.endpoint, subscription=SubscriptionSettings(sampling_interval=0)),
        points=(PointConfig(id=OPCUA_POINT, address=OpcUaAddress(node=plant.node_id("pump1", "flow")),
                            type=DataType.FLOAT64),),
    )  # fmt: skip
    uplink = MqttUplinkConfig(host=broker.host, port=broker.port, plaintext=True, batch_age=0.0)
    return GatewayConfig(site=SiteConfig(id="bench"), devices=(modbus, opcua), assets=(AssetConfig(id="lat"),),
                         uplinks=(uplink,), state_dir=state_dir, http=HttpConfig(port=0))  # fmt: skip


async def _consume(broker: Mosquitto, arrivals: Arrivals, arrived: asyncio.Event, ready: asyncio.Event) -> None:
    """The northbound consumer: records when each (point, value) first arrives in an uplink batch."""
    import aiomqtt

    async with aiomqtt.Client(broker.host, broker.port) as client:
        await client.subscribe("avila/bench/batch", qos=1)
        ready.set()
        async for message in client.messages:
            now = time.perf_counter()
            for _, kind, body in decode_batch(bytes(message.payload)).entries:
                if kind == EntryKind.READING:
                    r = decode_reading(body)
                    if isinstance(r.value, int | float):
                        arrivals.setdefault((r.point, float(r.value)), now)
            arrived.set()


async def _until(event: asyncio.Event, done: Callable[[], bool]) -> None:
    async with asyncio.timeout(TIMEOUT):
        while not done():
            event.clear()
            await event.wait()


async def _samples(
    gateway: Gateway, point: str, change: Callable[[float], Awaitable[None]], n: int,
    arrivals: Arrivals, arrived: asyncio.Event,
) -> tuple[list[float], list[float], int]:  # fmt: skip
    twin_changes = gateway.twins.subscribe()
    twin_changed = asyncio.Event()
    to_twin: list[float] = []
    to_north: list[float] = []
    stalled = 0

    async def watch_twins() -> None:
        while True:
            await twin_changes.get()
            twin_changed.set()

    try:
        async with asyncio.TaskGroup() as tasks:
            watcher = tasks.create_task(watch_twins(), name="bench.latency.twins")
            for k in range(n):
                value = float(1000 + k)
                await asyncio.sleep(POLL * (k % 7) / 7)  # spread the changes over the poll cycle
                started = time.perf_counter()
                await change(value)

                def committed(value: float = value) -> bool:
                    latest = gateway.pipeline.latest.get(point)
                    return latest is not None and latest.value == value

                await _until(twin_changed, committed)
                to_twin.append(time.perf_counter() - started)
                try:
                    await _until(arrived, lambda value=value: (point, value) in arrivals)  # type: ignore[misc]
                    to_north.append(arrivals[(point, value)] - started)
                except TimeoutError:
                    stalled += 1
                    to_north.append(TIMEOUT)
            watcher.cancel()
    finally:
        gateway.twins.unsubscribe(twin_changes)
    return to_twin, to_north, stalled


def _p(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] * 1e3 if len(values) > 1 else values[0] * 1e3


async def run(seconds: float) -> list[Row]:
    logging.getLogger("asyncua").setLevel(logging.ERROR)
    n = max(20, int(seconds * 100))
    arrivals: Arrivals = {}
    arrived, ready = asyncio.Event(), asyncio.Event()
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as tmp:
        async with (
            ModbusPlc() as plc,
            OpcUaPlant(tick=None, policies=("NoSecurity",)) as plant,
            Mosquitto() as broker,
            asyncio.TaskGroup() as tasks,
        ):
            consumer = tasks.create_task(_consume(broker, arrivals, arrived, ready), name="bench.latency.north")
            await ready.wait()
            async with Gateway.running(_config(Path(tmp), plc, plant, broker), clock=SystemClock()) as gateway:

                async def modbus_change(value: float) -> None:
                    plc.set_value(40, int(value), "uint32")

                async def opcua_change(value: float) -> None:
                    await plant.write_value("pump1", "flow", value)

                await asyncio.sleep(0.5)  # connect, subscribe, first batches
                for label, point, change in (("Modbus", MODBUS_POINT, modbus_change),
                                             ("OPC UA", OPCUA_POINT, opcua_change)):  # fmt: skip
                    twin, north, stalled = await _samples(gateway, point, change, n, arrivals, arrived)
                    rows += [
                        Row("latency", f"{label} change → journal + twin, p50", _p(twin, 50), "ms"),
                        Row("latency", f"{label} change → journal + twin, p99", _p(twin, 99), "ms"),
                        Row("latency", f"{label} change → MQTT uplink consumer, p50", _p(north, 50), "ms"),
                        Row("latency", f"{label} change → MQTT uplink consumer, p99", _p(north, 99), "ms"),
                    ]
                    if stalled:
                        rows.append(Row("latency", f"{label} changes not northbound within {TIMEOUT:g} s", float(stalled),
                                        f"of {n}"))  # fmt: skip
            consumer.cancel()
    return rows
