"""The Modbus driver: polls planned blocks on their intervals, turns replies into Readings, writes.

Over TCP a device has its own connection. Over RTU the devices on one serial port share a bus
(``drivers.modbus.bus``); a unit that stops answering is then skipped for a growing, jittered
interval (``Backoff`` from ``timing.backoff_initial`` to ``timing.backoff_max``) so that it costs
the bus one timeout per interval instead of one per poll, and asked again when the interval ends.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from avila_edge.config.model import DataType, DeviceConfig
from avila_edge.core import Backoff, Clock, DeviceRejected, DriverError, LinkDown, Reading, Timeout, Value, bad
from avila_edge.driver import Driver, ReadingSink
from avila_edge.driver.scaling import scaled
from drivers.modbus import codec
from drivers.modbus.config import ModbusAddress, ModbusConnection
from drivers.modbus.planner import plan
from drivers.modbus.transport import CrcError, TcpTransport, Transport

logger = logging.getLogger(__name__)

TransportFactory = Callable[[DeviceConfig], Transport]


def tcp_transport(device: DeviceConfig) -> Transport:
    conn: ModbusConnection = device.connection
    assert conn.host is not None, "check_device requires a host for tcp"
    assert isinstance(conn.port, int), "check_device requires a TCP port number"
    return TcpTransport(device.id, conn.host, conn.port, timeout=device.timing.timeout)


def default_transport(device: DeviceConfig) -> Transport:
    """A TCP connection, or this device's share of the RTU bus on its serial port."""
    conn: ModbusConnection = device.connection
    if conn.transport == "rtu":
        from drivers.modbus.bus import RtuTransport  # noqa: PLC0415

        return RtuTransport(device)
    return tcp_transport(device)


