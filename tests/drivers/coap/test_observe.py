"""Client mode against the hil CoAP node (a real aiocoap server on loopback): observe, loss and
re-registration, polling, writes."""

from __future__ import annotations

import asyncio

import pytest

from avila_edge.core import DeviceRejected, LinkDown, Quality
from hil.coap_nodes import SENML_CBOR, CoapNode

from .conftest import WITHIN, client_device, point, running


async def test_observed_plain_text_resources_arrive_change_and_are_good(node: CoapNode) -> None:
    dev = client_device(
        node.port, [point("pump1/temperature", path="/temp"), point("pump1/vibration", path="vibration")]
    )
    async with running(dev) as (driver, sink):
        await sink.wait_for(lambda c: len({r.value for r in c.of("pump1/temperature")}) >= 3)
        await sink.wait_for(lambda c: len(c.of("pump1/vibration")) >= 3)
    temps = sink.of("pump1/temperature")
    assert all(r.quality is Quality.GOOD for r in temps + sink.of("pump1/vibration"))
    assert 30.0 < float(temps[-1].value or 0) < 80.0
    assert node.registrations == {"/temp": 1, "/vibration": 1}
    assert driver.health().connected is False  # stopped
    assert driver.health().errors == {}


async def test_a_senml_resource_fills_points_by_record_name_with_the_source_time(node: CoapNode) -> None:
    dev = client_device(
        node.port,
        [
            point("pump1/flow", path="/senml", name="urn:dev:pump1:flow"),
            point("pump1/running", "bool", path="/senml", name="urn:dev:pump1:running"),
            point("pump1/speed", path="/senml", name="urn:dev:pump1:speed", scale=0.5),
        ],
    )
    async with running(dev) as (_, sink):
        await sink.wait_for(lambda c: {"pump1/flow", "pump1/running", "pump1/speed"} <= set(c.latest))
    flow = sink.latest["pump1/flow"]
    assert flow.good
    assert 100.0 < float(flow.value or 0) < 140.0
    assert sink.latest["pump1/running"].value is True
    assert sink.latest["pump1/speed"].value == pytest.approx(750.0)
    assert flow.ts_source != flow.ts_gateway  # the pack's bt, not the receive time
    assert abs(flow.ts_source - flow.ts_gateway) < 5 * 10**9
    assert node.registrations == {"/senml": 1}  # one observation for the three points


async def test_a_senml_cbor_resource_is_read_by_its_content_format() -> None:
    async with CoapNode(interval=0.05, senml_format=SENML_CBOR) as cbor_node:
        dev = client_device(cbor_node.port, [point("pump1/pressure", path="/senml", name="urn:dev:pump1:pressure")])
        async with running(dev) as (driver, sink):
            await sink.wait_for(lambda c: len(c.of("pump1/pressure")) >= 2)
    assert all(r.good and 3.0 < float(r.value or 0) < 5.0 for r in sink.of("pump1/pressure"))
    assert driver.health().errors == {}


async def test_a_node_restart_marks_points_bad_then_reregisters_once_without_duplicate_notifications(
    node: CoapNode,
) -> None:
    dev = client_device(node.port, [point("pump1/temperature", path="/temp")], max_silence=0.3)
    restarts = 3
    async with running(dev) as (driver, sink):
        await sink.wait_for(lambda c: len(c.of("pump1/temperature")) >= 2)
        for i in range(restarts):
            await node.restart(down_for=0.1)
            bad = await sink.wait_quality("pump1/temperature", Quality.BAD)
            assert "no notification for 0.3 s" in bad.reason
            assert bad.value is not None  # the last value is kept
            await sink.wait_quality("pump1/temperature", Quality.GOOD)
            assert node.registrations["/temp"] == i + 2
        # settled: one observer, and as many readings as the node sent notifications
        await asyncio.sleep(0.1)
        sent_before, got_before = node.notifications["/temp"], len(sink.of("pump1/temperature"))
        await asyncio.sleep(0.6)
        sent, got = node.notifications["/temp"] - sent_before, len(sink.of("pump1/temperature")) - got_before
    assert node.registrations["/temp"] == restarts + 1
    assert node.observers.get("/temp", 0) <= 1
    assert sent >= 8
    assert abs(got - sent) <= 1
    errors = driver.health().errors
    assert errors["timeout"] == restarts
    assert set(errors) <= {"timeout", "link_down"}  # link_down: a retry while the node was still down


