"""Gateway uplink → Mosquitto → fleet receivers → VictoriaMetrics, end to end, with real parts."""

from __future__ import annotations

import asyncio
from pathlib import Path

import msgspec

from avila_edge.config.model import JournalConfig
from avila_edge.config.sync import MqttUplinkConfig
from avila_edge.core import Event, SystemClock
from avila_edge.fleet.store import DedupeStore
from avila_edge.journal import Journal
from avila_edge.sync.mqtt_uplink import MqttUplink
from hil.mosquitto import Mosquitto
from hil.victoria import VictoriaMetrics

from .conftest import T0, fleet_config, readings, receiving, until


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
        await until(lambda: journal.cursors().get("uplink:cloud:readings") is not None
                       and journal.cursors()["uplink:cloud:readings"].position >= 2000)  # fmt: skip
        await until(lambda: a.stats().entries + b.stats().entries >= 2001)
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
            await until(lambda: journal.cursors()["uplink:cloud:readings"].position >= 900, within=60)
            assert last.stats().malformed == 0
        task.cancel()
    store = DedupeStore(state / "fleet.sqlite3")
    try:
        assert store.seqs("gw1") == list(range(900))
    finally:
        store.close()
    samples = sorted(v for s in vm.export('{__name__="reading_value"}') for v in s["values"])
    assert samples == [float(i) for i in range(900)]
