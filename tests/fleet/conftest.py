from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import msgspec
import pytest

from avila_edge.config.fleet import FleetConfig
from avila_edge.core import Reading, SystemClock
from avila_edge.fleet.receiver import FleetReceiver
from avila_edge.fleet.store import DedupeStore
from hil.mosquitto import Mosquitto
from hil.victoria import VictoriaMetrics

T0 = 1_760_000_000 * 10**9  # October 2025: VictoriaMetrics refuses samples from the future


@pytest.fixture
def broker() -> Iterator[Mosquitto]:
    with Mosquitto() as m:
        yield m


@pytest.fixture
def vm() -> Iterator[VictoriaMetrics]:
    with VictoriaMetrics() as v:
        yield v


def fleet_config(
    broker: Mosquitto, vm: VictoriaMetrics, state: Path, client_id: str, *, keys: Path | None = None
) -> FleetConfig:
    return msgspec.convert(
        {
            "broker": {"host": "127.0.0.1", "port": broker.port, "plaintext": True, "client_id": client_id},
            "state_dir": state,
            "tsdb": {"url": vm.url, "bucket": "fleet"},
            "gateway_keys": keys,
        },
        FleetConfig,
    )


@contextlib.asynccontextmanager
async def receiving(config: FleetConfig) -> AsyncIterator[FleetReceiver]:
    receiver = FleetReceiver(config, clock=SystemClock())
    async with asyncio.TaskGroup() as tg:
        task = tg.create_task(receiver.run())
        try:
            yield receiver
        finally:
            task.cancel()
    await receiver.close()


def readings(n: int, start: int) -> list[Reading]:
    return [
        Reading(point=f"pump1/p{i % 4}", value=float(start + i), ts_source=T0 + (start + i) * 10**6, ts_gateway=T0)
        for i in range(n)
    ]


async def until(predicate: object, within: float = 60.0) -> None:
    async with asyncio.timeout(within):
        while not predicate():  # type: ignore[operator]
            await asyncio.sleep(0.05)


def fleet_seqs(state: Path, gateway: str = "gw1") -> list[int]:
    store = DedupeStore(state / "fleet.sqlite3")
    try:
        return store.seqs(gateway)
    finally:
        store.close()
