"""The MQTT sensor fleet and the Sparkplug edge node of hil/, observed by a plain subscriber."""

from __future__ import annotations

import asyncio

import aiomqtt

from hil.mosquitto import Mosquitto
from hil.mqtt_sensors import VALUES, SensorFleet, SparkplugNode, command_metrics


async def _collect(client: aiomqtt.Client, count: int) -> list[tuple[str, bytes]]:
    out: list[tuple[str, bytes]] = []
    async with asyncio.timeout(10):
        async for m in client.messages:
            out.append((m.topic.value, m.payload if isinstance(m.payload, bytes) else b""))
            if len(out) == count:
                return out
    return out


async def test_the_fleet_publishes_every_value_as_json_and_as_a_plain_number() -> None:
    async with Mosquitto() as broker, aiomqtt.Client(broker.host, broker.port) as sub:
        await sub.subscribe([("plant/#", 1), ("plant-raw/#", 1)])
        async with SensorFleet(broker.host, broker.port, assets=["p1"], clock_ms=lambda: 1234) as fleet:
            assert await fleet.publish_once() == 2 * len(VALUES)
            got = dict(await _collect(sub, 2 * len(VALUES)))
    assert set(got) == {f"plant/p1/{v}" for v in VALUES} | {f"plant-raw/p1/{v}" for v in VALUES}
    assert got["plant/p1/flow"] == b'{"v": ' + got["plant-raw/p1/flow"] + b', "ts": 1234}'


async def test_the_edge_node_births_with_seq_0_and_its_deaths_carry_the_sessions_bdseq() -> None:
    async with Mosquitto() as broker, aiomqtt.Client(broker.host, broker.port) as sub:
        await sub.subscribe("spBv1.0/plant/#", qos=1)
        node = SparkplugNode(broker.host, broker.port, devices=["pump1"], bd_seq=7)
        async with node:
            pass
        async with node:
            pass
        messages = await _collect(sub, 6)
    kinds = [t.split("/")[2] for t, _ in messages]
    assert kinds == ["NBIRTH", "DBIRTH", "NDEATH", "NBIRTH", "DBIRTH", "NDEATH"]
    bd = [command_metrics(p)["bdSeq"] for t, p in messages if "/NBIRTH/" in t or "/NDEATH/" in t]
    assert bd == [7, 7, 8, 8]