async def test_an_unreachable_node_makes_points_bad_with_a_reason_and_recovery_makes_them_good(node: CoapNode) -> None:
    await node.stop()
    dev = client_device(node.port, [point("pump1/temperature", path="/temp")])
    async with running(dev, connected=False) as (driver, sink):
        bad = await sink.wait_quality("pump1/temperature", Quality.BAD)
        assert bad.reason.startswith(f"observe coap://127.0.0.1:{node.port}/temp: ")
        assert "unreachable" in bad.reason
        assert bad.value is None
        assert not driver.health().connected
        await node.start()
        await sink.wait_quality("pump1/temperature", Quality.GOOD)
        assert driver.health().connected
    bad_readings = [r for r in sink.of("pump1/temperature") if not r.good]
    assert len({r.reason for r in bad_readings}) == len(bad_readings)  # a repeated reason is not repeated
    assert driver.health().errors["link_down"] >= 1


async def test_an_error_answer_marks_the_points_bad_with_the_code(node: CoapNode) -> None:
    dev = client_device(node.port, [point("pump1/x", path="/missing"), point("pump1/temperature", path="/temp")])
    async with running(dev, connected=False) as (driver, sink):
        bad = await sink.wait_quality("pump1/x", Quality.BAD)
        await sink.wait_quality("pump1/temperature", Quality.GOOD)
    assert "the node answered 4.04 Not Found" in bad.reason
    assert driver.health().errors["device_rejected"] >= 1


async def test_a_resource_that_is_not_observable_is_polled_and_json_paths_pick_values(node: CoapNode) -> None:
    dev = client_device(
        node.port,
        [
            point("pump1/flow", path="/status", value_path="$.flow", observe=False),
            point("pump1/running", "bool", path="/status", value_path="$.running", observe=False),
        ],
    )
    async with running(dev) as (_, sink):
        await sink.wait_for(lambda c: len(c.of("pump1/flow")) >= 3)
    assert sink.latest["pump1/running"].value is True
    assert node.registrations == {}

    # observe asked for, but the node answers without Observe: the driver polls instead
    fallback = client_device(node.port, [point("pump1/speed", path="/status", value_path="$.speed")])
    async with running(fallback) as (driver, sink):
        await sink.wait_for(lambda c: len(c.of("pump1/speed")) >= 3)
    assert driver.health().errors == {"not_observable": 1}
    assert sink.latest["pump1/speed"].good


async def test_a_malformed_notification_is_counted_and_marks_only_its_point_bad(node: CoapNode) -> None:
    dev = client_device(
        node.port,
        [point("pump1/temperature", "string", path="/temp"), point("pump1/vibration", path="/vibration")],
    )
    async with running(dev) as (driver, sink):
        bad = await sink.wait_quality("pump1/temperature", Quality.BAD)
        await sink.wait_for(lambda c: len(c.of("pump1/vibration")) >= 2)
    assert "malformed payload from coap://" in bad.reason
    assert "expected text" in bad.reason
    assert driver.health().errors["wrong_type"] >= 1
    assert all(r.good for r in sink.of("pump1/vibration"))


async def test_a_write_puts_the_value_to_the_node_and_the_observed_point_follows(node: CoapNode) -> None:
    dev = client_device(
        node.port,
        [point("pump1/setpoint", path="/setpoint", writable=True, scale=2.0), point("pump1/temperature", path="/temp")],
    )
    async with running(dev) as (driver, sink):
        await sink.wait_value("pump1/setpoint", 3000.0)  # 1500 rpm raw, scale 2
        await driver.write("pump1/setpoint", 2400.0)
        await sink.wait_value("pump1/setpoint", 2400.0)
        with pytest.raises(DeviceRejected, match="not writable"):
            await driver.write("pump1/temperature", 1.0)
    assert node.writes == [1200.0]


async def test_a_write_to_a_stopped_node_raises_link_down_naming_the_point_and_resource(node: CoapNode) -> None:
    dev = client_device(node.port, [point("pump1/setpoint", path="/setpoint", writable=True)])
    async with running(dev) as (driver, _):
        await node.stop()
        with pytest.raises(LinkDown, match=r"write pump1/setpoint: PUT coap://127\.0\.0\.1:\d+/setpoint"):
            async with asyncio.timeout(WITHIN):
                await driver.write("pump1/setpoint", 1000.0)
