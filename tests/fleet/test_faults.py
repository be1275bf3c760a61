"""Network faults between gateway and broker (through hil/fault_proxy.py) and a disk cap hit offline:
afterwards the fleet holds exactly the gateway's journal minus the recorded gaps, once each."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec

from avila_edge.config.fleet import FleetConfig
from avila_edge.config.model import JournalConfig
from avila_edge.config.sync import MqttUplinkConfig
from avila_edge.core import SystemClock
from avila_edge.fleet.receiver import FleetReceiver
from avila_edge.journal import EntryKind, Journal
from avila_edge.sync.mqtt_uplink import MqttUplink
from hil.fault_proxy import FaultProxy
from hil.mosquitto import Mosquitto
from hil.victoria import VictoriaMetrics

from .conftest import fleet_seqs, readings, until


@contextlib.asynccontextmanager
async def fleet(broker: Mosquitto, vm: VictoriaMetrics, state: Path) -> AsyncIterator[FleetReceiver]:
    config = msgspec.convert(
        {"broker": {"host": "127.0.0.1", "port": broker.port, "plaintext": True, "client_id": "rx",
                    "reconnect_max": 2.0},
         "state_dir": state, "tsdb": {"url": vm.url, "bucket": "fleet"}},
        FleetConfig,
    )  # fmt: skip
    receiver = FleetReceiver(config, clock=SystemClock())
    async with asyncio.TaskGroup() as tg:
        task = tg.create_task(receiver.run())
        try:
            yield receiver
        finally:
            task.cancel()
    await receiver.close()


def uplink(journal: Journal, port: int) -> MqttUplink:
    config = msgspec.convert(
        {"host": "127.0.0.1", "port": port, "plaintext": True, "ack": "fleet", "ack_timeout": 2.0, "batch_max": 200,
         "batch_age": 0.01, "keepalive": 2, "reconnect_max": 2.0},
        MqttUplinkConfig,
    )  # fmt: skip
    return MqttUplink(config, gateway="gw1", journal=journal, clock=SystemClock())


async def test_link_drops_and_latency_during_ingest_lose_and_duplicate_nothing(
    tmp_path: Path, broker: Mosquitto, vm: VictoriaMetrics
) -> None:
    state = tmp_path / "fleet"
    async with (
        FaultProxy("127.0.0.1", broker.port) as proxy,
        fleet(broker, vm, state),
        Journal.open(tmp_path / "gw.sqlite3", JournalConfig(), clock=SystemClock()) as journal,
        asyncio.TaskGroup() as tg,
    ):
        task = tg.create_task(uplink(journal, proxy.port).run())
        for i in range(30):
            await journal.append(readings(100, i * 100))
            if i == 5:
                await proxy.drop()
            if i == 12:
                await proxy.restore()
                proxy.latency = 0.05
                before = proxy.connections
                await until(lambda before=before: proxy.connections > before)  # the uplink is back after its backoff
            if i == 20:
                proxy.latency = 0.0
                await proxy.drop()
            if i == 24:
                await proxy.restore()
            await asyncio.sleep(0.1)
        await until(lambda: journal.cursors()["uplink:cloud:readings"].position >= 3000, within=90)
        task.cancel()
    assert fleet_seqs(state) == list(range(3000))
    assert proxy.connections >= 3  # it really reconnected through the faults
    samples = sorted(v for s in vm.export('{__name__="reading_value"}') for v in s["values"])
    assert samples == [float(i) for i in range(3000)]


async def test_a_disk_cap_hit_while_offline_arrives_as_gaps_and_nothing_else_is_missing(
    tmp_path: Path, broker: Mosquitto, vm: VictoriaMetrics
) -> None:
    state = tmp_path / "fleet"
    async with (
        FaultProxy("127.0.0.1", broker.port) as proxy,
        Journal.open(tmp_path / "gw.sqlite3", JournalConfig(max_bytes=1 << 20), clock=SystemClock()) as journal,
        asyncio.TaskGroup() as tg,
    ):
        await proxy.drop()  # offline from the start
        task = tg.create_task(uplink(journal, proxy.port).run())
        for i in range(40):
            await journal.append(readings(500, i * 500))
        await journal.retain()
        stats = journal.stats()
        assert stats.dropped > 0
        assert stats.bytes <= 1 << 20
        stored = [e.seq for e in await journal.read(0, 100_000)]
        gaps = [e.event() for e in await journal.read(0, 100_000, kinds=[EntryKind.EVENT])]
        await proxy.restore()
        async with fleet(broker, vm, state) as receiver:
            await until(lambda: journal.cursors()["uplink:cloud:readings"].position >= journal.next_seq - len(gaps))
            await until(lambda: len(fleet_seqs(state)) >= len(stored))
            (status,) = await receiver.gateways()
        task.cancel()
    received = fleet_seqs(state)
    assert received == stored  # everything the journal still holds, readings and gap events, once
    covered = {s for g in gaps for s in range(int(g.attrs["first_seq"]), int(g.attrs["last_seq"]) + 1)}
    assert set(range(journal.next_seq)) == set(received) | covered
    assert status.dropped == stats.dropped
    assert status.entries == len(received)
    values = sorted(v for s in vm.export('{__name__="reading_value"}') for v in s["values"])
    assert len(values) == len(set(values))  # nothing twice in the TSDB
    assert len(values) == sum(1 for seq in received if seq not in {g.seq for g in gaps})


OUTAGE = 60.0
"""Seconds the broker stays down: the issue's figure, long enough for every keepalive and backoff to expire."""


