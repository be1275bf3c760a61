"""The Modbus driver against the real pymodbus PLC simulator from hil/ over loopback TCP."""

from __future__ import annotations

import asyncio
import contextlib
import math
import shutil
import subprocess
from collections.abc import AsyncIterator, Callable, Sequence

import pytest

from avila_edge.config.model import DeviceConfig
from avila_edge.core import DeviceRejected, ProtocolViolation, Quality, SystemClock
from drivers.modbus.driver import ModbusDriver
from hil.modbus_plc import ModbusPlc

from .conftest import Collector, device, point


@contextlib.asynccontextmanager
async def running(dev: DeviceConfig) -> AsyncIterator[tuple[ModbusDriver, Collector]]:
    sink = Collector()
    async with ModbusDriver(dev, clock=SystemClock()) as driver, asyncio.TaskGroup() as tg:
        task = tg.create_task(driver.run(sink), name="driver[modbus:plc1]")
        try:
            yield driver, sink
        finally:
            task.cancel()


def good(points: Sequence[str]) -> object:
    return lambda latest: all(p in latest and latest[p].quality is Quality.GOOD for p in points)


TYPED = [
    # (name, address, kind, kwargs, value)
    ("i16", 40, "int16", {}, -1234),
    ("u16", 41, "uint16", {}, 65000),
    ("i32", 42, "int32", {"word_order": "little"}, -123456789),
    ("u32", 44, "uint32", {"byte_order": "little"}, 4000000000),
    ("i64", 46, "int64", {}, -(2**40) - 7),
    ("u64", 50, "uint64", {"byte_order": "little", "word_order": "little"}, 2**63 + 5),
    ("f32_abcd", 54, "float32", {}, 123.456),
    ("f32_cdab", 56, "float32", {"word_order": "little"}, -0.001),
    ("f32_badc", 58, "float32", {"byte_order": "little"}, 1e10),
    ("f32_dcba", 60, "float32", {"byte_order": "little", "word_order": "little"}, 3.5),
    ("f64", 62, "float64", {"word_order": "little"}, math.e),
    ("text", 66, "string", {"length": 5}, "HELLO-PLC"),
]


async def test_every_type_and_order_decodes_to_the_value_the_simulator_set(plc: ModbusPlc) -> None:
    points = []
    for name, address, kind, kw, value in TYPED:
        plc.set_value(
            address, value, kind, length=kw.get("length", 0), **{k: v for k, v in kw.items() if k != "length"}
        )  # type: ignore[arg-type]
        points.append(point(f"t/{name}", "holding", address, kind, **kw))
    plc.set_registers(72, [0b1010])
    points += [point("t/bit1", "holding", 72, "bool", bit=1), point("t/bit2", "holding", 72, "bool", bit=2)]
    plc.set_bit(5, True, table="coil")
    plc.set_bit(7, True, table="discrete")
    points += [
        point("t/coil5", "coil", 5, "bool"),
        point("t/di7", "discrete", 7, "bool"),
        point("t/di6", "discrete", 6, "bool"),
    ]
    async with running(device(plc.port, points)) as (_, sink):
        await sink.wait_for(good([p.id for p in points]))
    got = {pid: r.value for pid, r in sink.latest.items()}
    for name, _, kind, _, value in TYPED:
        if kind == "float32":
            assert got[f"t/{name}"] == pytest.approx(value, rel=1e-6)
        else:
            assert got[f"t/{name}"] == value, name
    assert (got["t/bit1"], got["t/bit2"]) == (True, False)
    assert (got["t/coil5"], got["t/di7"], got["t/di6"]) == (True, True, False)


async def test_live_plant_values_in_all_four_float_orders_agree(plc: ModbusPlc) -> None:
    pts = [
        point("pump1/flow", "holding", 0),
        point("pump1/flow_cdab", "holding", 2, word_order="little"),
        point("pump1/flow_badc", "holding", 4, byte_order="little"),
        point("pump1/flow_dcba", "holding", 6, byte_order="little", word_order="little"),
        point("pump1/pressure", "holding", 8, "int16", scale=0.01),
        point("pump1/name", "holding", 28, "string", length=4),
    ]
    async with running(device(plc.port, pts)) as (_, sink):
        await sink.wait_for(good([p.id for p in pts]))
    flows = {sink.latest[p].value for p in ("pump1/flow", "pump1/flow_cdab", "pump1/flow_badc", "pump1/flow_dcba")}
    assert len(flows) == 1
    (flow,) = flows
    assert 100 < flow < 140  # type: ignore[operator]
    assert 3.0 < sink.latest["pump1/pressure"].value < 5.5  # type: ignore[operator]
    assert sink.latest["pump1/name"].value == "PUMP-01"


