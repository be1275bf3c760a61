"""Gateway uplink → Mosquitto → fleet receivers → VictoriaMetrics, end to end, with real parts."""

from __future__ import annotations

import asyncio
from pathlib import Path

import msgspec

from avila_edge.audit import AuditLog
from avila_edge.config.model import AuditConfig, JournalConfig
from avila_edge.config.sync import MqttUplinkConfig
from avila_edge.core import Event, SystemClock
from avila_edge.fleet.store import DedupeStore
from avila_edge.journal import EntryKind, Journal
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
    keys = tmp_path / "keys"
    keys.mkdir()
    gw_state = tmp_path / "gw"
    clock = SystemClock()
    async with Journal.open(gw_state / "journal.sqlite3", JournalConfig(), clock=clock) as journal:
        log = await AuditLog.attach(journal, state_dir=gw_state, config=AuditConfig(), origin="gw/one", clock=clock)
        (keys / "gw1.vkey").write_text(log.verifier.text())
        async with (
            receiving(fleet_config(broker, vm, state, "rx-a", keys=keys)) as a,
            receiving(fleet_config(broker, vm, state, "rx-b", keys=keys)) as b,
            asyncio.TaskGroup() as tg,
        ):
            await asyncio.sleep(0.5)
            uplink = MqttUplink(uplink_cfg, gateway="gw1", journal=journal, clock=clock)
            task = tg.create_task(uplink.run())
            for i in range(20):
                await journal.append(readings(100, i * 100))
                if i % 5 == 4:
                    await log.checkpoint()
            await journal.append_events([Event(kind="gap", source="journal", ts=T0, attrs={"count": 0})])
            last = await log.checkpoint()
            assert last is not None
            total = journal.next_seq
            await until(lambda: a.stats().entries + b.stats().entries >= total)
            task.cancel()
            assert a.stats().batches > 0
            assert b.stats().batches > 0
        readings_seqs = [e.seq for e in await journal.read(0, 10_000) if e.kind is EntryKind.READING]
    store = DedupeStore(state / "fleet.sqlite3", keys_dir=keys)
    try:
        assert store.seqs("gw1") == list(range(total))
        (gw,) = store.gateways()
        assert gw.entries == total
        assert gw.missing == 0
        assert gw.gaps == 1
        # every checkpoint verified against the pinned key, chained, and the data hashes to its root
        assert gw.audit.problem == ""
        assert gw.audit.chain_size == last.size
        assert gw.audit.content_verified == last.size
    finally:
        store.close()
    assert len(readings_seqs) == 2000
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
