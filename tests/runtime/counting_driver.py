"""An in-process gateway on a tiny test driver (our own driver interface, not a library stand-in)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import msgspec

from avila_edge.config.model import (
    AssetConfig,
    DeviceConfig,
    GatewayConfig,
    HttpConfig,
    PointConfig,
    SiteConfig,
    TimingConfig,
)
from avila_edge.core import Clock, Reading
from avila_edge.driver import Driver, DriverPlugin, ReadingSink


class NoSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    pass


class Counting(Driver):
    """Publishes 0, 1, 2 ... for each of its points once per poll interval (``limit`` values, then idles)."""

    def __init__(self, device: DeviceConfig, *, clock: Clock, limit: int | None = None) -> None:
        super().__init__(device, clock=clock)
        self.limit = limit

    async def run(self, sink: ReadingSink) -> None:
        n = 0
        while self.limit is None or n < self.limit:
            now = self.clock.now_ns()
            await sink([Reading(point=p.id, value=float(n), ts_source=now, ts_gateway=now) for p in self.device.points])
            self._health.success(now)
            self._health.requests += 1
            n += 1
            await self.clock.sleep(self.device.timing.poll_interval)
        await asyncio.Event().wait()


def counting_plugins(*, limit: int | None = None) -> dict[str, DriverPlugin]:
    def create(device: DeviceConfig, clock: Clock) -> Driver:
        return Counting(device, clock=clock, limit=limit)

    return {"counting": DriverPlugin("counting", NoSettings, NoSettings, create)}


def counting_device(device_id: str, *points: str, poll: float = 0.05, enabled: bool = True) -> DeviceConfig:
    return DeviceConfig(
        id=device_id,
        driver="counting",
        connection=None,
        points=tuple(PointConfig(id=p, address=None, unit="m3/h") for p in points),
        timing=TimingConfig(poll_interval=poll),
        enabled=enabled,
    )


def counting_site(state_dir: Path, *devices: DeviceConfig, site: str = "inproc") -> GatewayConfig:
    """A site on the counting driver; by default one device ``dev1`` with the point ``pump1/flow``."""
    return GatewayConfig(
        site=SiteConfig(id=site),
        assets=(AssetConfig(id="pump1"),),
        devices=devices or (counting_device("dev1", "pump1/flow"),),
        state_dir=state_dir,
        http=HttpConfig(host="127.0.0.1", port=0),
    )
