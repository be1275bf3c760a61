"""Sparkplug B through the driver: the hil edge node publishes to a real Mosquitto."""

from __future__ import annotations

import asyncio

from avila_edge.core import Quality
from drivers.mqtt.config import Subscription
from drivers.mqtt.sparkplug import DataType, encode_metric, encode_payload
from hil.mosquitto import Mosquitto
from hil.mqtt_sensors import SparkplugNode

from .conftest import Collector, device, mosquitto_pub, point, running

SPB_SUB = Subscription(filter="spBv1.0/plant/#", template="spBv1.0/plant/edge1/{asset}/{point}", format="sparkplug")


def sparkplug_device(port: int) -> object:
    return device(
        port,
        [
            point("pump1/flow"),
            point("pump1/speed"),
            point("pump1/running", "bool"),
            point("pump2/flow"),
            point("edge1/uptime", group="plant", node="edge1", metric="uptime"),
            point(
                "pump1/setpoint", group="plant", node="edge1", device="pump1", metric="speed_setpoint", writable=True
            ),
        ],
        subscriptions=[SPB_SUB],
    )


async def _good(sink: Collector, points: list[str], within: float = 10.0) -> None:
    await sink.wait_for(lambda c: all(p in c.latest and c.latest[p].good for p in points), within)


async def test_births_and_alias_only_data_become_good_readings(broker: Mosquitto) -> None:
    dev = sparkplug_device(broker.port)
    async with (
        running(dev) as (driver, sink),
        SparkplugNode(broker.host, broker.port, devices=["pump1", "pump2"]) as node,
    ):  # type: ignore[arg-type]
        await _good(
            sink, ["pump1/flow", "pump1/speed", "pump1/running", "pump2/flow", "edge1/uptime", "pump1/setpoint"]
        )
        assert sink.latest["pump1/running"].value is True
        assert sink.latest["pump1/setpoint"].value == 1500.0
        births = len(sink.all)
        await node.publish_data(1.0)
        await node.publish_node_data()
        await sink.wait_for(lambda c: len(c.of("pump1/flow")) == 2 and len(c.of("edge1/uptime")) == 2)
        health = driver.health()
        readings = list(sink.all)  # leaving the node publishes its NDEATH
    assert len(readings) > births
    assert all(r.good for r in readings)
    assert node.rebirths == 0
    assert not any(k.startswith("sparkplug") for k in health.errors)
    flow = sink.of("pump1/flow")[-1]
    assert flow.ts_source // 1_000_000 > 1_600_000_000_000  # the metric's own timestamp (ms)


async def test_a_seq_gap_marks_data_uncertain_requests_rebirth_and_recovers_good(broker: Mosquitto) -> None:
    dev = sparkplug_device(broker.port)
    async with running(dev) as (driver, sink), SparkplugNode(broker.host, broker.port, devices=["pump1"]) as node:  # type: ignore[arg-type]
        await _good(sink, ["pump1/flow"])
        node.skip_seq(3)
        await node.publish_data(1.0)
        uncertain = await sink.wait_quality("pump1/flow", Quality.UNCERTAIN)
        async with asyncio.timeout(10):
            while node.rebirths < 1:
                await asyncio.sleep(0.02)
        await sink.wait_quality("pump1/flow", Quality.GOOD)  # the rebirth's DBIRTH
        await node.publish_data(1.0)
        await sink.wait_for(lambda c: c.of("pump1/flow")[-1].good and len(c.of("pump1/flow")) >= 4)
        health = driver.health()
    assert uncertain.reason == "sparkplug seq gap: rebirth requested"
    assert uncertain.value is not None
    assert health.errors["sparkplug_seq_gap"] == 1
    assert node.rebirths == 1
    assert node.commands[0][0] == "spBv1.0/plant/NCMD/edge1"


async def test_device_death_and_node_death_mark_points_bad(broker: Mosquitto) -> None:
    dev = sparkplug_device(broker.port)
    async with running(dev) as (_, sink), SparkplugNode(broker.host, broker.port, devices=["pump1", "pump2"]) as node:  # type: ignore[arg-type]
        await _good(sink, ["pump1/flow", "pump2/flow", "edge1/uptime"])
        await node.device_death("pump2")
        r = await sink.wait_quality("pump2/flow", Quality.BAD)
        assert r.reason == "sparkplug death (device plant/edge1/pump2)"
        assert sink.latest["pump1/flow"].good
        await node.node_death()
        await sink.wait_quality("pump1/flow", Quality.BAD)
        await sink.wait_quality("edge1/uptime", Quality.BAD)
        assert sink.latest["pump1/flow"].reason == "sparkplug death (node plant/edge1)"


