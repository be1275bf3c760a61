"""The OPC UA driver against the real in-process asyncua server of hil/opcua_server.py."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from avila_edge.core import DeviceRejected, LinkDown, Quality
from hil.opcua_server import NAMESPACE_URI, OpcUaPlant

from .conftest import device, point, running

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def plant() -> AsyncIterator[OpcUaPlant]:
    async with OpcUaPlant(assets=("pump1", "pump2"), policies=("NoSecurity",), tick=None) as server:
        yield server


@pytest_asyncio.fixture(loop_scope="module")
async def server(plant: OpcUaPlant) -> AsyncIterator[OpcUaPlant]:
    await plant.clear_status()
    yield plant
    await plant.clear_status()


async def test_values_of_each_variant_type_become_readings_of_the_points_type(server: OpcUaPlant) -> None:
    n = server.node_id
    dev = device(
        server.endpoint,
        [
            point("pump1/flow", n("pump1", "flow")),
            point("pump1/flow_x2", n("pump1", "flow"), scale=2.0, offset=1.0),
            point("pump1/power", n("pump1", "power"), "float32"),
            point("pump1/energy", n("pump1", "energy"), "int64"),
            point("pump1/running", n("pump1", "running"), "bool"),
            point("pump1/status", n("pump1", "status_word"), "uint16"),
            point("pump1/name", n("pump1", "name"), "string"),
            point("pump2/name", f"nsu={NAMESPACE_URI};s=pump2.name", "string"),
            point("gateway/server_state", "i=2259", "int32"),
        ],
    )
    await server.write_value("pump1", "flow", 12.5)
    await server.write_value("pump1", "energy", 2**40)
    async with running(dev) as (_, sink):
        flow = await sink.wait_value("pump1/flow", 12.5)
        await sink.wait_value("pump1/flow_x2", 26.0)
        await sink.wait_value("pump1/energy", 2**40)
        await sink.wait_value("pump1/running", True)
        await sink.wait_value("pump1/status", 1)
        await sink.wait_value("pump1/name", "PUMP PUMP1")
        await sink.wait_value("pump2/name", "PUMP PUMP2")
        await sink.wait_value("gateway/server_state", 0)  # ServerState.Running, a standard node by number
        power = await sink.wait_quality("pump1/power", Quality.GOOD)
    assert isinstance(power.value, float)
    assert isinstance(sink.latest["pump1/energy"].value, int)
    assert sink.latest["pump1/running"].value is True
    assert flow.ts_gateway >= flow.ts_source


async def test_the_source_timestamp_is_used_then_the_server_timestamp(server: OpcUaPlant) -> None:
    dev = device(server.endpoint, [point("pump1/pressure", server.node_id("pump1", "pressure"))])
    source = dt.datetime(2024, 5, 1, 12, 0, 0, 250_000, tzinfo=dt.UTC)
    served = dt.datetime(2024, 5, 1, 12, 0, 1, tzinfo=dt.UTC)
    async with running(dev) as (_, sink):
        await server.write_value("pump1", "pressure", 3.25, source_timestamp=source, server_timestamp=served)
        first = await sink.wait_value("pump1/pressure", 3.25)
        await server.write_value("pump1", "pressure", 3.5, source_timestamp=None, server_timestamp=served)
        second = await sink.wait_value("pump1/pressure", 3.5)
    assert first.ts_source == int(source.timestamp()) * 10**9 + 250_000_000
    assert second.ts_source == int(served.timestamp()) * 10**9


async def test_status_codes_map_to_quality_with_the_status_name_as_reason(server: OpcUaPlant) -> None:
    dev = device(server.endpoint, [point("pump1/vibration", server.node_id("pump1", "vibration"))])
    async with running(dev) as (_, sink):
        await server.write_value("pump1", "vibration", 2.5)
        await sink.wait_value("pump1/vibration", 2.5)
        await server.set_status("pump1", "vibration", "BadSensorFailure")
        bad = await sink.wait_quality("pump1/vibration", Quality.BAD)
        await server.write_value("pump1", "vibration", 2.75, status="UncertainLastUsableValue")
        uncertain = await sink.wait_quality("pump1/vibration", Quality.UNCERTAIN)
        await server.write_value("pump1", "vibration", 3.0)
        good = await sink.wait_value("pump1/vibration", 3.0)
    assert (bad.reason, bad.value) == ("BadSensorFailure", 2.5)  # Bad keeps the last good value
    assert (uncertain.reason, uncertain.value) == ("UncertainLastUsableValue", 2.75)
    assert good.reason == ""


async def test_values_that_do_not_fit_the_point_are_bad_and_counted_without_stopping(server: OpcUaPlant) -> None:
    n = server.node_id
    dev = device(
        server.endpoint,
        [
            point("pump1/name_as_number", n("pump1", "name"), "float64"),
            point("pump1/energy_int16", n("pump1", "energy"), "int16"),
            point("pump1/current", n("pump1", "current")),
            point("pump1/speed", n("pump1", "speed")),
        ],
    )
    await server.write_value("pump1", "energy", 70_000)
    async with running(dev) as (driver, sink):
        as_number = await sink.wait_quality("pump1/name_as_number", Quality.BAD)
        too_big = await sink.wait_quality("pump1/energy_int16", Quality.BAD)
        await server.write_value("pump1", "current", [1.0, 2.0])  # an array where a scalar is expected
        array = await sink.wait_quality("pump1/current", Quality.BAD)
        await server.write_value("pump1", "speed", float("nan"))
        nan = await sink.wait_quality("pump1/speed", Quality.BAD)
        await server.write_value("pump1", "speed", 1500.0)
        await sink.wait_value("pump1/speed", 1500.0)  # still running
    assert "expected a number" in as_number.reason
    assert "String" in as_number.reason
    assert "outside the range of int16" in too_big.reason
    assert "array" in array.reason
    assert "nan" in nan.reason
    assert driver.health().errors["protocol_violation"] >= 4


async def test_nodes_the_server_does_not_know_are_bad_with_the_status_name(server: OpcUaPlant) -> None:
    dev = device(
        server.endpoint,
        [
            point("pump1/flow", server.node_id("pump1", "flow")),
            point("pump1/ghost", "ns=2;s=pump1.ghost"),
            point("pump1/elsewhere", "nsu=urn:nobody:here;s=pump1.flow"),
        ],
    )
    async with running(dev) as (driver, sink):
        ghost = await sink.wait_quality("pump1/ghost", Quality.BAD)
        elsewhere = await sink.wait_quality("pump1/elsewhere", Quality.BAD)
        await sink.wait_quality("pump1/flow", Quality.GOOD)
        assert driver.health().connected
    assert ghost.reason == "BadNodeIdUnknown: cannot monitor ns=2;s=pump1.ghost"
    assert elsewhere.reason == (
        "BadNodeIdUnknown (the server has no namespace urn:nobody:here): cannot monitor nsu=urn:nobody:here;s=pump1.flow"
    )
    assert driver.health().errors["device_rejected"] == 2


async def test_writes_use_the_nodes_data_type_and_reach_the_plant(server: OpcUaPlant) -> None:
    n = server.node_id
    dev = device(
        server.endpoint,
        [
            point("pump2/speed_setpoint", n("pump2", "speed_setpoint"), writable=True),
            point("pump2/speed_setpoint_krpm", n("pump2", "speed_setpoint"), scale=0.001, writable=True),
            point("pump2/running", n("pump2", "running"), "bool", writable=True),
        ],
    )
    pump = server.plants["pump2"]
    async with running(dev) as (driver, sink):
        await driver.write("pump2/speed_setpoint", 1234)  # an int, written as the node's Double
        assert pump.speed_setpoint == 1234.0
        await sink.wait_value("pump2/speed_setpoint", 1234.0)
        await driver.write("pump2/speed_setpoint_krpm", 1.8)
        assert pump.speed_setpoint == pytest.approx(1800.0)
        await driver.write("pump2/running", False)
        assert pump.running is False
        await sink.wait_value("pump2/running", False)
        await driver.write("pump2/running", True)
    assert ("pump2", "speed_setpoint", 1234.0) in server.writes
    assert driver.health().requests >= 5


async def test_refused_writes_are_device_rejected_naming_point_node_and_status(server: OpcUaPlant) -> None:
    n = server.node_id
    dev = device(
        server.endpoint,
        [
            point("pump1/flow", n("pump1", "flow"), writable=True),  # writable here, read-only on the server
            point("pump1/speed_setpoint", n("pump1", "speed_setpoint"), writable=True),
            point("pump1/status", n("pump1", "status_word"), "uint16", writable=True),
            point("pump1/speed", n("pump1", "speed")),
        ],
    )
    async with running(dev) as (driver, _):
        with pytest.raises(DeviceRejected) as server_refused:
            await driver.write("pump1/flow", 1.0)
        with pytest.raises(DeviceRejected, match="not a number"):
            await driver.write("pump1/speed_setpoint", "fast")
        with pytest.raises(DeviceRejected, match="70000 does not fit a UInt16"):
            await driver.write("pump1/status", 70_000)
        with pytest.raises(DeviceRejected, match="not writable"):
            await driver.write("pump1/speed", 1.0)
        with pytest.raises(DeviceRejected, match="no such point"):
            await driver.write("pump1/ghost", 1.0)
    message = str(server_refused.value)
    assert message.startswith("srv1: write pump1/flow (ns=2;s=pump1.flow): Bad")
    assert server_refused.value.detail in ("BadNotWritable", "BadUserAccessDenied")
    with pytest.raises(LinkDown, match="not connected"):
        await driver.write("pump1/speed_setpoint", 1.0)


async def test_three_server_restarts_leave_one_subscription_and_one_reading_per_change(server: OpcUaPlant) -> None:
    n = server.node_id
    points = [point(f"pump1/{name}", n("pump1", name)) for name in ("flow", "pressure", "current")]
    dev = device(server.endpoint, points, poll_interval=0.05)
    async with running(dev) as (driver, sink):
        await sink.wait_quality("pump1/flow", Quality.GOOD)
        for _ in range(3):
            await server.restart()
            await sink.wait_quality("pump1/flow", Quality.BAD)
            await sink.wait_quality("pump1/flow", Quality.GOOD)
            await sink.wait_quality("pump1/current", Quality.GOOD)
        assert server.session_count() == 1
        assert server.subscription_count() == 1
        assert server.monitored_item_count() == 3
        await server.write_value("pump1", "pressure", 7.125)
        await sink.wait_value("pump1/pressure", 7.125)
        await server.write_value("pump1", "pressure", 7.25)
        await sink.wait_value("pump1/pressure", 7.25)
    assert [r.value for r in sink.of("pump1/pressure") if r.value in (7.125, 7.25)] == [7.125, 7.25]
    assert driver.health().errors["link_down"] >= 3


async def test_a_broken_connection_resumes_the_session_and_replaces_its_subscription(server: OpcUaPlant) -> None:
    await server.restart()  # no sessions left over from other tests
    points = [
        point("pump2/flow", server.node_id("pump2", "flow")),
        point("pump2/speed", server.node_id("pump2", "speed")),
    ]
    dev = device(server.endpoint, points)
    async with running(dev) as (_, sink):
        await sink.wait_quality("pump2/flow", Quality.GOOD)
        for _ in range(2):
            server.drop_connections()  # sockets closed, the session and its subscription live on
            await sink.wait_quality("pump2/flow", Quality.BAD)
            await sink.wait_quality("pump2/flow", Quality.GOOD)
            await sink.wait_quality("pump2/speed", Quality.GOOD)
        assert (server.session_count(), server.subscription_count(), server.monitored_item_count()) == (1, 1, 2)
        await server.write_value("pump2", "flow", 99.5)
        await sink.wait_value("pump2/flow", 99.5)
        await asyncio.sleep(0.3)  # a few publishing intervals: a duplicate would show up by now
    assert len([r for r in sink.of("pump2/flow") if r.value == 99.5]) == 1
    assert sink.latest["pump2/flow"].reason == ""


async def test_stopping_the_driver_closes_its_session_and_subscriptions(server: OpcUaPlant) -> None:
    await server.restart()
    dev = device(server.endpoint, [point("pump1/flow", server.node_id("pump1", "flow"))])
    async with running(dev) as (_, sink):
        await sink.wait_quality("pump1/flow", Quality.GOOD)
        assert server.subscription_count() == 1
    async with asyncio.timeout(5):
        while server.session_count() or server.subscription_count():
            await asyncio.sleep(0.02)


async def test_an_absolute_deadband_is_applied_by_the_server(server: OpcUaPlant) -> None:
    dev = device(server.endpoint, [point("pump2/current", server.node_id("pump2", "current"), deadband_abs=1.0)])
    async with running(dev) as (_, sink):
        await sink.wait_quality("pump2/current", Quality.GOOD)
        await server.write_value("pump2", "current", 10.0)
        await sink.wait_value("pump2/current", 10.0)
        await server.write_value("pump2", "current", 10.5)  # within the deadband: not reported
        await asyncio.sleep(0.3)  # several publishing intervals, so the server's queue cannot hide it either
        await server.write_value("pump2", "current", 12.0)
        await sink.wait_value("pump2/current", 12.0)
    values = [r.value for r in sink.of("pump2/current")]
    assert 10.5 not in values
    assert values[-2:] == [10.0, 12.0]


async def test_a_percent_deadband_is_asked_of_the_server_as_a_percent_filter_on_its_node(server: OpcUaPlant) -> None:
    """asyncua's server accepts a Percent filter but passes every change, so what can be proven is the
    request: each point's own deadband, of its kind and value, on its node."""
    current, speed = server.node_id("pump2", "current"), server.node_id("pump2", "speed")
    dev = device(
        server.endpoint,
        [
            point("pump2/current", current, deadband_percent=2.5),
            point("pump2/speed", speed, deadband_abs=5.0),
        ],
    )
    async with running(dev) as (driver, sink):
        await sink.wait_for(lambda c: {"pump2/current", "pump2/speed"} <= {r.point for r in c.all if r.good})
        filters = server.deadband_filters()
    assert filters[current] == ("Percent", 2.5)
    assert filters[speed] == ("Absolute", 5.0)
    assert driver.health().errors == {}
