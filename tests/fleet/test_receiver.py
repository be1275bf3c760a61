"""Gateway uplink → Mosquitto → fleet receivers → VictoriaMetrics, end to end, with real parts."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import msgspec
import pytest

from avila_edge.config.fleet import FleetConfig
from avila_edge.config.model import JournalConfig
from avila_edge.config.sync import MqttUplinkConfig
from avila_edge.core import Event, Reading, SystemClock
from avila_edge.fleet.receiver import FleetReceiver
from avila_edge.fleet.store import DedupeStore
from avila_edge.journal import Journal
from avila_edge.sync.mqtt_uplink import MqttUplink
from hil.mosquitto import Mosquitto
from hil.victoria import VictoriaMetrics

T0 = 1_760_000_000 * 10**9


@pytest.fixture
def broker() -> Iterator[Mosquitto]:
    with Mosquitto() as m:
        yield m


@pytest.fixture
def vm() -> Iterator[VictoriaMetrics]:
    with VictoriaMetrics() as v:
        yield v


def fleet_config(broker: Mosquitto, vm: VictoriaMetrics, state: Path, client_id: str) -> FleetConfig:
    return msgspec.convert(
        {
            "broker": {"host": "127.0.0.1", "port": broker.port, "plaintext": True, "client_id": client_id},
            "state_dir": state,
            "tsdb": {"url": vm.url, "bucket": "fleet"},
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


async def wait_for(predicate: object, within: float = 30.0) -> None:
    async with asyncio.timeout(within):
        while not predicate():  # type: ignore[operator]
            await asyncio.sleep(0.05)


async def test_two_receivers_share_the_load_and_hold_everything_exactly_once(
    tmp_path: Path, broker: Mosquitto, vm: VictoriaMetrics
) -> None:
    uplink_cfg = msgspec.convert(
        {"host": "127.0.0.1", "port": broker.port, "plaintext": True, "ack": "fleet", "batch_max": 100,
         "batch_age": 0.01, "max_in_flight": 4},
        MqttUplinkConfig,
    )  # fmt: skip
    state = tmp_path / "fleet"
    async with (
        receiving(fleet_config(broker, vm, state, "rx-a")) as a,
        receiving(fleet_config(broker, vm, state, "rx-b")) as b,
        Journal.open(tmp_path / "gw.sqlite3", JournalConfig(), clock=SystemClock()) as journal,
        asyncio.TaskGroup() as tg,
    ):
        await asyncio.sleep(0.5)
        uplink = MqttUplink(uplink_cfg, gateway="gw1", journal=journal, clock=SystemClock())
        task = tg.create_task(uplink.run())
        for i in range(20):
            await journal.append(readings(100, i * 100))
        await journal.append_events([Event(kind="gap", source="journal", ts=T0, attrs={"count": 0})])
        await wait_for(lambda: journal.cursors().get("uplink:cloud:readings") is not None
                       and journal.cursors()["uplink:cloud:readings"].position >= 2000)  # fmt: skip
        await wait_for(lambda: a.stats().entries + b.stats().entries >= 2001)
        task.cancel()
        assert a.stats().batches > 0
        assert b.stats().batches > 0
    store = DedupeStore(state / "fleet.sqlite3")
    try:
        assert store.seqs("gw1") == list(range(2001))
        (gw,) = store.gateways()
        assert gw.entries == 2001
        assert gw.gaps == 1
    finally:
        store.close()
    samples = sorted(v for s in vm.export('{__name__="reading_value"}') for v in s["values"])
    assert samples == [float(i) for i in range(2000)]


async def test_a_receiver_killed_mid_stream_leaves_no_duplicate_and_no_hole(
    tmp_path: Path, broker: Mosquitto, vm: VictoriaMetrics
) -> None:
    uplink_cfg = msgspec.convert(
        {"host": "127.0.0.1", "port": broker.port, "plaintext": True, "ack": "fleet", "ack_timeout": 1.0,
         "batch_max": 50, "batch_age": 0.01},
        MqttUplinkConfig,
    )  # fmt: skip
    state = tmp_path / "fleet"
    async with (
        Journal.open(tmp_path / "gw.sqlite3", JournalConfig(), clock=SystemClock()) as journal,
        asyncio.TaskGroup() as tg,
    ):
        uplink = MqttUplink(uplink_cfg, gateway="gw1", journal=journal, clock=SystemClock())
        task = tg.create_task(uplink.run())
        for round_ in range(3):
            async with receiving(fleet_config(broker, vm, state, "rx")):
                await journal.append(readings(300, round_ * 300))
                await asyncio.sleep(0.15)  # cancelled mid-stream: batches in flight are not acknowledged
        async with receiving(fleet_config(broker, vm, state, "rx")) as last:
            await wait_for(lambda: journal.cursors()["uplink:cloud:readings"].position >= 900, within=60)
            assert last.stats().malformed == 0
        task.cancel()
    store = DedupeStore(state / "fleet.sqlite3")
    try:
        assert store.seqs("gw1") == list(range(900))
    finally:
        store.close()
    samples = sorted(v for s in vm.export('{__name__="reading_value"}') for v in s["values"])
    assert samples == [float(i) for i in range(900)]
