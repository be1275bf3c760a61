"""What driver tests share: a reading sink that records, running a driver in a task group, and reading a
device's health from a running gateway's ``/status`` and ``/metrics``."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, TypeVar

import aiohttp
import msgspec
from prometheus_client.parser import text_string_to_metric_families

from avila_edge.core import Quality, Reading
from avila_edge.driver import Driver
from avila_edge.journal import EntryKind, Journal

D = TypeVar("D", bound=Driver)


class Collector:
    """A reading sink that keeps every reading and the latest one per point.

    ``within`` is the default deadline of the ``wait_*`` helpers (slower protocols use longer ones)."""

    def __init__(self, within: float = 10.0) -> None:
        self.within = within
        self.all: list[Reading] = []
        self.latest: dict[str, Reading] = {}
        self.changed = asyncio.Event()

    async def __call__(self, batch: Sequence[Reading]) -> None:
        for r in batch:
            self.all.append(r)
            self.latest[r.point] = r
        self.changed.set()

    def of(self, point_id: str) -> list[Reading]:
        return [r for r in self.all if r.point == point_id]

    async def wait_for(self, predicate: Callable[[Collector], bool], within: float | None = None) -> None:
        async with asyncio.timeout(self.within if within is None else within):
            while not predicate(self):
                self.changed.clear()
                await self.changed.wait()

    async def wait_value(self, point_id: str, value: Any, within: float | None = None) -> Reading:
        def seen(c: Collector) -> bool:
            r = c.latest.get(point_id)
            return r is not None and r.value == value and r.quality is Quality.GOOD

        await self.wait_for(seen, within)
        return self.latest[point_id]

    async def wait_quality(self, point_id: str, quality: Quality, within: float | None = None) -> Reading:
        def seen(c: Collector) -> bool:
            r = c.latest.get(point_id)
            return r is not None and r.quality is quality

        await self.wait_for(seen, within)
        return self.latest[point_id]


async def wait_connected(driver: Driver, within: float) -> None:
    async with asyncio.timeout(within):
        while not driver.health().connected:
            await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def run_driver(driver: D, *, connected: bool, within: float) -> AsyncIterator[tuple[D, Collector]]:
    """Run ``driver`` in a task group; wait until it is connected (unless ``connected=False``)."""
    sink = Collector(within)
    async with driver, asyncio.TaskGroup() as tg:
        task = tg.create_task(driver.run(sink), name=f"driver[{driver.device.driver}:{driver.device.id}].run")
        try:
            if connected:
                await wait_connected(driver, within)
            yield driver, sink
        finally:
            task.cancel()


class HttpHealth(msgspec.Struct, frozen=True):
    """One device's health as a running gateway serves it: its ``/status`` entry and its ``/metrics``."""

    status: dict[str, Any]
    connected: float
    errors: dict[str, float]


async def http_health(base_url: str, device: str) -> HttpHealth:
    """Read ``device``'s health from ``/status`` and ``/metrics`` of the gateway at ``base_url``."""
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{base_url}/status") as r:
            assert r.status == 200, await r.text()
            status = await r.json()
        async with http.get(f"{base_url}/metrics") as r:
            assert r.status == 200, await r.text()
            text = await r.text()
    (entry,) = [d for d in status["drivers"] if d["device"] == device]
    connected, errors = -1.0, {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.labels.get("device") != device:
                continue
            if s.name == "avila_edge_driver_connected":
                connected = s.value
            elif s.name == "avila_edge_driver_errors_total":
                errors[s.labels["kind"]] = s.value
    return HttpHealth(status=entry, connected=connected, errors=errors)


async def until_health(
    base_url: str, device: str, connected: bool, *, success_after: int = -1, within: float = 5.0
) -> HttpHealth:
    """``device``'s health over HTTP once its link is ``connected`` (and, if up, once it succeeded after
    ``success_after``, a ``last_success_ns``)."""
    async with asyncio.timeout(within):
        while True:
            h = await http_health(base_url, device)
            last = h.status["last_success_ns"]
            if h.status["connected"] is connected and (not connected or (last or -1) > success_after):
                return h
            await asyncio.sleep(0.05)


async def until_bad_then_good(journal: Journal, point: str, *, within: float = 5.0) -> list[Reading]:
    """The journaled readings of ``point`` once one was Bad and the newest is Good again."""
    async with asyncio.timeout(within):
        while True:
            await journal.flush()
            entries = await journal.read(0, 100_000, kinds=[EntryKind.READING])
            readings = [r for r in (e.reading() for e in entries) if r.point == point]
            if any(not r.good for r in readings) and readings[-1].good:
                return readings
            await asyncio.sleep(0.05)
