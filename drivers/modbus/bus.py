"""Modbus RTU buses: every device that names the same serial port shares one ``RtuBus``.

An RS-485 line carries one request at a time, and frames must be separated by at least 3.5
characters of silence. The bus owns the one serial connection of its port, a lock that keeps one
request in flight, and the time the line last went quiet. Devices reach it through ``RtuTransport``,
the driver's ``Transport`` for one device on a bus.

``BUSES`` is the process-wide registry, keyed by port path and reference counted: the first
device that connects opens the port, the last one that closes it closes it. Devices sharing a port
must agree on its line settings; a device that disagrees is refused with a message naming the
device that opened the port first.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from avila_edge.config.model import DeviceConfig
from avila_edge.core import LinkDown
from drivers.modbus.codec import frame_silence
from drivers.modbus.config import ModbusConnection, Parity, Table
from drivers.modbus.transport import SerialLink

logger = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class LineSettings:
    """A serial port and how its bytes are framed on the wire."""

    port: str
    baudrate: int
    parity: Parity
    stopbits: int
    bytesize: int

    @classmethod
    def of(cls, conn: ModbusConnection) -> LineSettings:
        return cls(str(conn.port), conn.baudrate, conn.parity, conn.stopbits, conn.bytesize)

    @property
    def silence(self) -> float:
        """Seconds of quiet line required between two frames."""
        return frame_silence(self.baudrate, bytesize=self.bytesize, parity=self.parity, stopbits=self.stopbits)

    def describe(self) -> str:
        return f"{self.baudrate} {self.bytesize}{self.parity}{self.stopbits}"


class RtuBus:
    """One serial port shared by the devices on it: one request in flight, frames kept apart."""

    def __init__(self, settings: LineSettings, opened_by: str) -> None:
        self.settings = settings
        self.opened_by = opened_by
        self.users = 0
        self.loop = asyncio.get_running_loop()
        self._link = SerialLink(
            settings.port,
            baudrate=settings.baudrate,
            parity=settings.parity,
            stopbits=settings.stopbits,
            bytesize=settings.bytesize,
        )
        self._lock = asyncio.Lock()
        self._quiet_since = 0.0

    @property
    def connected(self) -> bool:
        return self._link.connected

    async def connect(self, device: str, within: float) -> None:
        async with self._lock:
            if not self._link.connected:
                await self._link.connect_as(device, within)
                logger.info("modbus rtu: %s opened at %s", self.settings.port, self.settings.describe())

    async def call(self, within: float, request: Callable[[SerialLink], Awaitable[T]]) -> T:
        """Run one request on the line once the previous frame is ``silence`` in the past."""
        async with self._lock:
            wait = self._quiet_since + self.settings.silence - self.loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            self._link.set_timeout(within)
            self._link.discard_input()
            try:
                return await request(self._link)
            finally:
                self._quiet_since = self.loop.time()

    def discard_late_replies(self) -> None:
        self._link.discard_input()

    def close(self) -> None:
        self._link.close()


class BusRegistry:
    """The open RTU buses of this process by port path, each counting the devices that use it."""

    def __init__(self) -> None:
        self._buses: dict[str, RtuBus] = {}

    def acquire(self, device: str, settings: LineSettings) -> RtuBus:
        bus = self._buses.get(settings.port)
        if bus is not None and (bus.loop.is_closed() or bus.loop is not asyncio.get_running_loop()):
            bus = None  # left behind by an event loop that is gone
        if bus is None:
            bus = self._buses[settings.port] = RtuBus(settings, device)
        elif bus.settings != settings:
            raise LinkDown(
                device,
                f"open {settings.port}",
                f"{settings.describe()} differs from {bus.settings.describe()} set by {bus.opened_by} on the same "
                "bus; every device on one port needs the same baudrate, parity, stopbits and bytesize",
            )
        bus.users += 1
        return bus

    def release(self, bus: RtuBus) -> None:
        bus.users -= 1
        if bus.users <= 0:
            bus.close()
            if self._buses.get(bus.settings.port) is bus:
                del self._buses[bus.settings.port]

    def __len__(self) -> int:
        return len(self._buses)


BUSES = BusRegistry()


class RtuTransport:
    """One device's share of an RTU bus: the driver's ``Transport`` for ``transport: rtu``."""

    shared_bus = True

    def __init__(self, device: DeviceConfig, *, registry: BusRegistry = BUSES) -> None:
        self.device = device.id
        self.settings = LineSettings.of(device.connection)
        self.endpoint = f"{self.settings.port} ({self.settings.describe()})"
        self.timeout = device.timing.timeout
        self._registry = registry
        self._bus: RtuBus | None = None

    @property
    def connected(self) -> bool:
        return self._bus is not None and self._bus.connected

    async def connect(self) -> None:
        if self._bus is None:
            self._bus = self._registry.acquire(self.device, self.settings)
        await self._bus.connect(self.device, self.timeout)

    def close(self) -> None:
        bus, self._bus = self._bus, None
        if bus is not None:
            self._registry.release(bus)

    def after_timeout(self) -> None:
        if self._bus is not None:
            self._bus.discard_late_replies()

    def _on_bus(self, what: str) -> RtuBus:
        if self._bus is None:
            raise LinkDown(self.device, what, f"not connected to {self.settings.port}")
        return self._bus

    async def read(self, unit: int, table: Table, start: int, count: int) -> list[int] | list[bool]:
        bus = self._on_bus(f"read unit {unit} {table} {start}")
        d, t = self.device, self.timeout
        return await bus.call(t, lambda link: link.read_as(d, t, unit, table, start, count))

    async def write_registers(self, unit: int, address: int, values: Sequence[int]) -> None:
        bus = self._on_bus(f"write unit {unit} holding {address}")
        d, t = self.device, self.timeout
        await bus.call(t, lambda link: link.write_registers_as(d, t, unit, address, values))

    async def write_coils(self, unit: int, address: int, values: Sequence[bool]) -> None:
        bus = self._on_bus(f"write unit {unit} coil {address}")
        d, t = self.device, self.timeout
        await bus.call(t, lambda link: link.write_coils_as(d, t, unit, address, values))
