"""A failing driver is restarted with growing backoff while the others keep producing."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Sequence

from avila_edge.config.model import DeviceConfig, PointConfig, TimingConfig
from avila_edge.core import ManualClock, Quality, Reading
from avila_edge.driver import Driver, ReadingSink
from avila_edge.runtime.supervisor import DriverSupervisor


def device(name: str) -> DeviceConfig:
    return DeviceConfig(id=name, driver="test", connection=None, points=(PointConfig(id=f"{name}/x", address=None),),
                        timing=TimingConfig(backoff_initial=1.0, backoff_max=8.0))  # fmt: skip


class Crashing(Driver):
    """A driver with a bug: it raises right after starting."""

    starts = 0

    async def run(self, sink: ReadingSink) -> None:
        Crashing.starts += 1
        raise RuntimeError("bug in driver")


class Steady(Driver):
    async def run(self, sink: ReadingSink) -> None:
        while True:
            now = self.clock.now_ns()
            await sink([Reading(point="b/x", value=1.0, ts_source=now, ts_gateway=now)])
            await self.clock.sleep(1.0)


async def test_crashing_driver_restarts_with_growing_backoff_and_others_continue() -> None:
    clock = ManualClock()
    seen: list[Reading] = []

    async def sink(batch: Sequence[Reading]) -> None:
        seen.extend(batch)

    bad = DriverSupervisor(Crashing(device("a"), clock=clock), sink, clock=clock)
    good = DriverSupervisor(Steady(device("b"), clock=clock), sink, clock=clock)
    async with asyncio.TaskGroup() as tg:
        tasks = [tg.create_task(bad.run()), tg.create_task(good.run())]
        starts_at: list[float] = []
        for _ in range(400):
            before = Crashing.starts
            await asyncio.sleep(0)
            if Crashing.starts != before:
                starts_at.append(clock.monotonic())
            clock.advance(0.1)
        for t in tasks:
            t.cancel()
    gaps = [b - a for a, b in itertools.pairwise(starts_at)]
    assert len(starts_at) >= 4
    assert gaps[-1] > gaps[0]  # backoff grows
    assert all(g <= 8.0 + 0.2 for g in gaps)  # and is capped
    a_readings = [r for r in seen if r.point == "a/x"]
    assert a_readings and all(r.quality is Quality.BAD for r in a_readings)
    assert a_readings[0].reason.startswith("driver restarting: RuntimeError: bug in driver")
    assert sum(1 for r in seen if r.point == "b/x" and r.quality is Quality.GOOD) >= 35
    assert bad.restarts == len(starts_at)
