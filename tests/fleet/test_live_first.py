"""live_first: after an outage, new readings reach the fleet before the backlog, the backlog follows,
and the fleet ends with everything exactly once — also when the uplink restarts in the middle."""

from __future__ import annotations

import asyncio
from pathlib import Path

import msgspec

from avila_edge.config.model import JournalConfig
from avila_edge.config.sync import MqttUplinkConfig
from avila_edge.core import SystemClock
from avila_edge.fleet.store import DedupeStore
from avila_edge.journal import Journal
from avila_edge.sync.mqtt_uplink import MqttUplink
from hil.mosquitto import Mosquitto
from hil.victoria import VictoriaMetrics

from .conftest import fleet_config, readings, receiving, until

BACKLOG = 3000


def uplink_config(broker: Mosquitto, **extra: object) -> MqttUplinkConfig:
    """A live_first uplink acknowledged by the fleet, in batches of 50, splitting 500 behind."""
    return msgspec.convert(
        {"host": "127.0.0.1", "port": broker.port, "plaintext": True, "ack": "fleet", "batch_max": 50,
         "batch_age": 0.01, "live_first": True, "live_first_after": 500, **extra},
        MqttUplinkConfig,
    )  # fmt: skip


def held(state: Path) -> set[int]:
    store = DedupeStore(state / "fleet.sqlite3")
    try:
        return set(store.seqs("gw1"))
    finally:
        store.close()


async def test_live_readings_overtake_the_backlog_and_nothing_is_lost(
    tmp_path: Path, broker: Mosquitto, vm: VictoriaMetrics
) -> None:
    config = uplink_config(broker, max_in_flight=1, bandwidth=8000)
    state = tmp_path / "fleet"
    clock = SystemClock()
    async with (
        receiving(fleet_config(broker, vm, state, "rx")),
        Journal.open(tmp_path / "gw.sqlite3", JournalConfig(), clock=clock) as journal,
    ):
        await journal.append(readings(BACKLOG, 0))  # recorded while offline
        live_from = journal.next_seq
        async with asyncio.TaskGroup() as tg:
            task = tg.create_task(MqttUplink(config, gateway="gw1", journal=journal, clock=clock).run())
            for i in range(10):
                await journal.append(readings(5, BACKLOG + i * 5))
                await asyncio.sleep(0.1)
            await until(lambda: any(s >= live_from for s in held(state)), within=30)
            backlog_at_first_live = len([s for s in held(state) if s < live_from])
            store = DedupeStore(state / "fleet.sqlite3")
            (gw,) = store.gateways()
            store.close()
            assert gw.missing > 0  # the fleet shows the backlog still on its way
            assert backlog_at_first_live < BACKLOG / 2  # live went first; most of the backlog still waits
            assert "uplink:cloud:live" in journal.cursors()
            # a restart in the middle of the split resumes it
            task.cancel()
        async with asyncio.TaskGroup() as tg:
            fast = msgspec.structs.replace(config, bandwidth=None, max_in_flight=8)
            task = tg.create_task(MqttUplink(fast, gateway="gw1", journal=journal, clock=clock).run())
            await journal.append(readings(5, BACKLOG + 50))
            total = journal.next_seq
            await until(lambda: held(state) == set(range(total)), within=60)
            await until(lambda: "uplink:cloud:live" not in journal.cursors(), within=10)
            assert journal.cursors()["uplink:cloud:readings"].position == total
            task.cancel()
    samples = sorted(v for s in vm.export('{__name__="reading_value"}') for v in s["values"])
    assert samples == [float(i) for i in range(total)]


async def test_a_merge_cut_short_after_its_cursor_write_resumes_as_one_lane_without_resending(
    tmp_path: Path, broker: Mosquitto, vm: VictoriaMetrics
) -> None:
    """A crash between the merge's steps leaves the readings cursor written and an orphan live
    cursor: the next start removes it and sends only what is above the readings cursor."""
    config = uplink_config(broker)
    state = tmp_path / "fleet"
    clock = SystemClock()
    async with (
        receiving(fleet_config(broker, vm, state, "rx")),
        Journal.open(tmp_path / "gw.sqlite3", JournalConfig(), clock=clock) as journal,
    ):
        await journal.append(readings(200, 0))
        readings_cursor = await journal.cursor("uplink:cloud:readings")
        await readings_cursor.commit(150)  # the merge's cursor write happened ...
        orphan = await journal.cursor("uplink:cloud:live", start="oldest")  # ... its live cursor stayed
        assert orphan.position == 0
        async with asyncio.TaskGroup() as tg:
            task = tg.create_task(MqttUplink(config, gateway="gw1", journal=journal, clock=clock).run())
            await until(lambda: set(range(150, 200)) <= held(state), within=30)
            task.cancel()
        assert held(state) == set(range(150, 200)), "nothing below the readings cursor is sent again"
        assert "uplink:cloud:live" not in journal.cursors()
