"""Supervision beyond the first crash: backoff forgotten after a healthy run, clean stop, a driver that returns."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from avila_edge.config.model import DeviceConfig, PointConfig, TimingConfig
from avila_edge.core import ManualClock, Quality, Reading
from avila_edge.driver import Driver, ReadingSink
from avila_edge.runtime.supervisor import HEALTHY_AFTER, DriverSupervisor

STEP = 0.1


def device(name: str) -> DeviceConfig:
    return DeviceConfig(id=name, driver="test", connection=None, points=(PointConfig(id=f"{name}/x", address=None),),
                        timing=TimingConfig(backoff_initial=1.0, backoff_max=8.0))  # fmt: skip


class Scripted(Driver):
    """Runs for the scripted number of seconds, then fails; after the script it runs until stopped."""

    def __init__(self, device: DeviceConfig, *, clock: ManualClock, script: Sequence[float]) -> None:
        super().__init__(device, clock=clock)
        self.script = list(script)
        self.starts: list[float] = []
        self.failures: list[float] = []
        self.stopped = 0

    async def stop(self) -> None:
        self.stopped += 1

    async def run(self, sink: ReadingSink) -> None:
        attempt = len(self.starts)
        self.starts.append(self.clock.monotonic())
        if attempt >= len(self.script):
            await asyncio.Event().wait()
        if self.script[attempt] > 0:
            await self.clock.sleep(self.script[attempt])
        self.failures.append(self.clock.monotonic())
        raise RuntimeError(f"failure {attempt}")


class Sink:
    def __init__(self) -> None:
        self.readings: list[Reading] = []

    async def __call__(self, batch: Sequence[Reading]) -> None:
        self.readings.extend(batch)


async def drive(clock: ManualClock, seconds: float) -> None:
    """Move the manual clock forward in small steps, letting every task run between them."""
    for _ in range(round(seconds / STEP)):
        for _ in range(5):
            await asyncio.sleep(0)
        clock.advance(STEP)


async def test_backoff_starts_over_after_the_driver_ran_healthy_for_a_while() -> None:
    clock = ManualClock()
    driver = Scripted(device("a"), clock=clock, script=[0, 0, 0, 0, HEALTHY_AFTER + 10, 0])
    supervisor = DriverSupervisor(driver, Sink(), clock=clock)
    async with asyncio.TaskGroup() as tg:
        task = tg.create_task(supervisor.run())
        await drive(clock, 1 + 2 + 4 + 8 + HEALTHY_AFTER + 10 + 1 + 2)
        task.cancel()
    delays = [start - failed for failed, start in zip(driver.failures, driver.starts[1:], strict=False)]
    assert len(delays) == 6
    for delay, ceiling in zip(delays[:4], (1, 2, 4, 8), strict=True):  # full jitter in [ceiling/2, ceiling]
        assert ceiling / 2 - STEP <= delay <= ceiling + STEP
    assert delays[4] <= 1 + STEP  # after a healthy run the first delay again, not 8 s
    assert 1 - STEP <= delays[5] <= 2 + STEP  # and growing from there


async def test_cancelling_the_supervisor_stops_the_driver_and_does_not_restart_it() -> None:
    clock = ManualClock()
    driver = Scripted(device("a"), clock=clock, script=[])
    supervisor = DriverSupervisor(driver, Sink(), clock=clock)
    async with asyncio.TaskGroup() as tg:
        task = tg.create_task(supervisor.run())
        await drive(clock, 1)
        task.cancel()
    assert task.cancelled()
    assert driver.stopped == 1
    assert len(driver.starts) == 1
    assert supervisor.restarts == 0


class Returning(Driver):
    async def run(self, sink: ReadingSink) -> None:
        return


async def test_a_driver_whose_run_returns_is_restarted_and_its_points_go_bad() -> None:
    clock = ManualClock()
    sink = Sink()
    supervisor = DriverSupervisor(Returning(device("a"), clock=clock), sink, clock=clock)
    async with asyncio.TaskGroup() as tg:
        task = tg.create_task(supervisor.run())
        await drive(clock, 3)
        task.cancel()
    assert supervisor.restarts >= 2
    assert supervisor.last_failure == "driver stopped by itself"
    assert sink.readings
    assert {(r.point, r.quality, r.reason) for r in sink.readings} == {
        ("a/x", Quality.BAD, "driver restarting: driver stopped by itself")
    }


async def test_a_sink_that_fails_while_marking_points_bad_does_not_stop_the_restarts(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = ManualClock()

    async def broken_sink(batch: Sequence[Reading]) -> None:
        raise OSError("journal disk gone")

    driver = Scripted(device("a"), clock=clock, script=[0, 0])
    supervisor = DriverSupervisor(driver, broken_sink, clock=clock)
    async with asyncio.TaskGroup() as tg:
        task = tg.create_task(supervisor.run())
        await drive(clock, 1 + 2 + 1)
        task.cancel()
    assert len(driver.starts) == 3
    assert "driver[test:a]: could not record its points as Bad" in caplog.text
