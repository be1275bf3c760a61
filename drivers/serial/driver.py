"""The serial driver: reads a line instrument (text lines, regex frames or NMEA 0183), optionally polls
it with a request, writes command templates, and reports a lost port as ``LinkDown``.

One session is one open port. When the port cannot be opened or goes away (cable pulled, adapter
unplugged), ``run`` records the failure and raises ``LinkDown``: the supervisor marks the points Bad
with the reason, waits with jittered backoff and runs the driver again, which reopens the port.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Final

from avila_edge.config.model import DeviceConfig
from avila_edge.core import Clock, DeviceRejected, DriverError, LinkDown, Value
from avila_edge.driver import Driver, ReadingSink
from drivers.serial import codec
from drivers.serial.codec import LineError
from drivers.serial.config import SerialAddress, SerialConnection
from drivers.serial.intake import Intake
from drivers.serial.transport import Port, open_port

logger = logging.getLogger(__name__)

PortOpener = Callable[[DeviceConfig], Awaitable[Port]]

MAX_TICK: Final = 0.25
"""Longest wait between two idle-timeout checks, in seconds."""


async def serial_port(device: DeviceConfig) -> Port:
    return await open_port(device.id, device.connection, deadline=device.timing.timeout)


class SerialDriver(Driver):
    """One serial line instrument."""

    def __init__(self, device: DeviceConfig, *, clock: Clock, opener: PortOpener = serial_port) -> None:
        super().__init__(device, clock=clock)
        self.conn: SerialConnection = device.connection
        self.intake = Intake(device, self._health)
        self._open = opener
        self._port: Port | None = None
        self._tick = max(0.02, min(MAX_TICK, self.conn.idle_timeout / 5))

    async def stop(self) -> None:
        port, self._port = self._port, None
        if port is not None:
            port.close()
        self._health.connected = False

    async def run(self, sink: ReadingSink) -> None:
        try:
            port = await self._open(self.device)
        except DriverError as exc:
            self._lost(exc)
            raise
        self._port = port
        self._health.success(self.clock.now_ns())
        logger.info("%s: opened %s (%s framing)", self.device.id, self.conn.port, self.conn.framing)
        try:
            await self._session(port, sink)
        except DriverError as exc:
            self._lost(exc)
            raise
        finally:
            self._port = None
            port.close()

    def _lost(self, exc: DriverError) -> None:
        self._health.failure(exc)
        self._health.connected = False
        logger.warning("%s", exc)

    async def _session(self, port: Port, sink: ReadingSink) -> None:
        clock = self.clock
        poll = self.conn.poll_bytes
        interval = self.device.timing.poll_interval
        started = clock.monotonic()
        self.intake.restart(started)
        last_bytes = started
        next_poll = started
        while True:
            now = clock.monotonic()
            if poll is not None and now >= next_poll:
                await port.write(poll)
                self._health.requests += 1
                next_poll += interval
                if next_poll <= now:  # late: missed polls are skipped, not sent in a burst
                    next_poll = now + interval
            wait = self._tick if poll is None else min(self._tick, max(0.0, next_poll - now))
            chunk = b""
            try:
                async with asyncio.timeout(wait):
                    chunk = await port.read()
            except TimeoutError:
                pass
            now = clock.monotonic()
            now_ns = clock.now_ns()
            if chunk:
                last_bytes = now
                began = time.perf_counter()
                readings = self.intake.feed(chunk, now_ns, now)
                self._health.last_poll_seconds = time.perf_counter() - began
                if readings:
                    await sink(readings)
            stale = self.intake.stale(now_ns, now, now - last_bytes)
            if stale:
                await sink(stale)

    # -- writes --------------------------------------------------------------------------------------

    async def write(self, point_id: str, value: Value) -> None:
        point = self._points.get(point_id)
        op = f"write {point_id}"
        if point is None:
            raise DeviceRejected(self.device.id, op, "no such point on this device")
        a: SerialAddress = point.address
        if not point.writable or a.command is None:
            raise DeviceRejected(self.device.id, op, "the point is not writable (set writable: true and a command)")
        port = self._port
        if port is None:
            raise LinkDown(self.device.id, op, f"{self.conn.port} is not open")
        try:
            data = codec.render_command(a.command, codec.command_value(value, point), self.conn.encoding)
        except LineError as exc:
            raise DeviceRejected(self.device.id, op, str(exc)) from exc
        try:
            await port.write(data)
        except DriverError as exc:
            raise type(exc)(self.device.id, op, f"{exc.operation}: {exc.detail}") from exc
        logger.info("%s: wrote %s to %s", self.device.id, codec.excerpt(data), self.conn.port)


__all__ = ["SerialDriver"]
