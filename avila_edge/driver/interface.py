"""The small interface every southbound driver implements, and its health record."""

from __future__ import annotations

import abc
from collections.abc import Awaitable, Callable, Sequence
from types import TracebackType
from typing import Self

import msgspec

from avila_edge.config.model import DeviceConfig, PointConfig
from avila_edge.core import Clock, DeviceRejected, DriverError, Reading, Value

ReadingSink = Callable[[Sequence[Reading]], Awaitable[None]]
"""Where a driver hands its readings, a batch at a time; returns once the batch is accepted."""


class HealthSnapshot(msgspec.Struct, frozen=True, kw_only=True):
    """A driver's health at one moment, as shown in ``/status`` and ``/metrics``."""

    device: str
    driver: str
    connected: bool
    last_success_ns: int | None
    last_error: str
    errors: dict[str, int]
    requests: int
    last_poll_seconds: float


class DriverHealth:
    """Mutable health counters a driver updates as it works; read through ``snapshot()``."""

    __slots__ = (
        "connected",
        "device",
        "driver",
        "errors",
        "last_error",
        "last_poll_seconds",
        "last_success_ns",
        "requests",
    )

    def __init__(self, device: str, driver: str) -> None:
        self.device = device
        self.driver = driver
        self.connected = False
        self.last_success_ns: int | None = None
        self.last_error = ""
        self.errors: dict[str, int] = {}
        self.requests = 0
        self.last_poll_seconds = 0.0

    def success(self, now_ns: int) -> None:
        self.connected = True
        self.last_success_ns = now_ns

    def failure(self, error: DriverError) -> None:
        self.errors[error.kind] = self.errors.get(error.kind, 0) + 1
        self.last_error = str(error)

    def count(self, kind: str) -> None:
        """Count an error that did not raise (a malformed frame that was survived, for example)."""
        self.errors[kind] = self.errors.get(kind, 0) + 1

    def snapshot(self) -> HealthSnapshot:
        return HealthSnapshot(
            device=self.device,
            driver=self.driver,
            connected=self.connected,
            last_success_ns=self.last_success_ns,
            last_error=self.last_error,
            errors=dict(self.errors),
            requests=self.requests,
            last_poll_seconds=self.last_poll_seconds,
        )


class Driver(abc.ABC):
    """A connection to one device (or one bus), used as ``async with driver: await driver.run(sink)``.

    Contract:
    - ``start`` prepares resources; it must not fail because the device is unreachable (``run``
      reconnects with backoff and reports the device's points Bad meanwhile).
    - ``run`` produces readings into ``sink`` until cancelled. Link loss, timeouts and device errors
      become Bad readings with a reason. A driver whose whole resource is gone (a serial port that
      vanished) may instead raise a ``DriverError`` naming it: the supervisor marks the device's points
      Bad with that reason and restarts the driver with backoff and jitter. Any other exception that
      escapes is a bug, restarted the same way and logged with its traceback.
    - ``write`` sets one writable point (engineering value) and raises a ``DriverError`` on failure.
    - ``health`` is cheap and never blocks.
    """

    def __init__(self, device: DeviceConfig, *, clock: Clock) -> None:
        self.device = device
        self.clock = clock
        self._health = DriverHealth(device.id, device.driver)
        self._points = {p.id: p for p in device.points}

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def start(self) -> None:  # noqa: B027 - optional hook
        """Prepare resources (no network I/O that can fail on an absent device)."""

    async def stop(self) -> None:  # noqa: B027 - optional hook
        """Release every resource; must be safe to call after a failed start."""

    @abc.abstractmethod
    async def run(self, sink: ReadingSink) -> None:
        """Produce readings into ``sink`` until cancelled."""

    def writable_point(self, point_id: str) -> PointConfig:
        """The configured point ``point_id`` of this device, or ``DeviceRejected`` naming why it cannot
        be written (not on this device, not marked ``writable: true``)."""
        point = self._points.get(point_id)
        if point is None:
            raise DeviceRejected(self.device.id, f"write {point_id}", "no such point on this device")
        if not point.writable:
            raise DeviceRejected(self.device.id, f"write {point_id}", "the point is not writable (set writable: true)")
        return point

    async def write(self, point_id: str, value: Value) -> None:
        """Write ``value`` to a writable point."""
        raise DeviceRejected(self.device.id, f"write {point_id}", "this driver does not support writes")

    def health(self) -> HealthSnapshot:
        return self._health.snapshot()