async def test_block_optimiser_issues_the_minimum_number_of_requests(plc: ModbusPlc) -> None:
    pts = [point(f"p/h{i}", "holding", i * 2) for i in range(10)]  # one block 0..19
    pts += [point("p/far", "holding", 60)]  # gap 40 > max_gap: a second block
    pts += [point("p/in", "input", 0), point("p/c0", "coil", 0, "bool"), point("p/c9", "coil", 9, "bool")]
    dev = device(plc.port, pts, poll=60.0)
    async with running(dev) as (_, sink):
        await sink.wait_for(good([p.id for p in pts]))
    assert plc.requests == {3: 2, 4: 1, 1: 1}


async def test_link_loss_turns_points_bad_within_two_polls_and_recovery_good(plc: ModbusPlc) -> None:
    pts = [point("pump1/flow", "holding", 0)]
    async with running(device(plc.port, pts, poll=0.2)) as (driver, sink):
        await sink.wait_for(good(["pump1/flow"]))
        await plc.drop_link()
        loop = asyncio.get_running_loop()
        dropped_at = loop.time()
        await sink.wait_for(lambda latest: latest["pump1/flow"].quality is Quality.BAD)
        assert loop.time() - dropped_at < 2 * 0.2 + 0.5
        bad = sink.latest["pump1/flow"]
        assert bad.reason.startswith("link down")
        assert bad.value is not None  # the last good value is kept beside the Bad quality
        assert driver.health().errors.get("link_down", 0) >= 1
        assert driver.health().connected is False
        await plc.restore_link()
        await sink.wait_for(good(["pump1/flow"]))
        assert driver.health().connected is True


async def test_an_exception_response_marks_only_that_blocks_points_bad(plc: ModbusPlc) -> None:
    pts = [point("p/a", "holding", 0), point("p/b", "holding", 40), point("p/c", "input", 0)]
    plc.faults.set_exception("holding", range(40, 42), code=2)
    async with running(device(plc.port, pts, max_gap=0)) as (driver, sink):
        await sink.wait_for(lambda latest: len(latest) == 3)
        await asyncio.sleep(0.3)
    assert sink.latest["p/b"].quality is Quality.BAD
    assert sink.latest["p/b"].reason == (
        "device rejected: plc1: read unit 1 holding 40..41: exception 2 illegal data address"
    ).replace("plc1: read unit 1 holding 40..41: ", "")
    assert sink.latest["p/a"].quality is Quality.GOOD
    assert sink.latest["p/c"].quality is Quality.GOOD
    assert driver.health().errors["device_rejected"] >= 1


async def test_a_slow_device_times_out_bad_and_recovers(plc: ModbusPlc) -> None:
    pts = [point("pump1/flow", "holding", 0)]
    async with running(device(plc.port, pts, poll=0.1, timeout=0.2)) as (driver, sink):
        await sink.wait_for(good(["pump1/flow"]))
        plc.faults.set_latency(1.0)
        await sink.wait_for(lambda latest: latest["pump1/flow"].quality is Quality.BAD)
        assert sink.latest["pump1/flow"].reason.startswith("timeout")
        plc.faults.set_latency(0)
        await sink.wait_for(good(["pump1/flow"]))
        assert driver.health().errors["timeout"] >= 1


async def test_writes_reach_the_plant_and_read_only_tables_are_refused(plc: ModbusPlc) -> None:
    pts = [
        point("pump1/speed_setpoint", "holding", 10, "uint16", writable=True),
        point("pump1/run", "coil", 0, "bool", writable=True),
        point("pump1/scaled", "holding", 80, "int16", scale=0.1, writable=True),
        point("pump1/pressure", "input", 0),
    ]
    async with running(device(plc.port, pts)) as (driver, sink):
        await sink.wait_for(good([p.id for p in pts]))
        await driver.write("pump1/speed_setpoint", 2400)
        assert plc.plant.speed_setpoint == 2400
        await driver.write("pump1/run", False)
        assert plc.plant.running is False
        await driver.write("pump1/scaled", 12.3)
        assert plc.registers(80, 1) == [123]
        with pytest.raises(DeviceRejected, match="not writable"):
            await driver.write("pump1/pressure", 1.0)
        with pytest.raises(DeviceRejected, match="out of range"):
            await driver.write("pump1/speed_setpoint", 70000)
        await sink.wait_for(lambda latest: latest["pump1/speed_setpoint"].value == 2400)


async def test_several_unit_ids_behind_one_connection(plc: ModbusPlc) -> None:
    pts = [
        point("pump1/name", "holding", 28, "string", length=4),
        point("pump2/name", "holding", 28, "string", length=4, unit_id=2),
    ]
    async with running(device(plc.port, pts)) as (_, sink):
        await sink.wait_for(good([p.id for p in pts]))
    assert sink.latest["pump1/name"].value == "PUMP-01"
    assert sink.latest["pump2/name"].value == "PUMP-02"


