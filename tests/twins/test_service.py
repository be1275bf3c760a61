"""Twins fed by the real Modbus driver polling the hil/ plant: write-back, alarms, derived values."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence

import pytest

from avila_edge.config.model import GatewayConfig
from avila_edge.core import Event, Quality, Reading, SystemClock
from avila_edge.twins.service import TwinService
from avila_edge.twins.state import NotWritable, StaleVersion, WriteStatus
from drivers.modbus.driver import ModbusDriver
from hil.modbus_plc import ModbusPlc

from .conftest import site


class Rig:
    def __init__(self, config: GatewayConfig) -> None:
        self.driver = ModbusDriver(config.devices[0], clock=SystemClock())
        self.twins = TwinService(config, writer=self.driver.write)
        self.events: list[Event] = []
        self.updated = asyncio.Event()

    async def sink(self, batch: Sequence[Reading]) -> None:
        self.events += self.twins.apply(batch)
        self.updated.set()

    async def until(self, predicate: object, within: float = 10.0) -> None:
        async with asyncio.timeout(within):
            while not predicate():  # type: ignore[operator]
                self.updated.clear()
                await self.updated.wait()


@contextlib.asynccontextmanager
async def rig(plc: ModbusPlc) -> AsyncIterator[Rig]:
    r = Rig(site(plc.port))
    async with r.driver, asyncio.TaskGroup() as tg:
        task = tg.create_task(r.driver.run(r.sink))
        try:
            yield r
        finally:
            task.cancel()


@pytest.fixture
async def plc() -> AsyncIterator[ModbusPlc]:
    async with ModbusPlc() as p:
        yield p


async def test_a_desired_setpoint_reaches_the_plant_and_is_confirmed_by_a_reading(plc: ModbusPlc) -> None:
    async with rig(plc) as r:
        await r.until(lambda: "speed_setpoint" in r.twins.state("pump1").reported)
        desired, events = await r.twins.set_desired("pump1", "speed_setpoint", 2100, expected_version=0, by="operator")
        assert desired.status is WriteStatus.PENDING
        assert plc.plant.speed_setpoint == 2100
        await r.until(lambda: r.twins.state("pump1").desired["speed_setpoint"].status is WriteStatus.CONFIRMED)
        snapshot = r.twins.snapshot("pump1")
        assert snapshot["delta"] == {}
        assert snapshot["desired"]["speed_setpoint"]["version"] == 1  # type: ignore[index]
    outcomes = [e.attrs["status"] for e in events + r.events if e.kind == "desired"]
    assert outcomes == ["pending", "confirmed"]


async def test_a_device_that_refuses_the_write_yields_failed_with_the_reason(plc: ModbusPlc) -> None:
    async with rig(plc) as r:
        await r.until(lambda: "trim" in r.twins.state("pump1").reported)
        plc.faults.set_exception("holding", range(90, 91), code=4)
        desired, events = await r.twins.set_desired("pump1", "trim", 5, expected_version=None, by="operator")
    assert desired.status is WriteStatus.FAILED
    assert "exception 4 server device failure" in desired.reason
    assert [e.attrs["status"] for e in events] == ["pending", "failed"]


async def test_stale_versions_and_unwritable_points_are_refused(plc: ModbusPlc) -> None:
    async with rig(plc) as r:
        await r.until(lambda: "speed_setpoint" in r.twins.state("pump1").reported)
        await r.twins.set_desired("pump1", "speed_setpoint", 1600, expected_version=0, by="a")
        with pytest.raises(StaleVersion):
            await r.twins.set_desired("pump1", "speed_setpoint", 1700, expected_version=0, by="b")
        with pytest.raises(NotWritable):
            await r.twins.set_desired("pump1", "flow", 1, expected_version=None, by="a")
    assert plc.plant.speed_setpoint == 1600


async def test_derived_values_and_aggregates_follow_the_plant(plc: ModbusPlc) -> None:
    async with rig(plc) as r:
        await r.until(lambda: "total_flow" in r.twins.state("line1").derived)
        pump = r.twins.state("pump1")
        power = pump.derived["hydraulic_power"]
        assert power.quality is Quality.GOOD
        flow, pressure = pump.reported["flow"].value, pump.reported["pressure"].value
        assert power.value == pytest.approx(flow * pressure / 36)  # type: ignore[operator]
        assert r.twins.state("line1").derived["total_flow"].value == pytest.approx(flow)


async def test_an_unconfirmed_write_fails_at_its_deadline() -> None:
    twins = TwinService(site())
    twins.apply([Reading(point="pump1/speed_setpoint", value=1500, ts_source=0, ts_gateway=0)])
    await twins.set_desired("pump1", "speed_setpoint", 1800, expected_version=None, by="op")
    assert [e for e in twins.tick(3.0) if e.kind == "desired"] == []
    (event,) = [e for e in twins.tick(6.0) if e.kind == "desired"]
    assert event.attrs["status"] == "failed"
    assert twins.state("pump1").desired["speed_setpoint"].reason == "no matching reading before the deadline"


async def test_twin_state_survives_a_restart_through_the_journal(tmp_path: object) -> None:
    from pathlib import Path

    from avila_edge.config.model import JournalConfig
    from avila_edge.journal import EntryKind, Journal

    path = Path(str(tmp_path)) / "j.sqlite3"
    config = site()
    ts = 1_800_000_000 * 10**9
    async with Journal.open(path, JournalConfig(), clock=SystemClock()) as journal:
        twins = TwinService(config)
        batch = [
            Reading(point="pump1/motor_temperature", value=t, ts_source=ts + i * 10**9, ts_gateway=ts + i * 10**9)
            for i, t in enumerate([70.0, 85.0, 86.0, 87.0, 88.0])
        ] + [Reading(point="pump1/speed_setpoint", value=1500, ts_source=ts, ts_gateway=ts)]
        await journal.append(batch)
        events = []
        for r in batch:
            events += twins.apply([r])
        events += twins.tick(ts / 1e9 + 60)
        _, more = await twins.set_desired("pump1", "speed_setpoint", 1500, expected_version=0, by="op")
        events += more + twins.apply([Reading(point="pump1/speed_setpoint", value=1500, ts_source=ts, ts_gateway=ts)])
        await journal.append_events(events)
    async with Journal.open(path, JournalConfig(), clock=SystemClock()) as journal:
        restored = TwinService(config)
        latest = await journal.latest_readings()
        evs = [e.event() for e in await journal.read(0, 10_000, kinds=[EntryKind.EVENT])]
        restored.restore(latest, evs)
    state = restored.state("pump1")
    assert state.reported["motor_temperature"].value == 88.0
    assert state.desired["speed_setpoint"].status is WriteStatus.CONFIRMED
    assert state.desired["speed_setpoint"].version == 1
    assert restored.snapshot("pump1")["alarms"]["hot"]["state"] == "active"  # type: ignore[index]
