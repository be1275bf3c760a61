"""The MQTT driver against a real Mosquitto (hil/mosquitto.py), with Debian's mosquitto_pub and
mosquitto_sub as independent peers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Sequence

import msgspec
import pytest

from avila_edge.core import DeviceRejected, LinkDown, Quality, SystemClock
from drivers.mqtt.config import Subscription, TlsFiles
from drivers.mqtt.driver import MqttDriver
from drivers.mqtt.transport import Inbound
from hil.mosquitto import Mosquitto
from hil.mqtt_sensors import SensorFleet

from .conftest import Collector, device, mosquitto_pub, point, running, wait_connected

JSON_SUB = Subscription(filter="plant/+/+", template="plant/{asset}/{point}", value_path="$.v", timestamp_path="$.ts")


async def test_json_messages_through_a_template_become_good_readings_with_source_time(broker: Mosquitto) -> None:
    dev = device(
        broker.port, [point("pump1/flow"), point("pump2/flow", scale=2.0, offset=1.0)], subscriptions=[JSON_SUB]
    )
    async with running(dev) as (driver, sink):
        await mosquitto_pub(broker, "plant/pump1/flow", b'{"v": 12.5, "ts": 1700000000123}')
        await mosquitto_pub(broker, "plant/pump2/flow", b'{"v": 10, "ts": "2023-11-14T22:13:20Z"}')
        one = await sink.wait_value("pump1/flow", 12.5)
        two = await sink.wait_value("pump2/flow", 21.0)
    assert one.ts_source == 1_700_000_000_123_000_000
    assert two.ts_source == 1_700_000_000_000_000_000
    assert one.ts_gateway > one.ts_source
    assert driver.health().requests == 2


async def test_plain_numbers_and_several_values_of_one_json_topic_fill_their_points(broker: Mosquitto) -> None:
    dev = device(
        broker.port,
        [
            point("tank1/level", topic="plant-raw/tank1/level_mm", format="number", scale=0.001),
            point("pump1/running", "bool", topic="plant-raw/pump1/running", format="number"),
            point("pump1/rpm", "uint16", topic="plant/pump1/status", value_path="$.speed.rpm"),
            point("pump1/mode", "string", topic="plant/pump1/status", value_path="$['mode name']"),
        ],
    )
    async with running(dev) as (_, sink):
        await mosquitto_pub(broker, "plant-raw/tank1/level_mm", b"2500")
        await mosquitto_pub(broker, "plant-raw/pump1/running", b"ON")
        await mosquitto_pub(broker, "plant/pump1/status", b'{"speed": {"rpm": 1480}, "mode name": "auto"}')
        level = await sink.wait_value("tank1/level", 2.5)
        await sink.wait_value("pump1/running", True)
        await sink.wait_value("pump1/rpm", 1480)
        await sink.wait_value("pump1/mode", "auto")
    assert level.ts_source == level.ts_gateway  # no timestamp path: the receive time


async def test_multi_level_wildcard_subscription_maps_deeper_topics(broker: Mosquitto) -> None:
    sub = Subscription(filter="site/#", template="site/+/{asset}/{point}", format="number")
    dev = device(broker.port, [point("pump1/flow"), point("pump2/flow")], subscriptions=[sub])
    async with running(dev) as (_, sink):
        await mosquitto_pub(broker, "site/hall3/pump1/flow", b"1.5")
        await mosquitto_pub(broker, "site/hall4/pump2/flow", b"2.5")
        await sink.wait_value("pump1/flow", 1.5)
        await sink.wait_value("pump2/flow", 2.5)


async def test_messages_for_unconfigured_points_are_counted_and_dropped(broker: Mosquitto) -> None:
    dev = device(broker.port, [point("pump1/flow")], subscriptions=[JSON_SUB])
    async with running(dev) as (driver, sink):
        await mosquitto_pub(broker, "plant/pump9/flow", b'{"v": 1}')
        await mosquitto_pub(broker, "plant/pump1/unknown", b'{"v": 2}')
        await mosquitto_pub(broker, "plant/pump1/flow", b'{"v": 3}')
        await sink.wait_value("pump1/flow", 3)
    assert driver.health().errors == {"unknown_point": 2}
    assert set(sink.latest) == {"pump1/flow"}


@pytest.mark.parametrize("qos", [0, 1, 2])
async def test_every_qos_level_is_delivered(broker: Mosquitto, qos: int) -> None:
    dev = device(broker.port, [point("pump1/flow", topic="plant/pump1/flow", format="number", qos=qos)])
    async with running(dev) as (_, sink):
        for i in range(5):
            await mosquitto_pub(broker, "plant/pump1/flow", str(i).encode(), qos=qos)
        await sink.wait_value("pump1/flow", 4)
    assert [r.value for r in sink.of("pump1/flow")] == [0, 1, 2, 3, 4]
    # subscribed at that QoS, QoS 2 as QoS 1 (paho would release a QoS 2 message before its commit)
    assert f"avila-edge-broker1 {min(qos, 1)} plant/pump1/flow" in broker.log_text()


async def test_a_retained_message_is_received_on_subscribe(broker: Mosquitto) -> None:
    await mosquitto_pub(broker, "plant/pump1/flow", b'{"v": 7.5}', qos=1, retain=True)
    dev = device(broker.port, [point("pump1/flow")], subscriptions=[JSON_SUB])
    async with running(dev) as (_, sink):
        await sink.wait_value("pump1/flow", 7.5)


MALFORMED = [
    (b"\xff\xfe\x00", "invalid_utf8"),
    (b'{"v": 1', "invalid_json"),
    (b"", "invalid_json"),
    (b"[1, 2, 3]", "missing_value"),
    (b'{"x": 1}', "missing_value"),
    (b'{"v": "fast"}', "wrong_type"),
    (b'{"v": {"nested": 1}}', "wrong_type"),
    (b'{"v": true}', "wrong_type"),
    (b'{"v": 1e999}', "invalid_json"),
    (b'{"v": ' + b"1" * 5000 + b"}", "oversize"),
]


async def test_a_corpus_of_malformed_payloads_is_survived_counted_by_kind_and_marks_the_point_bad(
    broker: Mosquitto, caplog: pytest.LogCaptureFixture
) -> None:
    dev = device(broker.port, [point("pump1/flow")], subscriptions=[JSON_SUB], max_payload=4096)
    caplog.set_level(logging.WARNING, logger="drivers.mqtt")
    async with running(dev) as (driver, sink):
        for payload, _ in MALFORMED:
            await mosquitto_pub(broker, "plant/pump1/flow", payload)
        await sink.wait_for(lambda c: len(c.of("pump1/flow")) == len(MALFORMED))
        bad = sink.of("pump1/flow")
        await mosquitto_pub(broker, "plant/pump1/flow", b'{"v": 4.25}')
        await sink.wait_value("pump1/flow", 4.25)
        health = driver.health()
    assert all(r.quality is Quality.BAD and "malformed payload on plant/pump1/flow" in r.reason for r in bad)
    expected: dict[str, int] = {}
    for _, kind in MALFORMED:
        expected[kind] = expected.get(kind, 0) + 1
    assert health.errors == expected
    assert health.connected
    assert "invalid json on plant/pump1/flow" in caplog.text
    assert "payload b'{\"v\": 1'" in caplog.text
    assert "(5007 bytes)" in caplog.text  # an excerpt, not the whole oversize payload


async def test_a_bad_source_timestamp_keeps_the_value_as_uncertain(broker: Mosquitto) -> None:
    dev = device(broker.port, [point("pump1/flow")], subscriptions=[JSON_SUB])
    async with running(dev) as (driver, sink):
        await mosquitto_pub(broker, "plant/pump1/flow", b'{"v": 3.5, "ts": "soon"}')
        r = await sink.wait_quality("pump1/flow", Quality.UNCERTAIN)
    assert r.value == 3.5
    assert r.reason.startswith("source timestamp unreadable")
    assert driver.health().errors == {"bad_timestamp": 1}


async def test_broker_restart_marks_points_bad_then_good_without_duplicate_subscriptions(broker: Mosquitto) -> None:
    dev = device(broker.port, [point("pump1/flow")], subscriptions=[JSON_SUB])
    async with running(dev) as (driver, sink):
        await mosquitto_pub(broker, "plant/pump1/flow", b'{"v": 1}')
        await sink.wait_value("pump1/flow", 1)
        for n in range(2):
            await broker.astop()
            down = await sink.wait_quality("pump1/flow", Quality.BAD, within=float(dev.timing.timeout) + 5)
            assert down.reason.startswith("link down:")
            assert down.value == n + 1  # the last value is kept
            await broker.astart()
            await wait_connected(driver)
            await mosquitto_pub(broker, "plant/pump1/flow", f'{{"v": {n + 2}}}'.encode())
            await sink.wait_value("pump1/flow", n + 2)
        await asyncio.sleep(0.3)  # a duplicate delivery would arrive by now
        health = driver.health()
    good = [r.value for r in sink.of("pump1/flow") if r.quality is Quality.GOOD]
    assert good == [1, 2, 3]
    assert health.errors.get("link_down", 0) >= 2
    lives = broker.log_text().split(" starting\n")[1:]  # the log file goes on across restarts
    assert [life.count("avila-edge-broker1 1 plant/+/+") for life in lives] == [1, 1, 1]


async def test_an_absent_broker_marks_points_bad_within_the_timeout_and_a_later_one_is_used(tmp_path: object) -> None:
    broker = Mosquitto()
    try:
        dev = device(broker.port, [point("pump1/flow")], subscriptions=[JSON_SUB], timeout=1.0)
        async with running(dev, connected=False) as (driver, sink):
            r = await sink.wait_quality("pump1/flow", Quality.BAD, within=3.0)
            assert r.reason.startswith("link down:")
            assert "refused" in r.reason.lower()
            assert not driver.health().connected
            await broker.astart()
            await wait_connected(driver)
            await mosquitto_pub(broker, "plant/pump1/flow", b'{"v": 5}')
            await sink.wait_value("pump1/flow", 5)
    finally:
        await asyncio.to_thread(broker.close)


async def test_a_frozen_broker_is_detected_by_keepalive(broker: Mosquitto) -> None:
    dev = device(broker.port, [point("pump1/flow")], subscriptions=[JSON_SUB], keepalive=1, timeout=1.0)
    async with running(dev) as (_, sink):
        await mosquitto_pub(broker, "plant/pump1/flow", b'{"v": 1}')
        await sink.wait_value("pump1/flow", 1)
        broker.pause()
        try:
            r = await sink.wait_quality("pump1/flow", Quality.BAD, within=10.0)
        finally:
            broker.resume()
    assert r.reason.startswith("link down:")


@pytest.mark.parametrize("protocol", [5, "3.1.1"])
async def test_a_persistent_session_receives_qos1_messages_published_while_the_driver_was_away(
    broker: Mosquitto, protocol: int | str
) -> None:
    sub = Subscription(filter="plant/+/+", template="plant/{asset}/{point}", format="number", qos=1)
    dev = device(broker.port, [point("pump1/flow")], subscriptions=[sub], persistent_session=True, protocol=protocol)
    async with running(dev) as (_, sink):
        await mosquitto_pub(broker, "plant/pump1/flow", b"1", qos=1)
        await sink.wait_value("pump1/flow", 1)
    for value in (2, 3, 4):  # the driver is disconnected now
        await mosquitto_pub(broker, "plant/pump1/flow", str(value).encode(), qos=1)
    async with running(dev) as (_, sink):
        await sink.wait_value("pump1/flow", 4)
    assert [r.value for r in sink.of("pump1/flow")] == [2, 3, 4]


async def test_a_clean_session_does_not_receive_what_was_published_while_away(broker: Mosquitto) -> None:
    sub = Subscription(filter="plant/+/+", template="plant/{asset}/{point}", format="number", qos=1)
    dev = device(broker.port, [point("pump1/flow")], subscriptions=[sub])
    async with running(dev) as (_, sink):
        await mosquitto_pub(broker, "plant/pump1/flow", b"1", qos=1)
        await sink.wait_value("pump1/flow", 1)
    await mosquitto_pub(broker, "plant/pump1/flow", b"2", qos=1)
    async with running(dev) as (_, sink):
        await mosquitto_pub(broker, "plant/pump1/flow", b"3", qos=1)
        await sink.wait_value("pump1/flow", 3)
    assert [r.value for r in sink.of("pump1/flow")] == [3]


async def test_tls_with_a_client_certificate_connects_and_receives() -> None:
    async with Mosquitto(tls=True) as broker:
        files = broker.tls_files
        assert files is not None
        assert broker.tls_port is not None
        tls = TlsFiles(ca_file=str(files.ca_file), cert_file=str(files.client_cert), key_file=str(files.client_key))
        dev = device(broker.tls_port, [point("pump1/flow")], subscriptions=[JSON_SUB], tls=tls)
        async with running(dev) as (_, sink):
            await mosquitto_pub(broker, "plant/pump1/flow", b'{"v": 9}')  # plain listener, same broker
            await sink.wait_value("pump1/flow", 9)


async def test_tls_without_a_client_certificate_is_refused_and_reported_bad() -> None:
    async with Mosquitto(tls=True) as broker:
        files = broker.tls_files
        assert files is not None
        assert broker.tls_port is not None
        dev = device(
            broker.tls_port, [point("pump1/flow")], subscriptions=[JSON_SUB], tls=TlsFiles(ca_file=str(files.ca_file))
        )
        async with running(dev, connected=False) as (driver, sink):
            r = await sink.wait_quality("pump1/flow", Quality.BAD)
            assert not driver.health().connected
    assert r.reason.startswith("link down: no CONNACK within 2 s"), r.reason


async def test_a_login_with_a_password_file_works_and_a_wrong_one_is_reported_without_the_secret(
    tmp_path: object, caplog: pytest.LogCaptureFixture
) -> None:
    from pathlib import Path

    folder = Path(str(tmp_path))
    good, wrong = folder / "good", folder / "wrong"
    good.write_text("s3cret-Pa55\n")
    wrong.write_text("not-the-Pa55\n")
    caplog.set_level(logging.DEBUG)
    async with Mosquitto(users={"gateway": "s3cret-Pa55"}, allow_anonymous=False) as broker:
        ok = device(
            broker.port, [point("pump1/flow")], subscriptions=[JSON_SUB], username="gateway", password_file=str(good)
        )
        async with running(ok) as (_, sink):
            assert sink.all == []  # running() returned: logged in and subscribed
        bad = device(
            broker.port, [point("pump1/flow")], subscriptions=[JSON_SUB], username="gateway", password_file=str(wrong)
        )
        async with running(bad, connected=False) as (driver, sink):
            r = await sink.wait_quality("pump1/flow", Quality.BAD)
            health = driver.health()
    assert r.reason.startswith("broker refused:")
    assert "device_rejected" in health.errors
    assert "s3cret-Pa55" not in caplog.text
    assert "not-the-Pa55" not in caplog.text


async def test_an_unreadable_password_file_is_reported_as_the_reason(tmp_path: object) -> None:
    async with Mosquitto() as broker:
        dev = device(
            broker.port, [point("pump1/flow")], subscriptions=[JSON_SUB], username="u", password_file="/nonexistent/pw"
        )
        async with running(dev, connected=False) as (_, sink):
            r = await sink.wait_quality("pump1/flow", Quality.BAD)
    assert "cannot read password_file /nonexistent/pw" in r.reason


async def test_writes_publish_the_command_payload(broker: Mosquitto) -> None:
    dev = device(
        broker.port,
        [
            point(
                "pump1/speed",
                topic="plant/pump1/status",
                value_path="$.sp",
                command_topic="plant/pump1/set",
                writable=True,
                scale=10.0,
            ),
            point(
                "pump1/run",
                "bool",
                topic="plant-raw/pump1/run",
                format="number",
                command_topic="plant-raw/pump1/run/set",
                writable=True,
            ),
            point("pump1/flow", topic="plant/pump1/flow"),
        ],
    )
    sub = await asyncio.create_subprocess_exec(
        "mosquitto_sub",
        "-h",
        broker.host,
        "-p",
        str(broker.port),
        "-t",
        "plant/pump1/set",
        "-t",
        "plant-raw/pump1/run/set",
        "-C",
        "2",
        "-v",
        "-q",
        "1",
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        async with running(dev) as (driver, _):
            await asyncio.sleep(0.3)  # let mosquitto_sub subscribe
            await driver.write("pump1/speed", 1500.0)
            await driver.write("pump1/run", False)
            with pytest.raises(DeviceRejected, match="not writable"):
                await driver.write("pump1/flow", 1.0)
            with pytest.raises(DeviceRejected, match="no such point"):
                await driver.write("pump9/flow", 1.0)
            async with asyncio.timeout(10):
                out, _ = await sub.communicate()
    finally:
        if sub.returncode is None:
            sub.kill()
            await sub.wait()
    lines = out.decode().splitlines()
    assert msgspec.json.decode(lines[0].split(" ", 1)[1]) == {"sp": 150.0}
    assert lines[1] == "plant-raw/pump1/run/set false"


async def test_a_write_without_a_broker_raises_link_down() -> None:
    broker = Mosquitto()
    try:
        dev = device(broker.port, [point("pump1/sp", topic="a/b", command_topic="a/b/set", writable=True)])
        async with MqttDriver(dev, clock=SystemClock()) as driver:
            with pytest.raises(LinkDown, match="not connected"):
                await driver.write("pump1/sp", 1.0)
    finally:
        broker.close()


async def test_the_hil_sensor_fleet_feeds_every_plant_value_in_both_formats(broker: Mosquitto) -> None:
    values = ("flow", "pressure", "motor_temperature", "vibration", "current", "speed", "power")
    points = [point(f"pump{i}/{v}") for i in (1, 2) for v in values]
    points += [point(f"pump1/{v}_raw", topic=f"plant-raw/pump1/{v}", format="number") for v in values]
    dev = device(broker.port, points, subscriptions=[JSON_SUB])
    async with (
        running(dev) as (driver, sink),
        SensorFleet(broker.host, broker.port, assets=["pump1", "pump2"]) as fleet,
    ):
        await fleet.publish_once(1.0)
        await sink.wait_for(lambda c: len(c.latest) == len(points))
        health = driver.health()
    assert all(r.quality is Quality.GOOD for r in sink.latest.values())
    assert sink.latest["pump1/flow"].value == sink.latest["pump1/flow_raw"].value
    assert 50 < float(sink.latest["pump1/flow"].value or 0) < 200
    assert health.errors == {}  # pump2's plain-number topics are not even subscribed


def test_importing_the_plugin_does_not_import_the_mqtt_library() -> None:
    import subprocess
    import sys

    code = "import sys, drivers.mqtt; assert 'aiomqtt' not in sys.modules and 'paho' not in sys.modules, sorted(sys.modules)"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_plugin_is_registered_under_the_entry_point() -> None:
    from avila_edge.driver import load_plugins
    from drivers.mqtt import plugin

    assert load_plugins()["mqtt"] is plugin


class _RefusingBroker:
    """Stands in for a broker that refuses one subscription (Mosquitto 2.0 grants every filter and
    applies its ACL at delivery, so it cannot show this answer)."""

    endpoint = "mqtt://refusing-broker"

    def __init__(self, refuse: str) -> None:
        self.refuse = refuse
        self.subscribed: list[tuple[str, int]] = []

    @contextlib.asynccontextmanager
    async def connect(self) -> AsyncIterator[_RefusingBroker]:
        yield self

    async def subscribe(self, filters: Sequence[tuple[str, int]]) -> list[tuple[str, str]]:
        self.subscribed.extend(filters)
        return [(f, "Not authorized") for f, _ in filters if f == self.refuse]

    async def receive(self) -> list[Inbound]:
        await asyncio.Event().wait()
        return []

    async def publish(self, topic: str, payload: bytes, qos: int) -> None:
        raise AssertionError("nothing is published")

    def ack(self, batch: Sequence[Inbound]) -> None:
        raise AssertionError("nothing is received")

    def take_dropped(self) -> int:
        return 0


async def test_a_refused_subscription_marks_only_its_points_bad() -> None:
    secret = Subscription(filter="secret/+/+", format="number")
    dev = device(
        1883,
        [point("pump1/flow"), point("pump1/code", topic="secret/pump1/code", format="number")],
        subscriptions=[JSON_SUB, secret],
    )
    fake = _RefusingBroker("secret/+/+")
    sink = Collector()
    async with MqttDriver(dev, clock=SystemClock(), transport=lambda _: fake) as driver, asyncio.TaskGroup() as tg:
        task = tg.create_task(driver.run(sink), name="driver[mqtt:broker1].run")
        refused = await sink.wait_quality("pump1/code", Quality.BAD)
        health = driver.health()
        task.cancel()
    assert refused.reason == "subscription secret/+/+ refused: Not authorized"
    assert "pump1/flow" not in sink.latest
    assert health.errors == {"device_rejected": 1}
    assert health.connected
    assert fake.subscribed == [("plant/+/+", 1), ("secret/+/+", 1)]


async def test_a_broker_that_accepts_tcp_but_never_answers_is_reported_and_leaks_no_socket(broker: Mosquitto) -> None:
    import gc
    import os

    dev = device(broker.port, [point("pump1/flow")], subscriptions=[JSON_SUB], timeout=0.3)
    broker.pause()
    fds_before = len(os.listdir("/proc/self/fd"))
    try:
        async with running(dev, connected=False) as (driver, sink):
            r = await sink.wait_quality("pump1/flow", Quality.BAD, within=10)
            async with asyncio.timeout(10):
                while driver.health().errors.get("link_down", 0) < 4:
                    await asyncio.sleep(0.05)
    finally:
        broker.resume()
    await asyncio.sleep(0.2)
    gc.collect()
    assert len(os.listdir("/proc/self/fd")) == fds_before  # every half-open connection was closed
    assert r.reason == "link down: no CONNACK within 0.3 s"
