"""The serial driver against the simulated instrument through a real socat pty pair."""

from __future__ import annotations

import asyncio

import pytest

from avila_edge.core import DeviceRejected, LinkDown, Quality, SystemClock
from avila_edge.runtime.supervisor import DriverSupervisor
from drivers.serial.driver import SerialDriver
from hil.pty import PtyPair
from hil.serial_instrument import SerialInstrument

from ..harness import Collector
from .conftest import INTERVAL, LINE_PATTERN, LINE_POINTS, NMEA_POINTS, WITHIN, device, rig


def _good(sink: Collector, *points: str) -> bool:
    return all((r := sink.latest.get(p)) is not None and r.quality is Quality.GOOD for p in points)


async def test_nmea_sentences_arrive_good_with_the_values_the_instrument_sent() -> None:
    async with rig("nmea", NMEA_POINTS) as (_, inst, drv, sink):
        await sink.wait_for(lambda c: _good(c, *(p.id for p in NMEA_POINTS)))
        latest = sink.latest
        assert latest["gps/lat"].value == pytest.approx(48.1173, abs=1e-6)
        assert latest["gps/lon"].value == pytest.approx(-11.516667, abs=1e-6)
        assert latest["gps/fix"].value == 1
        assert latest["gps/sog"].value == 0.0
        assert latest["pump1/water_temp"].value == inst.sent["water_temperature"] == 17.0
        assert latest["pump1/setpoint"].value == 1500.0
        assert 20.0 < float(latest["pump1/motor_temp"].value or 0) < 90.0
        r = latest["gps/lat"]
        assert r.ts_source == r.ts_gateway  # gateway time at reception
        assert drv.health().errors == {}


async def test_line_protocol_values_arrive_good_by_named_group_and_by_field() -> None:
    async with rig("line", LINE_POINTS, pattern=LINE_PATTERN) as (_, inst, drv, sink):
        await sink.wait_for(lambda c: _good(c, *(p.id for p in LINE_POINTS)))
        sent = inst.sent
        for pid, key in (("pump1/flow", "flow"), ("pump1/pressure", "pressure"), ("pump1/setpoint", "setpoint")):
            assert abs(float(sink.latest[pid].value or 0) - sent[key]) < 30.0  # the plant moves between frames
        assert sink.latest["pump1/running"].value is True
        assert drv.health().errors == {}


async def test_a_polled_instrument_answers_the_poll_request() -> None:
    async with rig("line", LINE_POINTS, polled=True, pattern=LINE_PATTERN, poll="R\\r") as (_, inst, drv, sink):
        await sink.wait_for(lambda c: _good(c, "pump1/flow", "pump1/setpoint"))
        await sink.wait_for(lambda c: len(c.of("pump1/flow")) >= 3)
        assert inst.commands.count("R") >= 3
        assert drv.health().requests >= 3


async def test_the_nmea_fault_corpus_is_counted_and_survived() -> None:
    async with rig("nmea", NMEA_POINTS) as (_, inst, drv, sink):
        await sink.wait_for(lambda c: _good(c, "pump1/water_temp", "gps/lat"))
        for kind in ("bad_checksum", "garbage", "truncated", "oversize", "invalid_utf8", "non_numeric"):
            inst.inject(kind)
        await sink.wait_for(lambda c: len(drv.health().errors) >= 6)
        errors = drv.health().errors
        for kind in ("bad_checksum", "garbage", "truncated", "oversize", "invalid_encoding", "invalid_value"):
            assert errors.get(kind, 0) >= 1, (kind, errors)
        # the non-numeric MTW made the water temperature Bad, the next good sentence makes it Good again
        assert any(r.quality is Quality.BAD and "not a number" in r.reason for r in sink.of("pump1/water_temp"))
        before = len(sink.of("gps/lat"))
        await sink.wait_for(lambda c: len(c.of("gps/lat")) > before + 2 and _good(c, "pump1/water_temp"))
        # a value a corrupted frame carried (99.9 degC) never reached a point
        assert all(r.value != 99.9 for r in sink.of("pump1/water_temp"))
        assert all(r.quality is Quality.GOOD for r in sink.of("gps/lat"))


async def test_the_line_fault_corpus_is_counted_and_survived() -> None:
    async with rig("line", LINE_POINTS, pattern=LINE_PATTERN) as (_, inst, drv, sink):
        await sink.wait_for(lambda c: _good(c, "pump1/flow"))
        for kind in ("garbage", "truncated", "oversize", "invalid_utf8", "non_numeric"):
            inst.inject(kind)
        await sink.wait_for(lambda c: len(drv.health().errors) >= 5)
        errors = drv.health().errors
        for kind in ("unmatched", "truncated", "oversize", "invalid_encoding", "invalid_value"):
            assert errors.get(kind, 0) >= 1, (kind, errors)
        before = len(sink.of("pump1/flow"))
        await sink.wait_for(lambda c: len(c.of("pump1/flow")) > before + 2 and _good(c, "pump1/flow"))
        assert not any(r.value == 12.5 for r in sink.of("pump1/flow"))