class ModbusDriver(Driver):
    """Reads and writes the points of one Modbus device (several unit ids may sit behind it)."""

    def __init__(self, device: DeviceConfig, *, clock: Clock, transport: TransportFactory = default_transport) -> None:
        super().__init__(device, clock=clock)
        self.blocks = plan(device)
        self._transport = transport(device)
        self._backoff = Backoff(device.timing.backoff_initial, device.timing.backoff_max)
        self._last_good: dict[int, list[Value | None]] = {}
        """Per block (by index), once it answered: each point's last good value, in the block's order
        (a Bad reading carries it). A list per block, not a dict entry per point."""
        self._decoders: dict[int, tuple[Callable[[bytes], Value], ...]] = {}
        """Per register block (by index): its points' decoders in order, prepared on its first reply
        (the plan, hence every offset, is fixed; equal decoders are shared, see ``codec.decoder``)."""
        self._unit_backoff: dict[int, Backoff] = {}
        self._unit_skipped_until: dict[int, float] = {}

    async def stop(self) -> None:
        self._transport.close()
        self._health.connected = False

    async def run(self, sink: ReadingSink) -> None:
        due = dict.fromkeys(range(len(self.blocks)), 0.0)
        task = asyncio.current_task()
        while True:
            if task is not None and task.cancelling():
                raise asyncio.CancelledError  # a swallowed cancellation must still stop the driver
            if not self._transport.connected:
                await self._connect(sink)
                continue
            now = self.clock.monotonic()
            ready = [i for i, t in due.items() if t <= now]
            if not ready:
                await self.clock.sleep(min(due.values()) - now)
                continue
            started = time.perf_counter()
            batch: list[Reading] = []
            for i in ready:
                block = self.blocks[i]
                skipped_until = self._unit_skipped_until.get(block.unit, 0.0)
                if skipped_until > now:
                    due[i] = skipped_until  # a silent unit on a shared bus: its points stay Bad meanwhile
                    continue
                following = due[i] + block.interval
                due[i] = following if following > now else now + block.interval  # missed cycles are skipped
                batch.extend(await self._poll(i))
                if not self._link_up():
                    break
            self._health.last_poll_seconds = time.perf_counter() - started
            if batch:
                await sink(batch)

    def _link_up(self) -> bool:
        return self._transport.connected

    async def _connect(self, sink: ReadingSink) -> None:
        try:
            await self._transport.connect()
        except LinkDown as exc:
            self._health.failure(exc)
            self._health.connected = False
            await sink(self._bad_all(f"link down: {exc.detail}"))
            delay = self._backoff.next_delay()
            logger.warning("%s; retrying in %.1f s", exc, delay)
            await self.clock.sleep(delay)
            return
        self._backoff.reset()
        self._health.connected = True
        logger.info("%s: connected to %s", self.device.id, getattr(self._transport, "endpoint", "device"))

    async def _poll(self, index: int) -> list[Reading]:
        block = self.blocks[index]
        attempts = self.device.timing.retries + 1
        error: DriverError | None = None
        for _ in range(attempts):
            self._health.requests += 1
            try:
                values = await self._transport.read(block.unit, block.table, block.start, block.count)
            except DriverError as exc:
                error = exc
                self._health.failure(exc)
                if isinstance(exc, LinkDown):
                    self._health.connected = False
                    break
                if isinstance(exc, DeviceRejected):
                    break
                continue
            now = self.clock.now_ns()
            self._health.success(now)
            self._unit_answered(block.unit)
            return self._decode(index, values, now)
        assert error is not None
        if isinstance(error, Timeout):
            self._transport.after_timeout()  # a late reply must not be taken for the next request's
            self._health.connected = self._transport.connected
            self._unit_silent(block.unit)
        reason = _reason(error)
        logger.warning("%s", error)
        now = self.clock.now_ns()
        return self._bad_block(index, reason, now)

    def _decode(self, index: int, values: list[int] | list[bool], now: int) -> list[Reading]:
        block = self.blocks[index]
        out: list[Reading] = []
        last = self._last_good.get(index)
        if last is None:
            last = self._last_good[index] = [None] * len(block.points)
        if block.table in codec.BIT_TABLES:
            for k, (point, offset) in enumerate(zip(block.points, block.offsets, strict=True)):
                bit = bool(values[offset])
                last[k] = bit  # a Bad reading after a link loss carries it, as registers do
                out.append(Reading(point=point.id, value=bit, ts_source=now, ts_gateway=now))
            return out
        raw_block = codec.registers_to_bytes([int(v) for v in values])
        decoders = self._decoders.get(index)
        if decoders is None:
            decoders = self._decoders[index] = tuple(
                scaled(codec.decoder(p.type, p.address, offset), p)
                for p, offset in zip(block.points, block.offsets, strict=True)
            )
        for k, (point, decode) in enumerate(zip(block.points, decoders, strict=True)):
            try:
                value = decode(raw_block)
            except (ValueError, OverflowError) as exc:
                self._health.count("protocol_violation")
                out.append(bad(point.id, f"cannot decode {point.type.value}: {exc}", ts_source=now, ts_gateway=now,
                               value=last[k]))  # fmt: skip
                continue
            if value != value:  # noqa: PLR0124 - NaN, the one value unequal to itself (cheaper than isnan)
                out.append(bad(point.id, "device sent NaN", ts_source=now, ts_gateway=now, value=last[k]))
                continue
            last[k] = value
            out.append(Reading(point=point.id, value=value, ts_source=now, ts_gateway=now))
        return out

    def _unit_silent(self, unit: int) -> None:
        if not self._transport.shared_bus:
            return
        timing = self.device.timing
        backoff = self._unit_backoff.setdefault(unit, Backoff(timing.backoff_initial, timing.backoff_max))
        delay = backoff.next_delay()
        self._unit_skipped_until[unit] = self.clock.monotonic() + delay
        logger.info("%s: unit %d does not answer; skipped on the bus for %.2f s", self.device.id, unit, delay)

    def _unit_answered(self, unit: int) -> None:
        if self._unit_skipped_until.pop(unit, None) is not None:
            self._unit_backoff[unit].reset()
            logger.info("%s: unit %d answers again", self.device.id, unit)

    def unit_backed_off(self, unit: int) -> bool:
        """True while a silent unit is being skipped on its bus."""
        return self._unit_skipped_until.get(unit, 0.0) > self.clock.monotonic()

    def _bad_block(self, index: int, reason: str, now: int) -> list[Reading]:
        """Every point of block ``index`` Bad with ``reason``, each with its last good value."""
        points = self.blocks[index].points
        last = self._last_good.get(index) or [None] * len(points)
        return [bad(p.id, reason, ts_source=now, ts_gateway=now, value=v) for p, v in zip(points, last, strict=True)]

    def _bad_all(self, reason: str) -> list[Reading]:
        now = self.clock.now_ns()
        return [r for i in range(len(self.blocks)) for r in self._bad_block(i, reason, now)]

    async def write(self, point_id: str, value: Value) -> None:
        point = self.writable_point(point_id)
        op = f"write {point_id}"
        address: ModbusAddress = point.address
        conn: ModbusConnection = self.device.connection
        unit = address.unit_id if address.unit_id is not None else conn.unit_id
        if address.table == "coil":
            await self._transport.write_coils(unit, address.address, [bool(value)])
            return
        if address.table != "holding":
            raise DeviceRejected(self.device.id, op, f"{address.table} registers are read-only")
        try:
            raw = codec.from_engineering(value, point)
            if address.bit is not None:
                current = await self._transport.read(unit, "holding", address.address, 1)
                word = int(current[0])
                word = word | (1 << address.bit) if raw else word & ~(1 << address.bit)
                registers = [word]
            else:
                registers = codec.encode_raw(raw, point.type, address)
        except codec.CodecError as exc:
            raise DeviceRejected(self.device.id, op, str(exc)) from exc
        await self._transport.write_registers(unit, address.address, registers)