async def test_an_unreachable_device_is_bad_and_retried_with_backoff() -> None:
    pts = [point("pump1/flow", "holding", 0)]
    async with running(device(1, pts)) as (driver, sink):
        await sink.wait_for(lambda latest: "pump1/flow" in latest)
        await asyncio.sleep(0.5)
    assert sink.latest["pump1/flow"].quality is Quality.BAD
    assert sink.latest["pump1/flow"].reason.startswith("link down")
    attempts = driver.health().errors["link_down"]
    assert 2 <= attempts <= 15  # backoff 0.05 s growing to 0.2 s: retried, but not in a tight loop


GARBAGE_REPLIES = [
    b"",  # connection closed without a reply
    b"\x00",  # truncated MBAP header
    b"\x00\x01\x00\x00\x00\x05\x01\x03\x04\x00",  # truncated PDU
    b"\x00\x01\x00\x00\x00\x07\x01\x03\x02\x00\x01\x00\x02",  # byte count disagrees with length
    b"\x00\x01\x00\x05\x00\x05\x01\x03\x02\x00\x01",  # wrong protocol id
    b"\xff" * 300,  # noise
    b"\x00\x01\x00\x00\xff\xff\x01\x03",  # absurd length
    b"\x00\x01\x00\x00\x00\x03\x01\x83\x63",  # exception code that does not exist
]


@pytest.mark.parametrize("reply", GARBAGE_REPLIES)
async def test_malformed_replies_never_crash_the_driver(reply: bytes) -> None:
    writers: list[asyncio.StreamWriter] = []

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        try:
            while await reader.read(260):
                if not reply:
                    break
                writer.write(reply)
                await writer.drain()
        except OSError:
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        pts = [point("pump1/flow", "holding", 0)]
        async with running(device(port, pts, poll=0.05, timeout=0.2)) as (driver, sink):
            await sink.wait_for(lambda latest: "pump1/flow" in latest)
            await asyncio.sleep(0.4)
            assert sink.latest["pump1/flow"].quality is Quality.BAD
            assert sum(driver.health().errors.values()) >= 1
    finally:
        server.close()
        for w in writers:
            w.close()
        await server.wait_closed()
        await asyncio.sleep(0.05)


# Well-framed replies (the request's transaction id, a consistent length) that still are not the answer:
# each PDU replaces the answer of 0x1234 in both registers, and none of its 0xBEEF may pass as a value.
WRONG_ANSWERS = [
    b"\x04\x04\xbe\xef\xbe\xef",  # a read of input registers answering a read of holding registers
    b"\x03\x05\xbe\xef\xbe\xef\x99",  # half a register more than whole registers
    b"\x01\x01\xff",  # a coil reply
]


@contextlib.asynccontextmanager
async def modbus_tcp_server(reply: Callable[[int], bytes]) -> AsyncIterator[int]:
    """A Modbus TCP server on a free loopback port answering its n-th request (from 1) with ``reply(n)``,
    a PDU; yields the port."""
    served = 0

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal served
        try:
            while True:
                header = await reader.readexactly(7)
                await reader.readexactly(int.from_bytes(header[4:6], "big") - 1)
                served += 1
                pdu = reply(served)
                writer.write(header[:4] + (len(pdu) + 1).to_bytes(2, "big") + header[6:7] + pdu)
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


async def test_a_well_framed_reply_that_is_not_the_answer_is_a_protocol_violation_not_a_value() -> None:
    served = 0

    def reply(n: int) -> bytes:
        nonlocal served
        served = n
        wrong = n // 2 - 1 if n % 2 == 0 else -1
        return WRONG_ANSWERS[wrong] if 0 <= wrong < len(WRONG_ANSWERS) else b"\x03\x04\x12\x34\x12\x34"

    async with modbus_tcp_server(reply) as port:
        pts = [point("pump1/a", "holding", 0, "uint16"), point("pump1/b", "holding", 1, "uint16")]
        async with running(device(port, pts, poll=0.02, timeout=0.2)) as (driver, sink):
            await sink.wait_for(lambda _: served > 2 * len(WRONG_ANSWERS) + 2)
            sink.latest.clear()
            await sink.wait_for(good(["pump1/a", "pump1/b"]))
            health = driver.health()
    accepted = [r.value for r in sink.all if r.quality is Quality.GOOD]
    assert accepted and set(accepted) == {0x1234}
    assert health.errors == {"protocol_violation": len(WRONG_ANSWERS)}
    reasons = {r.reason for r in sink.all if r.quality is Quality.BAD}
    assert "protocol violation: the reply is for function 4, not 3" in reasons
    assert "protocol violation: the reply is for function 1, not 3" in reasons
    assert any("odd byte count" in reason for reason in reasons), reasons