async def test_a_60_second_broker_outage_during_ingest_loses_and_duplicates_nothing(
    tmp_path: Path, broker: Mosquitto, vm: VictoriaMetrics
) -> None:
    state = tmp_path / "fleet"
    rate, per_batch = 20, 10  # 200 readings/s keep arriving the whole time
    async with (
        fleet(broker, vm, state),
        Journal.open(tmp_path / "gw.sqlite3", JournalConfig(), clock=SystemClock()) as journal,
        asyncio.TaskGroup() as tg,
    ):
        up = uplink(journal, broker.port)
        task = tg.create_task(up.run())
        loop = asyncio.get_running_loop()
        start = loop.time()
        n = 0
        outage = (2.0, 2.0 + OUTAGE)
        down = False
        while (elapsed := loop.time() - start) < outage[1] + 3.0:
            if not down and outage[0] <= elapsed < outage[1]:
                await asyncio.to_thread(broker.stop)
                down = True
            elif down and elapsed >= outage[1]:
                await asyncio.to_thread(broker.start)
                down = False
            await journal.append(readings(per_batch, n))
            n += per_batch
            await asyncio.sleep(1 / rate)
        restored = loop.time()
        await until(lambda: journal.cursors()["uplink:cloud:readings"].position >= n, within=60)
        drained = loop.time() - restored
        task.cancel()
    print(f"{n} readings; broker down {OUTAGE:.0f} s; fleet caught up {drained:.1f} s after the last reading")
    assert drained < 15.0  # reconnect within reconnect_max, then the backlog drains in a few batches
    assert n >= rate * per_batch * OUTAGE * 0.9  # ingest went on during the outage
    assert fleet_seqs(state) == list(range(n))
    samples = sorted(v for s in vm.export('{__name__="reading_value"}') for v in s["values"])
    assert samples == [float(i) for i in range(n)]


GATEWAY_CHILD = Path(__file__).with_name("gateway_child.py")


async def test_a_gateway_killed_mid_batch_again_and_again_leaves_the_fleet_exactly_its_journal(
    tmp_path: Path, broker: Mosquitto, vm: VictoriaMetrics
) -> None:
    state = tmp_path / "fleet"
    db = tmp_path / "gw.sqlite3"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    async with fleet(broker, vm, state):
        for round_ in range(5):
            child = subprocess.Popen(
                [sys.executable, str(GATEWAY_CHILD), str(db), str(broker.port)], stdout=subprocess.PIPE, text=True,
                env=env,
            )  # fmt: skip
            try:
                assert child.stdout is not None
                assert await asyncio.to_thread(child.stdout.readline) == "shipping\n"
                await asyncio.sleep(0.4 + 0.1 * round_)  # ingest and batches in flight when it dies
            finally:
                child.send_signal(signal.SIGKILL)
                await asyncio.to_thread(child.communicate, timeout=10)
        async with Journal.open(db, JournalConfig(), clock=SystemClock()) as journal, asyncio.TaskGroup() as tg:
            total = journal.next_seq
            task = tg.create_task(uplink(journal, broker.port).run())  # the gateway back for good
            await until(lambda: journal.cursors()["uplink:cloud:readings"].position >= total, within=60)
            task.cancel()
    assert total >= 5 * 50
    assert fleet_seqs(state) == list(range(total))
    samples = sorted(v for s in vm.export('{__name__="reading_value"}') for v in s["values"])
    assert samples == [float(i) for i in range(total)]
