"""Latency: from a value changing in a simulator to the reading in the journal (and the twin), and to
its arrival at each northbound consumer.

The whole gateway runs (``Gateway.running``: drivers, pipeline, journal, audit, twins, uplink and the
northbound OPC UA server and MQTT publisher) with a Modbus device polled every ``POLL`` seconds
against the hil PLC and an OPC UA device monitoring the hil plant server with a ``POLL`` publishing
interval. Three consumers in the same process, all over loopback:

- the cloud uplink's: its MQTT uplink (``batch_age: 0``: a batch leaves as soon as the journal
  committed it) publishes to a real Mosquitto, where a subscriber decodes the batches;
- SCADA's OPC UA client: a real asyncua client subscribed to the gateway's own OPC UA server (the
  point's variable, publishing interval 0: the server sends each change as it happens);
- SCADA's MQTT client: a real subscriber to the gateway's MQTT publisher's point topics.

For each sample the value is changed in the simulator and the clock runs until the twin shows it
(journal committed, twins applied) and until each consumer receives it. Those figures include the
wait for the next poll or publishing cycle (0..``POLL``). The "gateway-added" figures run from the
reading's ``ts_gateway`` (stamped when the driver got the value) to the same arrivals, in wall-clock
time: what the gateway adds whatever the poll interval. The baseline of the Modbus change → MQTT
publisher subscriber rows is the same change through the raw libraries alone (``_raw_samples``: a
pymodbus client polling every ``POLL`` seconds and publishing each new value with aiomqtt), measured
in the same run once the gateway has stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import statistics
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import msgspec

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
from avila_edge.config.north import MqttPublisherConfig, NorthConfig, OpcUaServerConfig
from avila_edge.config.sync import MqttUplinkConfig
from avila_edge.core import SystemClock
from avila_edge.journal import EntryKind, decode_reading
from avila_edge.north import naming
from avila_edge.runtime.gateway import Gateway
from avila_edge.sync.batch import decode_batch
from bench._table import Row
from drivers.modbus.config import ModbusAddress, ModbusConnection
from drivers.opcua.config import OpcUaAddress, OpcUaConnection, SubscriptionSettings
from hil.modbus_plc import ModbusPlc
from hil.mosquitto import Mosquitto, free_port
from hil.opcua_server import OpcUaPlant

POLL = 0.005
SITE, ASSET = "bench", "lat"
MODBUS_POINT, OPCUA_POINT = f"{ASSET}/modbus", f"{ASSET}/opcua"
TIMEOUT = 1.0
"""A change not northbound by then counts as stalled, at this latency (it leaves with the next commit)."""
READY_TIMEOUT = 20.0
"""Seconds the gateway's OPC UA server may take to start and the bench's client to subscribe."""

Arrival = tuple[float, int]
"""When a (point, value) first arrived: ``perf_counter()`` and wall-clock ns (``ts_gateway``'s clock)."""
Arrivals = dict[tuple[str, float], Arrival]
CONSUMERS = {"uplink": "MQTT uplink consumer", "opcua": "OPC UA server subscriber", "mqtt": "MQTT publisher subscriber"}
"""Each northbound consumer's key and how its rows name it."""


def _now() -> Arrival:
    return time.perf_counter(), time.time_ns()


def _config(state_dir: Path, plc: ModbusPlc, plant: OpcUaPlant, broker: Mosquitto, opcua_port: int) -> GatewayConfig:
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
    north = NorthConfig(
        opcua=OpcUaServerConfig(port=opcua_port, policies=(), modes=(), allow_none=True, anonymous=True, history=False),
        mqtt=MqttPublisherConfig(host=broker.host, port=broker.port, plaintext=True, events=()),
    )
    return GatewayConfig(site=SiteConfig(id=SITE), devices=(modbus, opcua), assets=(AssetConfig(id=ASSET),),
                         uplinks=(uplink,), north=north, state_dir=state_dir, http=HttpConfig(port=0))  # fmt: skip


class _North:
    """What the consumers received, per consumer; ``arrived`` is set on every arrival at any of them."""

    def __init__(self) -> None:
        self.arrivals: dict[str, Arrivals] = {name: {} for name in CONSUMERS}
        self.arrived = asyncio.Event()

    def record(self, consumer: str, point: str, value: object, at: Arrival) -> None:
        if isinstance(value, int | float) and not isinstance(value, bool):
            self.arrivals[consumer].setdefault((point, float(value)), at)
            self.arrived.set()


async def _consume_uplink(broker: Mosquitto, north: _North, ready: asyncio.Event) -> None:
    """The cloud side: records when each (point, value) first arrives in an uplink batch."""
    import aiomqtt

    async with aiomqtt.Client(broker.host, broker.port) as client:
        await client.subscribe(f"avila/{SITE}/batch", qos=1)
        ready.set()
        async for message in client.messages:
            at = _now()
            for _, kind, body in decode_batch(bytes(message.payload)).entries:
                if kind == EntryKind.READING:
                    r = decode_reading(body)
                    north.record("uplink", r.point, r.value, at)


async def _consume_publisher(broker: Mosquitto, north: _North, ready: asyncio.Event) -> None:
    """SCADA over MQTT: records when each point value first arrives on the publisher's point topics."""
    import aiomqtt

    prefix = f"{naming.topic_prefix('avila', SITE)}/{ASSET}/points/"
    async with aiomqtt.Client(broker.host, broker.port) as client:
        await client.subscribe(prefix + "+", qos=1)
        ready.set()
        async for message in client.messages:
            at = _now()
            body = msgspec.json.decode(bytes(message.payload))
            point = f"{ASSET}/{str(message.topic).removeprefix(prefix)}"
            north.record("mqtt", point, body.get("value") if isinstance(body, dict) else None, at)


@contextlib.asynccontextmanager
async def _opcua_subscriber(gateway: Gateway, north: _North) -> AsyncIterator[None]:
    """SCADA over OPC UA: a real asyncua client subscribed to the gateway's server (publishing
    interval 0: each data change is sent as it happens), recording each point value's first arrival."""
    from asyncua.client.client import Client

    from avila_edge.north.opcua_values import node_id

    server: Any = gateway.north["opcua"]
    async with asyncio.timeout(READY_TIMEOUT):
        await server.ready.wait()
    client = Client(server.endpoint, timeout=5.0)

    class Handler:
        def datachange_notification(self, node: Any, val: Any, data: Any) -> None:
            north.record("opcua", str(node.nodeid.Identifier), val, _now())

    async with asyncio.timeout(READY_TIMEOUT):
        await client.connect()
    try:
        ns = await client.get_namespace_index(naming.namespace_uri(SITE))
        sub = await client.create_subscription(0, Handler())
        await sub.subscribe_data_change([client.get_node(node_id(p, ns)) for p in (MODBUS_POINT, OPCUA_POINT)])
        yield
    finally:
        with contextlib.suppress(Exception):
            async with asyncio.timeout(2.0):
                await client.disconnect()


async def _until(event: asyncio.Event, done: Callable[[], bool]) -> None:
    async with asyncio.timeout(TIMEOUT):
        while not done():
            event.clear()
            await event.wait()


class _Figures:
    """Latencies in seconds: ``since_change[where]`` from the change in the simulator (poll wait
    included), ``since_reading[where]`` from the reading's ``ts_gateway``; ``stalled[where]`` counts the
    changes that did not arrive within ``TIMEOUT``."""

    def __init__(self) -> None:
        where = ("twin", *CONSUMERS)
        self.since_change: dict[str, list[float]] = {w: [] for w in where}
        self.since_reading: dict[str, list[float]] = {w: [] for w in where}
        self.stalled: dict[str, int] = dict.fromkeys(CONSUMERS, 0)

    def add(self, where: str, started: float, ts_gateway: int, at: Arrival) -> None:
        self.since_change[where].append(at[0] - started)
        self.since_reading[where].append(max((at[1] - ts_gateway) / 1e9, 1e-6))


async def _samples(
    gateway: Gateway, point: str, change: Callable[[float], Awaitable[None]], n: int, north: _North,
) -> _Figures:  # fmt: skip
    twin_changes = gateway.twins.subscribe()
    twin_changed = asyncio.Event()
    figures = _Figures()

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
                ts_gateway = gateway.pipeline.latest[point].ts_gateway
                figures.add("twin", started, ts_gateway, _now())
                for consumer, arrivals in north.arrivals.items():
                    key = (point, value)
                    try:
                        await _until(north.arrived, lambda key=key, arrivals=arrivals: key in arrivals)  # type: ignore[misc]
                        figures.add(consumer, started, ts_gateway, arrivals[key])
                    except TimeoutError:
                        figures.stalled[consumer] += 1
                        late = (started + TIMEOUT, ts_gateway + round(TIMEOUT * 1e9))
                        figures.add(consumer, started, ts_gateway, late)
            watcher.cancel()
    finally:
        gateway.twins.unsubscribe(twin_changes)
    return figures


async def _raw_samples(plc: ModbusPlc, broker: Mosquitto, n: int) -> list[float]:
    """The same change timed through the raw libraries alone: a pymodbus client polling the register
    every ``POLL`` seconds and publishing each new value with aiomqtt (QoS 1) to a subscriber; no
    journal, no twins. Seconds from the change to the subscriber, poll wait included."""
    import aiomqtt
    from pymodbus.client import AsyncModbusTcpClient

    arrived: dict[float, float] = {}
    signal = asyncio.Event()
    topic = f"raw/{SITE}/{ASSET}/modbus"

    async def subscribe(ready: asyncio.Event) -> None:
        async with aiomqtt.Client(broker.host, broker.port) as client:
            await client.subscribe(topic, qos=1)
            ready.set()
            async for message in client.messages:
                arrived.setdefault(float(bytes(message.payload)), time.perf_counter())
                signal.set()

    async def poll(publisher: aiomqtt.Client) -> None:
        modbus = AsyncModbusTcpClient("127.0.0.1", port=plc.port, retries=0, reconnect_delay=0)
        await modbus.connect()
        try:
            last: float | None = None
            while True:
                started = time.perf_counter()
                r = await modbus.read_holding_registers(40, count=2, device_id=1)
                value = float(modbus.convert_from_registers(r.registers, modbus.DATATYPE.UINT32))  # type: ignore[arg-type]
                if value != last:
                    last = value
                    await publisher.publish(topic, str(value).encode(), qos=1)
                await asyncio.sleep(max(0.0, POLL - (time.perf_counter() - started)))
        finally:
            modbus.close()

    samples: list[float] = []
    ready = asyncio.Event()
    async with asyncio.TaskGroup() as tasks, aiomqtt.Client(broker.host, broker.port) as publisher:
        sub = tasks.create_task(subscribe(ready), name="bench.latency.raw-subscriber")
        await ready.wait()
        poller = tasks.create_task(poll(publisher), name="bench.latency.raw-poll")
        for k in range(n):
            value = float(900_000 + k)
            await asyncio.sleep(POLL * (k % 7) / 7)
            started = time.perf_counter()
            plc.set_value(40, int(value), "uint32")
            try:
                await _until(signal, lambda value=value: value in arrived)  # type: ignore[misc]
                samples.append(arrived[value] - started)
            except TimeoutError:
                samples.append(TIMEOUT)
        poller.cancel()
        sub.cancel()
    return samples


def _p(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] * 1e3 if len(values) > 1 else values[0] * 1e3


def _rows(label: str, figures: _Figures, n: int, raw: list[float] | None = None) -> list[Row]:
    """``raw``: the raw libraries' samples, the baseline of the change → MQTT publisher subscriber rows."""
    rows: list[Row] = []
    names = {"twin": "journal + twin", **CONSUMERS}
    for where, name in names.items():  # the rows of earlier runs keep their names
        for q in (50, 99):
            base = _p(raw, q) if raw and where == "mqtt" else None
            rows.append(Row("latency", f"{label} change → {name}, p{q}", _p(figures.since_change[where], q), "ms",
                            base, "raw pymodbus poll + aiomqtt publish" if base else ""))  # fmt: skip
    for where, name in names.items():
        for q in (50, 99):
            rows.append(Row("latency", f"{label} reading → {name}, gateway-added, p{q}",
                            _p(figures.since_reading[where], q), "ms"))  # fmt: skip
    for consumer, stalled in figures.stalled.items():
        if stalled:
            rows.append(Row("latency", f"{label} changes not at the {CONSUMERS[consumer]} within {TIMEOUT:g} s",
                            float(stalled), f"of {n}"))  # fmt: skip
    return rows


async def run(seconds: float) -> list[Row]:
    logging.getLogger("asyncua").setLevel(logging.ERROR)
    n = max(20, int(seconds * 100))
    north = _North()
    uplink_ready, publisher_ready = asyncio.Event(), asyncio.Event()
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as tmp:
        async with (
            ModbusPlc() as plc,
            OpcUaPlant(tick=None, policies=("NoSecurity",)) as plant,
            Mosquitto() as broker,
            asyncio.TaskGroup() as tasks,
        ):
            consumers = [
                tasks.create_task(_consume_uplink(broker, north, uplink_ready), name="bench.latency.uplink"),
                tasks.create_task(_consume_publisher(broker, north, publisher_ready), name="bench.latency.mqtt"),
            ]
            await uplink_ready.wait()
            await publisher_ready.wait()
            config = _config(Path(tmp), plc, plant, broker, free_port())
            async with Gateway.running(config, clock=SystemClock()) as gateway, _opcua_subscriber(gateway, north):

                async def modbus_change(value: float) -> None:
                    plc.set_value(40, int(value), "uint32")

                async def opcua_change(value: float) -> None:
                    await plant.write_value("pump1", "flow", value)

                await asyncio.sleep(0.5)  # connect, subscribe, first batches
                modbus = await _samples(gateway, MODBUS_POINT, modbus_change, n, north)
                opcua = await _samples(gateway, OPCUA_POINT, opcua_change, n, north)
            raw = await _raw_samples(plc, broker, n)  # the gateway stopped: nothing else polls the PLC
            rows += _rows("Modbus", modbus, n, raw)
            rows += _rows("OPC UA", opcua, n)
            rows += [Row("latency", f"raw pymodbus poll → aiomqtt publish → subscriber, p{q}", _p(raw, q), "ms")
                     for q in (50, 99)]  # fmt: skip
            for consumer in consumers:
                consumer.cancel()
    return rows
