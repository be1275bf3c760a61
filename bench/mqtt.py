"""MQTT: JSON messages per second through the gateway's MQTT driver versus a raw aiomqtt subscriber.

Both subscribers drain the same backlog from a real Mosquitto: each subscribes once with a persistent
session and goes away, a publisher process (paho, QoS 0) fills the broker's queue for it, and the
subscriber then reconnects and takes the whole queue. The publisher's own speed therefore never
limits the figure; what is measured is the receiving side: socket, MQTT decoding, JSON decoding
(and, for the driver, topic routing, value paths and Readings).

``python -m bench.mqtt HOST PORT COUNT`` is the publisher (run in its own process).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Sequence

from avila_edge.config.model import DataType, DeviceConfig, PointConfig, TimingConfig
from avila_edge.core import Reading, SystemClock
from bench._table import Row
from drivers.mqtt.config import MqttAddress, MqttConnection, Subscription
from drivers.mqtt.driver import MqttDriver
from hil.mosquitto import Mosquitto

ASSETS, POINTS = 10, 20
RATE_GUESS = 20_000  # messages/s: sizes the backlog so one drain takes about the time budget
BROKER_CONFIG = ("queue_qos0_messages true",)


def _topic(i: int) -> str:
    return f"bench/a{i // POINTS % ASSETS}/p{i % POINTS}"


def publish(host: str, port: int, count: int) -> None:
    """Publish ``count`` JSON messages round-robin over the point topics, then disconnect cleanly."""
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    client = paho.Client(CallbackAPIVersion.VERSION2, client_id="bench-publisher")
    client.connect(host, port)
    client.loop_start()
    info = None
    for i in range(count):
        info = client.publish(_topic(i), b'{"v": %d.5, "unit": "bar"}' % i, qos=0)
    if info is not None:
        info.wait_for_publish(60)
    client.disconnect()
    client.loop_stop()


def _fill(broker: Mosquitto, count: int) -> None:
    cmd = [sys.executable, "-m", "bench.mqtt", broker.host, str(broker.port), str(count)]
    subprocess.run(cmd, check=True, timeout=120)


async def _raw(broker: Mosquitto, count: int) -> float:
    import aiomqtt

    def client() -> aiomqtt.Client:
        return aiomqtt.Client(broker.host, broker.port, identifier="bench-raw", clean_session=False,
                              protocol=aiomqtt.ProtocolVersion.V311, max_queued_incoming_messages=0)  # fmt: skip

    async with client() as c:
        await c.subscribe("bench/+/+", qos=0)
    await asyncio.to_thread(_fill, broker, count)
    n, started = 0, time.perf_counter()
    async with asyncio.timeout(120), client() as c:
        async for message in c.messages:
            json.loads(message.payload)
            n += 1
            if n == count:
                break
    return n / (time.perf_counter() - started)


def _device(broker: Mosquitto) -> DeviceConfig:
    points = tuple(PointConfig(id=f"a{a}/p{p}", address=MqttAddress(), type=DataType.FLOAT64)
                   for a in range(ASSETS) for p in range(POINTS))  # fmt: skip
    sub = Subscription(filter="bench/+/+", template="bench/{asset}/{point}", value_path="$.v", qos=0)
    conn = MqttConnection(host=broker.host, port=broker.port, client_id="bench-driver", protocol="3.1.1",
                          persistent_session=True, subscriptions=(sub,))  # fmt: skip
    return DeviceConfig(id="broker", driver="mqtt", connection=conn, points=points, timing=TimingConfig(timeout=5.0))


async def _driver(broker: Mosquitto, count: int) -> float:
    device = _device(broker)
    done = asyncio.Event()
    n = 0

    async def sink(batch: Sequence[Reading]) -> None:
        nonlocal n
        n += len(batch)
        if n >= count:
            done.set()

    async def session(*, until_subscribed: bool) -> None:
        async with MqttDriver(device, clock=SystemClock()) as driver, asyncio.TaskGroup() as tasks:
            task = tasks.create_task(driver.run(sink), name="driver[mqtt:broker]")
            if until_subscribed:
                while not driver.health().connected:  # noqa: ASYNC110 - the driver offers no event for it
                    await asyncio.sleep(0.01)
            else:
                await done.wait()
            task.cancel()

    async with asyncio.timeout(120):
        await session(until_subscribed=True)
        await asyncio.to_thread(_fill, broker, count)
        n, started = 0, time.perf_counter()
        await session(until_subscribed=False)
    return n / (time.perf_counter() - started)


async def run(seconds: float) -> list[Row]:
    count = max(2_000, int(seconds * RATE_GUESS))
    async with Mosquitto(extra_config=BROKER_CONFIG) as broker:
        raw = await _raw(broker, count)
        ours = await _driver(broker, count)
    return [Row("mqtt", f"JSON messages through the driver ({ASSETS * POINTS} topics)", ours, "messages/s", raw,
                "raw aiomqtt subscriber + json.loads")]  # fmt: skip


if __name__ == "__main__":
    publish(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
