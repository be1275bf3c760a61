"""Keeps one driver running: restarts it with backoff and jitter when it fails, marks its points Bad
meanwhile, and never lets one driver's failure reach the others."""

from __future__ import annotations

import asyncio
import logging

from avila_edge.core import Backoff, Clock, DriverError, Quality, Reading
from avila_edge.driver import Driver, ReadingSink

logger = logging.getLogger(__name__)

HEALTHY_AFTER = 60.0
"""Seconds a driver must run without failing before its restart backoff is forgotten."""


class DriverSupervisor:
    def __init__(self, driver: Driver, sink: ReadingSink, *, clock: Clock) -> None:
        self.driver = driver
        self.sink = sink
        self.clock = clock
        self.restarts = 0
        self.last_failure = ""
        c = driver.device.timing
        self._backoff = Backoff(max(c.backoff_initial, 0.1), max(c.backoff_max, c.backoff_initial, 0.1))

    @property
    def name(self) -> str:
        return f"driver[{self.driver.device.driver}:{self.driver.device.id}]"

    async def run(self) -> None:
        """Run the driver until cancelled."""
        while True:
            started = self.clock.monotonic()
            try:
                async with self.driver:
                    await self.driver.run(self.sink)
                reason = "driver stopped by itself"
            except asyncio.CancelledError:
                raise
            except DriverError as exc:  # an outage the driver named (a port that vanished...): no traceback
                reason = f"{type(exc).__name__}: {exc}"
            except Exception as exc:
                reason = f"{type(exc).__name__}: {exc}"
                logger.exception("%s failed", self.name)
            self.restarts += 1
            self.last_failure = reason
            if self.clock.monotonic() - started > HEALTHY_AFTER:
                self._backoff.reset()
            delay = self._backoff.next_delay()
            logger.warning("%s restarting in %.1f s after: %s", self.name, delay, reason)
            await self._mark_bad(f"driver restarting: {reason}")
            await self.clock.sleep(delay)

    async def _mark_bad(self, reason: str) -> None:
        now = self.clock.now_ns()
        batch = [
            Reading(point=p.id, value=None, quality=Quality.BAD, reason=reason[:500], ts_source=now, ts_gateway=now)
            for p in self.driver.device.points
        ]
        try:
            await self.sink(batch)
        except Exception:
            logger.exception("%s: could not record its points as Bad", self.name)