async def test_a_stale_ndeath_is_ignored_and_counted(broker: Mosquitto) -> None:
    dev = sparkplug_device(broker.port)
    async with running(dev) as (driver, sink), SparkplugNode(broker.host, broker.port, bd_seq=5) as node:  # type: ignore[arg-type]
        await _good(sink, ["pump1/flow"])
        await node.node_death(bd_seq=4)
        await node.publish_data(1.0)
        await sink.wait_for(lambda c: len(c.of("pump1/flow")) == 2)
        health = driver.health()
        flows = sink.of("pump1/flow")
    assert all(r.good for r in flows)
    assert health.errors["sparkplug_stale_death"] == 1


async def test_the_will_ndeath_of_a_vanished_node_marks_its_points_bad(broker: Mosquitto) -> None:
    dev = sparkplug_device(broker.port)
    async with running(dev) as (_, sink):
        node = SparkplugNode(broker.host, broker.port)
        await node.__aenter__()
        await _good(sink, ["pump1/flow"])
        sock = node.client._client.socket()  # the node's TCP connection dies without a DISCONNECT
        assert sock is not None
        sock.close()
        r = await sink.wait_quality("pump1/flow", Quality.BAD, within=15)
        node._client = None  # its connection is gone; only the command task remains to stop
        await node.__aexit__(None, None, None)
    assert r.reason == "sparkplug death (node plant/edge1)"


async def test_a_driver_that_missed_the_birth_asks_for_one(broker: Mosquitto) -> None:
    async with SparkplugNode(broker.host, broker.port) as node:
        dev = sparkplug_device(broker.port)
        async with running(dev) as (driver, sink):
            await node.publish_data(1.0)
            await _good(sink, ["pump1/flow"])
            health = driver.health()
    assert node.rebirths == 1
    assert health.errors["sparkplug_no_birth"] >= 1


async def test_writes_send_a_dcmd_that_the_node_applies(broker: Mosquitto) -> None:
    dev = sparkplug_device(broker.port)
    async with running(dev) as (driver, sink), SparkplugNode(broker.host, broker.port) as node:  # type: ignore[arg-type]
        await _good(sink, ["pump1/setpoint"])
        await driver.write("pump1/setpoint", 1200.0)
        await sink.wait_value("pump1/setpoint", 1200.0)
    assert node.plants["pump1"].speed_setpoint == 1200.0
    assert node.commands[-1] == ("spBv1.0/plant/DCMD/edge1/pump1", {"speed_setpoint": 1200.0})


async def test_malformed_sparkplug_payloads_are_survived_and_counted(broker: Mosquitto) -> None:
    dev = sparkplug_device(broker.port)
    async with running(dev) as (driver, sink), SparkplugNode(broker.host, broker.port) as node:  # type: ignore[arg-type]
        await _good(sink, ["pump1/flow"])
        topic = "spBv1.0/plant/DDATA/edge1/pump1"
        await mosquitto_pub(broker, topic, b"\x12\x05\x0a\x01")  # truncated
        await mosquitto_pub(broker, topic, b'{"v": 1}')  # JSON, not protobuf
        await mosquitto_pub(broker, topic, b"\x0b\x0c")  # a group wire type
        await mosquitto_pub(broker, topic, b"\x08" * (300 * 1024))  # beyond max_payload (256 KiB)
        wrong = encode_payload(
            timestamp=1, seq=node.seq + 1, metrics=[encode_metric(name="flow", datatype=DataType.STRING, value="x")]
        )
        node.skip_seq(1)
        await mosquitto_pub(broker, topic, wrong)
        await mosquitto_pub(broker, "spBv1.0/STATE/host1", b"ONLINE")  # a host's state: not data
        bad = await sink.wait_quality("pump1/flow", Quality.BAD)
        await node.publish_data(1.0)
        await sink.wait_quality("pump1/flow", Quality.GOOD)
        health = driver.health()
    assert health.errors["truncated"] == 1
    assert health.errors["invalid_protobuf"] == 2
    assert health.errors["oversize"] == 1
    assert health.errors["wrong_type"] == 1
    assert health.connected
    assert "expected a number" in bad.reason