async def test_a_write_answered_by_a_reply_for_another_function_is_a_protocol_violation_not_a_success() -> None:
    # every request gets a read reply: right for the polls, wrong for a write
    async with modbus_tcp_server(lambda _: b"\x03\x02\x00\x07") as port:
        pts = [point("pump1/setpoint", "holding", 0, "uint16", writable=True)]
        async with running(device(port, pts, poll=0.05, timeout=0.2)) as (driver, sink):
            await sink.wait_for(good(["pump1/setpoint"]))
            with pytest.raises(ProtocolViolation, match="the reply is for function 3, not 6"):
                await driver.write("pump1/setpoint", 9)  # the twin marks the desired value failed with this reason


async def test_cancelling_the_driver_mid_request_always_stops_it(plc: ModbusPlc) -> None:
    import random

    rng = random.Random(7)
    plc.faults.set_latency(0.01)
    pts = [point("pump1/flow", "holding", 0), point("p/b", "holding", 40)]
    plc.faults.set_exception("holding", range(40, 42), code=2)
    for _ in range(20):
        driver = ModbusDriver(device(plc.port, pts, poll=0.001, max_gap=0), clock=SystemClock())
        async with driver:
            task = asyncio.create_task(driver.run(Collector()))
            await asyncio.sleep(rng.uniform(0.0, 0.05))
            task.cancel()
            done, _ = await asyncio.wait([task], timeout=2.0)
            assert done, "the driver kept running after it was cancelled"


async def test_a_cancellation_swallowed_inside_a_request_still_stops_the_driver(plc: ModbusPlc) -> None:
    """Python 3.11's asyncio.wait_for (used inside pymodbus) drops a cancellation that arrives together with
    the reply. Reproduce that exactly, once, around the real TCP transport to the real simulator."""
    from drivers.modbus.driver import tcp_transport

    entered = asyncio.Event()

    class SwallowsOnce:
        def __init__(self, device: DeviceConfig) -> None:
            self.inner = tcp_transport(device)
            self.swallowed = False

        def __getattr__(self, name: str) -> object:
            return getattr(self.inner, name)

        async def read(self, unit: int, table: str, start: int, count: int) -> list[int] | list[bool]:
            entered.set()
            try:
                await asyncio.sleep(1.0)  # a slow reply: the cancellation lands here
            except asyncio.CancelledError:
                if self.swallowed:
                    raise
                self.swallowed = True  # what wait_for does when the reply completes at the same time
            return await self.inner.read(unit, table, start, count)  # type: ignore[arg-type]

    dev = device(plc.port, [point("pump1/flow", "holding", 0)], poll=0.01)
    async with ModbusDriver(dev, clock=SystemClock(), transport=SwallowsOnce) as driver:  # type: ignore[arg-type]
        task = asyncio.create_task(driver.run(Collector()))
        await entered.wait()
        task.cancel()
        done, _ = await asyncio.wait([task], timeout=3.0)
        assert done, "the driver kept polling after its cancellation was swallowed"


# -- an independent client -----------------------------------------------------------------------


async def mbpoll(*args: str) -> str:
    """Run mbpoll (an independent Modbus master) once; its output, after asserting it succeeded."""
    exe = shutil.which("mbpoll")
    if exe is None:
        pytest.skip("mbpoll is not installed")
    proc = await asyncio.create_subprocess_exec(exe, *args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), 5)
    text = out.decode(errors="replace")
    assert proc.returncode == 0, text
    return text


async def test_mbpoll_reads_and_writes_the_tcp_simulator_and_the_driver_sees_its_write(plc: ModbusPlc) -> None:
    """The TCP simulator speaks Modbus to an independent master: mbpoll reads what the plant set and a
    register mbpoll writes is the value the driver then reads."""
    plc.set_registers(40, [4321, 1234], unit=2)
    tcp = ["-m", "tcp", "-p", str(plc.port), "-a", "2", "-t", "4", "-0", "-1", "127.0.0.1"]
    text = await mbpoll("-r", "40", "-c", "2", *tcp)
    assert "[40]: \t4321" in text and "[41]: \t1234" in text, text
    await mbpoll("-r", "42", *tcp, "777")
    assert plc.registers(42, 1, unit=2) == [777]
    pts = [point("pump2/raw", "holding", 42, "uint16", unit_id=2)]
    async with running(device(plc.port, pts)) as (_, sink):
        await sink.wait_for(lambda latest: "pump2/raw" in latest, within=5)
    assert (sink.latest["pump2/raw"].value, sink.latest["pump2/raw"].quality) == (777, Quality.GOOD)