def _reason(error: DriverError) -> str:
    if isinstance(error, LinkDown):
        return f"link down: {error.detail}"
    if isinstance(error, Timeout):
        return f"timeout: {error.detail}"
    if isinstance(error, DeviceRejected):
        return f"device rejected: {error.detail}"
    if isinstance(error, CrcError):
        return f"crc error: {error.detail}"
    return f"protocol violation: {error.detail}"


def check_device(device: DeviceConfig) -> list[tuple[str, str]]:
    """Cross-field problems in a Modbus device's configuration."""
    problems: list[tuple[str, str]] = []
    conn: ModbusConnection = device.connection
    units = _RTU_UNITS if conn.transport == "rtu" else _TCP_UNITS
    problems += _check_rtu(conn) if conn.transport == "rtu" else _check_tcp(conn)
    if conn.unit_id not in units:
        problems.append(("connection.unit_id", _unit_message(conn.transport)))
    if not 1 <= conn.max_block_registers <= 125:
        problems.append(("connection.max_block_registers", "must be between 1 and 125 (the protocol limit)"))
    if not 1 <= conn.max_block_bits <= 2000:
        problems.append(("connection.max_block_bits", "must be between 1 and 2000 (the protocol limit)"))
    if conn.max_gap < 0:
        problems.append(("connection.max_gap", "must be 0 or more"))
    for i, point in enumerate(device.points):
        a: ModbusAddress = point.address
        here = f"points[{i}]"
        if a.unit_id is not None and a.unit_id not in units:
            problems.append((f"{here}.address.unit_id", _unit_message(conn.transport)))
        if a.table in codec.BIT_TABLES:
            if point.type is not DataType.BOOL:
                problems.append((f"{here}.type", f"a {a.table} holds a bool, not {point.type.value}"))
            if a.bit is not None:
                problems.append((f"{here}.address.bit", f"bit only applies to registers, not to a {a.table}"))
        elif a.bit is not None:
            if not 0 <= a.bit <= 15:
                problems.append((f"{here}.address.bit", "must be between 0 and 15"))
            if point.type is not DataType.BOOL:
                problems.append((f"{here}.type", "a bit in a register is a bool"))
        if point.type is DataType.STRING and not a.length:
            problems.append((f"{here}.address.length", "a string needs its length in registers"))
        count = codec.register_count(point.type, a)
        limit = 65536
        if not a.address >= 0 or a.address + count > limit:
            problems.append(
                (f"{here}.address.address", f"registers {a.address}..{a.address + count - 1} are outside 0..65535")
            )
        if count > conn.max_block_registers and a.table not in codec.BIT_TABLES:
            problems.append(
                (f"{here}.address.length", f"{count} registers exceed one request ({conn.max_block_registers})")
            )
        if point.writable and a.table in ("input", "discrete"):
            problems.append((f"{here}.writable", f"{a.table} registers are read-only in Modbus"))
    return problems


_TCP_UNITS = range(256)
_RTU_UNITS = range(1, 248)
_BAUDRATES = (1200, 2400, 4800, 9600, 14400, 19200, 38400, 57600, 115200, 230400, 460800, 921600)


def _unit_message(transport: str) -> str:
    if transport == "rtu":
        return "must be between 1 and 247 on a serial line (0 is broadcast, which no device answers)"
    return "must be between 0 and 255"


def _check_tcp(conn: ModbusConnection) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    if not conn.host:
        problems.append(("connection.host", "transport: tcp needs the device's host (name or address)"))
    if not isinstance(conn.port, int):
        problems.append(("connection.port", "expected a whole number, got text"))
    elif not 1 <= conn.port <= 65535:
        problems.append(("connection.port", "must be between 1 and 65535"))
    return problems


def _check_rtu(conn: ModbusConnection) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    if conn.host is not None:
        problems.append(("connection.host", "transport: rtu has no host; name the serial device in port"))
    if not isinstance(conn.port, str) or not conn.port.strip():
        problems.append(("connection.port", "transport: rtu needs the serial device path, e.g. /dev/ttyUSB0"))
    if conn.baudrate not in _BAUDRATES:
        problems.append(("connection.baudrate", f"use one of {', '.join(map(str, _BAUDRATES))}"))
    if conn.stopbits not in (1, 2):
        problems.append(("connection.stopbits", "use 1 or 2"))
    if conn.bytesize not in (7, 8):
        problems.append(("connection.bytesize", "use 8 (Modbus RTU), or 7 for devices that insist"))
    return problems