async def test_silence_makes_points_bad_with_a_timeout_reason_then_good_again() -> None:
    async with rig("nmea", NMEA_POINTS) as (_, inst, _drv, sink):
        await sink.wait_for(lambda c: _good(c, "gps/lat"))
        inst.silent = True
        bad = await sink.wait_quality("gps/lat", Quality.BAD, within=2.0)
        assert bad.reason.startswith("timeout")
        assert bad.value == pytest.approx(48.1173, abs=1e-6)  # the last value is kept
        inst.silent = False
        await sink.wait_quality("gps/lat", Quality.GOOD, within=2.0)


async def test_a_write_reaches_the_instrument_and_is_confirmed_by_a_reading() -> None:
    async with rig("nmea", NMEA_POINTS) as (_, inst, drv, sink):
        await sink.wait_for(lambda c: _good(c, "pump1/setpoint"))
        await drv.write("pump1/setpoint", 1234.5)
        await sink.wait_value("pump1/setpoint", 1234.5)
        assert "SET 1234.5" in inst.commands
        assert inst.plant.speed_setpoint == 1234.5


async def test_cable_cut_makes_points_bad_and_restore_makes_them_good_through_the_supervisor() -> None:
    sink = Collector(WITHIN)
    async with PtyPair() as pair:
        dev = device(str(pair.device), NMEA_POINTS, framing="nmea")
        drv = SerialDriver(dev, clock=SystemClock())
        supervisor = DriverSupervisor(drv, sink, clock=SystemClock())
        async with (
            SerialInstrument(pair.instrument, interval=INTERVAL) as inst,
            asyncio.TaskGroup() as tg,
        ):
            tasks = [tg.create_task(inst.run()), tg.create_task(supervisor.run(), name=supervisor.name)]
            try:
                await sink.wait_for(lambda c: _good(c, "gps/lat", "pump1/water_temp"))
                cut_at = asyncio.get_running_loop().time()
                await asyncio.to_thread(pair.cut)
                bad = await sink.wait_quality("gps/lat", Quality.BAD, within=dev.connection.idle_timeout + 0.5)
                assert asyncio.get_running_loop().time() - cut_at < dev.connection.idle_timeout + 0.5
                assert "LinkDown" in bad.reason
                assert drv.health().errors.get("link_down", 0) >= 1
                assert not drv.health().connected
                await asyncio.sleep(0.3)  # a reopen attempt or two while the port is gone
                await asyncio.to_thread(pair.restore)
                await sink.wait_quality("gps/lat", Quality.GOOD, within=3.0)
                await sink.wait_quality("pump1/water_temp", Quality.GOOD, within=1.0)
                assert supervisor.restarts >= 1
                assert drv.health().connected
            finally:
                for t in tasks:
                    t.cancel()


async def test_a_port_that_does_not_exist_raises_link_down_naming_device_and_port() -> None:
    dev = device("/nonexistent/ttyUSB9", NMEA_POINTS, framing="nmea")
    drv = SerialDriver(dev, clock=SystemClock())
    async with drv:
        with pytest.raises(LinkDown) as caught:
            await drv.run(Collector())
    assert "instr1" in str(caught.value)
    assert "/nonexistent/ttyUSB9" in str(caught.value)
    assert drv.health().errors == {"link_down": 1}


async def test_line_settings_the_port_refuses_are_reported_with_the_settings() -> None:
    async with PtyPair() as pair:  # a pty refuses parity (EINVAL), as some adapters refuse odd settings
        dev = device(str(pair.device), NMEA_POINTS, framing="nmea", parity="even")
        drv = SerialDriver(dev, clock=SystemClock())
        async with drv:
            with pytest.raises(LinkDown) as caught:
                await drv.run(Collector())
    assert "the port refused 9600 baud, 8 data bits, parity even, 1 stop bits" in str(caught.value)


async def test_a_write_to_a_polled_line_instrument_is_answered_and_confirmed() -> None:
    async with rig("line", LINE_POINTS, polled=True, pattern=LINE_PATTERN, poll="R\\r") as (_, inst, drv, sink):
        await sink.wait_for(lambda c: _good(c, "pump1/setpoint"))
        await drv.write("pump1/setpoint", 1100)
        await sink.wait_value("pump1/setpoint", 1100.0)
        assert "SET 1100.0" in inst.commands
        assert drv.health().errors.get("unmatched", 0) >= 1  # the "OK SET 1100.0" reply no point takes


async def test_writes_that_cannot_be_sent_raise_the_right_errors() -> None:
    dev = device("/nonexistent/ttyUSB9", NMEA_POINTS, framing="nmea")
    drv = SerialDriver(dev, clock=SystemClock())
    with pytest.raises(LinkDown, match="is not open"):
        await drv.write("pump1/setpoint", 1000.0)
    with pytest.raises(DeviceRejected, match="not writable"):
        await drv.write("gps/lat", 1.0)
    with pytest.raises(DeviceRejected, match="no such point"):
        await drv.write("gps/nothing", 1.0)
