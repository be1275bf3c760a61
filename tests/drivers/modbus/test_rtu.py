"""The Modbus driver over RTU: a real socat pty pair, the hil/ PLC serving several units on the line."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import shutil
import subprocess
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import pytest

from avila_edge.config.model import DeviceConfig, PointConfig, TimingConfig
from avila_edge.core import Quality, SystemClock
from drivers.modbus import codec
from drivers.modbus.bus import BUSES
from drivers.modbus.config import ModbusConnection
from drivers.modbus.driver import ModbusDriver
from hil.modbus_plc import ModbusPlc
from hil.pty import PtyPair

from .conftest import Collector, point

SILENT = 3


def rtu_device(
    device_id: str,
    port: os.PathLike[str] | str,
    points: Sequence[PointConfig],
    *,
    poll: float = 0.05,
    timeout: float = 0.1,
    backoff: tuple[float, float] = (0.05, 0.2),
    **conn: Any,
) -> DeviceConfig:
    return DeviceConfig(
        id=device_id,
        driver="modbus",
        connection=ModbusConnection(
            **{"transport": "rtu", "port": str(port), "baudrate": 115200, "parity": "N", **conn}
        ),
        points=tuple(points),
        timing=TimingConfig(poll_interval=poll, timeout=timeout, backoff_initial=backoff[0], backoff_max=backoff[1]),  # type: ignore[arg-type]
    )


@pytest.fixture
async def pair() -> AsyncIterator[PtyPair]:
    async with PtyPair() as p:
        yield p
    assert len(BUSES) == 0, "the last device on a bus closes it"


@pytest.fixture
async def plc(pair: PtyPair) -> AsyncIterator[ModbusPlc]:
    async with ModbusPlc(
        serial_port=str(pair.instrument), baudrate=115200, parity="N", unit_ids=(1, 2), silent_units=(SILENT,)
    ) as p:
        yield p


@contextlib.asynccontextmanager
async def running(*devices: DeviceConfig) -> AsyncIterator[tuple[list[ModbusDriver], Collector]]:
    sink = Collector()
    drivers = [ModbusDriver(d, clock=SystemClock()) for d in devices]
    async with contextlib.AsyncExitStack() as stack, asyncio.TaskGroup() as tg:
        tasks = []
        for driver in drivers:
            await stack.enter_async_context(driver)
            tasks.append(tg.create_task(driver.run(sink), name=f"driver[modbus:{driver.device.id}].poll"))
        try:
            yield drivers, sink
        finally:
            for task in tasks:
                task.cancel()


def good(points: Sequence[str]) -> object:
    return lambda latest: all(p in latest and latest[p].quality is Quality.GOOD for p in points)


def name_point(pid: str, unit: int) -> PointConfig:
    return point(pid, "holding", 28, "string", length=4, unit_id=unit)


async def test_two_units_on_one_bus_read_good_values_through_one_serial_connection(
    pair: PtyPair, plc: ModbusPlc
) -> None:
    pump1 = [name_point("pump1/name", 1), point("pump1/flow", "holding", 0, unit_id=1)]
    pump2 = [name_point("pump2/name", 2), point("pump2/pressure", "input", 0, unit_id=2)]
    async with running(rtu_device("plc1", pair.device, pump1), rtu_device("plc2", pair.device, pump2)) as (_, sink):
        await sink.wait_for(good(["pump1/name", "pump1/flow", "pump2/name", "pump2/pressure"]), within=3)
        assert len(BUSES) == 1
    assert sink.latest["pump1/name"].value == "PUMP-01"
    assert sink.latest["pump2/name"].value == "PUMP-02"
    assert 100 < sink.latest["pump1/flow"].value < 140  # type: ignore[operator]
    assert plc.unit_requests[1] >= 1 and plc.unit_requests[2] >= 1


async def test_a_silent_unit_is_bad_with_timeout_backed_off_and_does_not_stall_the_other(
    pair: PtyPair, plc: ModbusPlc
) -> None:
    poll, timeout = 0.05, 0.1
    alive = rtu_device("plc1", pair.device, [name_point("pump1/name", 1)], poll=poll, timeout=timeout)
    dead = rtu_device(
        "plc3", pair.device, [name_point("pump3/name", SILENT)], poll=poll, timeout=timeout, backoff=(0.2, 0.8)
    )
    async with running(alive, dead) as ((_, dead_driver), sink):
        await sink.wait_for(lambda latest: "pump3/name" in latest and "pump1/name" in latest, within=3)
        before = plc.unit_requests[1]
        window = 1.5
        await asyncio.sleep(window)
        served = plc.unit_requests[1] - before
        asked_silent = dead_driver.health().requests
        timeouts = dead_driver.health().errors["timeout"]
        assert dead_driver.unit_backed_off(SILENT) or asked_silent >= 2
    assert sink.latest["pump1/name"].quality is Quality.GOOD
    bad = sink.latest["pump3/name"]
    assert bad.quality is Quality.BAD
    assert bad.reason.startswith("timeout")
    assert "unit 3" in bad.reason or "no answer" in bad.reason
    # unhindered, the live unit is polled every 50 ms (30 times in 1.5 s); one timeout of the silent unit
    # per backoff interval (0.2 s growing to 0.8 s) costs it little
    assert served >= 0.6 * window / poll, served
    # asked every poll the silent unit would have cost 1.5 s / (0.05 s + 0.1 s) = 10 timeouts; backed off, 2 to 5
    assert asked_silent <= 6, asked_silent
    assert asked_silent - 1 <= timeouts <= asked_silent  # every request to it timed out (one may be in flight)
    print(f"live unit served {served} requests in {window} s; silent unit asked {asked_silent} times")


async def test_a_silent_unit_answers_again_and_comes_back_good(pair: PtyPair, plc: ModbusPlc) -> None:
    dev = rtu_device("plc3", pair.device, [name_point("pump3/name", SILENT)], backoff=(0.05, 0.2))
    async with running(dev) as ((driver,), sink):
        await sink.wait_for(lambda latest: "pump3/name" in latest, within=3)
        assert sink.latest["pump3/name"].quality is Quality.BAD
        plc.silent_units = frozenset()
        await sink.wait_for(good(["pump3/name"]), within=3)
        assert not driver.unit_backed_off(SILENT)
    assert sink.latest["pump3/name"].value == "PUMP-03"


async def test_a_cut_cable_is_bad_within_the_timeout_and_good_again_when_restored(
    pair: PtyPair, plc: ModbusPlc
) -> None:
    poll, timeout = 0.05, 0.2
    pts = [point("pump1/flow", "holding", 0)]
    async with running(rtu_device("plc1", pair.device, pts, poll=poll, timeout=timeout)) as ((driver,), sink):
        await sink.wait_for(good(["pump1/flow"]), within=3)
        loop = asyncio.get_running_loop()
        await asyncio.to_thread(pair.cut)
        cut_at = loop.time()
        await sink.wait_for(lambda latest: latest["pump1/flow"].quality is Quality.BAD, within=3)
        assert loop.time() - cut_at <= poll + timeout + 0.1
        assert sink.latest["pump1/flow"].reason.startswith(("link down", "timeout"))
        assert driver.health().connected is False or driver.health().errors.get("timeout", 0) >= 1
        await asyncio.to_thread(pair.restore)
        await plc.restore_link()
        await sink.wait_for(good(["pump1/flow"]), within=3)
        assert driver.health().connected is True


async def test_writes_over_rtu_reach_the_simulator(pair: PtyPair, plc: ModbusPlc) -> None:
    pts = [
        point("pump2/speed_setpoint", "holding", 10, "uint16", writable=True, unit_id=2),
        point("pump2/run", "coil", 0, "bool", writable=True, unit_id=2),
        point("pump2/scaled", "holding", 80, "int32", scale=0.1, writable=True, unit_id=2),
    ]
    async with running(rtu_device("plc2", pair.device, pts)) as ((driver,), sink):
        await sink.wait_for(good([p.id for p in pts]), within=3)
        await driver.write("pump2/speed_setpoint", 2400)
        await driver.write("pump2/run", False)
        await driver.write("pump2/scaled", -12.3)
        await sink.wait_for(lambda latest: latest["pump2/speed_setpoint"].value == 2400, within=3)
    assert plc.plants[2].speed_setpoint == 2400
    assert plc.plants[2].running is False
    assert plc.registers(80, 2, unit=2) == [0xFFFF, 0xFF85]  # -123 as int32 ABCD
    assert plc.plants[1].speed_setpoint != 2400


async def test_a_device_with_other_line_settings_on_the_same_port_is_refused_and_the_others_work(
    pair: PtyPair, plc: ModbusPlc
) -> None:
    first = rtu_device("plc1", pair.device, [name_point("pump1/name", 1)])
    other = rtu_device("plc2", pair.device, [name_point("pump2/name", 2)], baudrate=9600)
    async with running(first) as (_, sink):
        await sink.wait_for(good(["pump1/name"]), within=3)
        async with running(other) as ((refused,), other_sink):
            await other_sink.wait_for(lambda latest: "pump2/name" in latest, within=3)
            assert refused.health().errors["link_down"] >= 1
        assert len(BUSES) == 1
        reason = other_sink.latest["pump2/name"].reason
        assert reason.startswith("link down") and "9600 8N1 differs from 115200 8N1 set by plc1" in reason, reason
        sink.latest.clear()
        await sink.wait_for(good(["pump1/name"]), within=3)


# -- a fake slave that corrupts its replies ------------------------------------------------------


async def fake_slave(
    path: str,
    corrupt_every: int,
    stop: asyncio.Event,
    served: list[int],
    line: list[tuple[str, float]] | None = None,
    units: tuple[int, ...] = (1,),
    mangle: Callable[[int, bytes], bytes] | None = None,
) -> None:
    """``units`` on the instrument end of the pty: answer reads of holding registers with 0x1234 each,
    and flip a CRC bit in every ``corrupt_every``-th reply (0: never). ``mangle(n, reply)`` replaces
    the ``n``-th reply (1-based) with what it returns (b"": no answer). ``line`` records when requests
    arrived and replies left."""
    import termios
    import tty

    fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    tty.setraw(fd)
    loop = asyncio.get_running_loop()
    arrived = asyncio.Event()
    loop.add_reader(fd, arrived.set)
    buffer = b""
    try:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.05):
                    await arrived.wait()
            arrived.clear()
            with contextlib.suppress(BlockingIOError):
                buffer += os.read(fd, 256)
            while len(buffer) >= 8:
                request, buffer = buffer[:8], buffer[8:]
                if line is not None:
                    line.append(("request", loop.time()))
                unit, function, count = request[0], request[1], int.from_bytes(request[4:6], "big")
                if codec.crc16(request[:6]) != request[6:] or unit not in units or function != 3:
                    buffer = b""
                    continue
                body = bytes([unit, function, 2 * count]) + b"\x12\x34" * count
                frame = bytearray(body + codec.crc16(body))
                served.append(len(served) + 1)
                if corrupt_every and len(served) % corrupt_every == 0:
                    frame[-1] ^= 0x01
                reply = bytes(frame) if mangle is None else mangle(len(served), bytes(frame))
                if reply:
                    os.write(fd, reply)
                termios.tcdrain(fd)
                if line is not None:
                    line.append(("reply", loop.time()))
    finally:
        loop.remove_reader(fd)
        os.close(fd)


async def test_replies_with_a_bad_crc_are_counted_bad_and_survived(pair: PtyPair) -> None:
    stop, served = asyncio.Event(), list[int]()
    pts = [point("pump1/raw", "holding", 0, "uint16")]
    async with asyncio.TaskGroup() as tg:
        tg.create_task(fake_slave(str(pair.instrument), 3, stop, served), name="fake-slave")
        try:
            async with running(rtu_device("plc1", pair.device, pts, poll=0.02, timeout=0.25)) as ((driver,), sink):
                await sink.wait_for(lambda _: driver.health().errors.get("crc_error", 0) >= 3, within=4)
                await sink.wait_for(good(["pump1/raw"]), within=1)
                health = driver.health()
        finally:
            stop.set()
    assert health.errors.get("crc_error", 0) >= 3, health.errors
    crc_bad = [r for r in sink.all if r.quality is Quality.BAD]
    assert crc_bad and all(r.reason.startswith("crc error:") and r.value == 0x1234 for r in crc_bad), crc_bad
    assert health.errors.get("timeout", 0) == 0, health.errors
    assert sink.latest["pump1/raw"].value == 0x1234
    assert "failed its CRC check" in health.last_error
    assert health.connected is True


def crc_framed(body: bytes) -> bytes:
    return body + codec.crc16(body)


# Replies a broken or foreign device may put on the line instead of the answer (0x1234 in each
# register): each must be refused, counted and survived, and none may pass as a value.
BAD_REPLIES: dict[str, Callable[[bytes], bytes]] = {
    "truncated after the function code": lambda good: good[:2],
    "truncated inside the data": lambda good: good[:5],
    "wrong crc": lambda good: good[:-1] + bytes([good[-1] ^ 0xFF]),
    "another unit's reply": lambda good: crc_framed(bytes([good[0] + 1]) + good[1:3] + b"\xbe\xef" * 2),
    "another function's reply": lambda good: crc_framed(good[:1] + b"\x04" + good[2:3] + b"\xbe\xef" * 2),
    "byte count longer than the data": lambda good: crc_framed(good[:2] + bytes([good[2] + 2]) + good[3:-2]),
    "byte count shorter than asked": lambda good: crc_framed(good[:2] + b"\x02" + good[3:5]),
    "half a register more": lambda good: crc_framed(good[:2] + b"\x05" + good[3:-2] + b"\x99"),
    "line noise": lambda good: bytes(range(0xF0, 0x100)) * 4,
    "oversize: a reply followed by a second frame": lambda good: good[:3] + b"\x56\x78" * 2 + good,
    "an exception reply": lambda good: crc_framed(bytes([good[0], 0x83, 0x04])),
}


async def test_a_corpus_of_malformed_replies_is_counted_bad_and_never_passes_as_a_value(pair: PtyPair) -> None:
    """One malformed reply between good ones, for every entry of the corpus, with a 50 ms timeout."""
    corpus = list(BAD_REPLIES.values())

    def mangle(n: int, good: bytes) -> bytes:
        # odd replies are good, even ones take the next entry of the corpus until it is used up
        if n % 2 or n // 2 > len(corpus):
            return good
        return corpus[n // 2 - 1](good)

    stop, served = asyncio.Event(), list[int]()
    pts = [point("pump1/raw", "holding", 0, "uint16"), point("pump1/raw2", "holding", 1, "uint16")]
    dev = rtu_device("plc1", pair.device, pts, poll=0.02, timeout=0.05, backoff=(0.02, 0.05))
    async with asyncio.TaskGroup() as tg:
        tg.create_task(fake_slave(str(pair.instrument), 0, stop, served, mangle=mangle), name="fake-slave")
        try:
            async with running(dev) as ((driver,), sink):
                await sink.wait_for(lambda _: len(served) > 2 * len(corpus) + 4, within=10)
                sink.latest.clear()
                await sink.wait_for(good(["pump1/raw", "pump1/raw2"]), within=2)
                health = driver.health()
        finally:
            stop.set()
    accepted = [r for r in sink.all if r.quality is Quality.GOOD]
    assert accepted and all(r.value == 0x1234 for r in accepted), {r.value for r in accepted}
    bad = [r for r in sink.all if r.quality is Quality.BAD]
    # every malformed reply costs one poll: both points Bad with a reason (the last value kept, if any)
    assert len(bad) >= 2 * len(corpus), (len(bad), health.errors)
    assert all(r.reason and r.value in (None, 0x1234) for r in bad), {(r.reason, r.value) for r in bad}
    # one error per malformed reply; on a loaded machine a good reply may also miss the 50 ms timeout
    extra = sum(health.errors.values()) - len(corpus)
    assert 0 <= extra <= health.errors.get("timeout", 0), health.errors
    assert set(health.errors) <= {"timeout", "crc_error", "protocol_violation", "device_rejected"}, health.errors
    assert health.errors.get("crc_error", 0) >= 1 and health.errors.get("device_rejected", 0) >= 1, health.errors
    assert health.connected is True


async def test_two_devices_on_one_bus_keep_one_request_in_flight_and_the_frame_silence(pair: PtyPair) -> None:
    stop, served, line = asyncio.Event(), list[int](), list[tuple[str, float]]()
    slow = {"baudrate": 1200}  # a pty ignores the rate; the bus still keeps 3.5 x 10 bits / 1200 = 29 ms apart
    devices = [
        rtu_device("plc1", pair.device, [point("pump1/raw", "holding", 0, "uint16", unit_id=1)], poll=0.001, **slow),
        rtu_device("plc2", pair.device, [point("pump2/raw", "holding", 0, "uint16", unit_id=2)], poll=0.001, **slow),
    ]
    async with asyncio.TaskGroup() as tg:
        tg.create_task(fake_slave(str(pair.instrument), 0, stop, served, line, units=(1, 2)), name="fake-slave")
        try:
            async with running(*devices) as (_, sink):
                await sink.wait_for(lambda _: len(served) >= 12, within=4)
                await sink.wait_for(good(["pump1/raw", "pump2/raw"]), within=1)
        finally:
            stop.set()
    kinds = [kind for kind, _ in line]
    assert all(a != b for a, b in itertools.pairwise(kinds)), "a request was sent before the reply"
    gaps = [t2 - t1 for (k1, t1), (k2, t2) in itertools.pairwise(line) if (k1, k2) == ("reply", "request")]
    silence = codec.frame_silence(1200, parity="N")
    assert len(gaps) >= 10
    assert min(gaps) >= silence * 0.9, (min(gaps), silence)


# -- an independent client -----------------------------------------------------------------------

MBPOLL = shutil.which("mbpoll")


@pytest.mark.skipif(MBPOLL is None, reason="mbpoll is not installed")
async def test_mbpoll_reads_the_rtu_simulator(pair: PtyPair, plc: ModbusPlc) -> None:
    """An independent Modbus RTU master proves the simulator speaks real RTU on the line."""
    plc.set_registers(40, [4321, 1234], unit=2)
    args = [MBPOLL, "-m", "rtu", "-b", "115200", "-P", "none", "-a", "2", "-r", "40", "-c", "2", "-t", "4",
            "-0", "-1", "-o", "1", str(pair.device)]  # fmt: skip
    try:
        proc = await asyncio.create_subprocess_exec(*args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        out, _ = await asyncio.wait_for(proc.communicate(), 4)
    except (OSError, TimeoutError) as exc:
        pytest.skip(f"mbpoll cannot use a pty here: {exc}")
    text = out.decode(errors="replace")
    if proc.returncode != 0 and ("tcsetattr" in text or "Unable" in text or "Connection failed" in text):
        pytest.skip(f"mbpoll cannot open a pty: {text.strip()[:200]}")
    assert proc.returncode == 0, text
    assert "4321" in text and "1234" in text, text
