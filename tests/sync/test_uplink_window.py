"""The uplink's sliding window against a real Mosquitto: new batches leave while older ones await the
fleet's ack, never more than ``max_in_flight`` of them, an alarm takes the next free slot, the cursor
never passes an unconfirmed batch, and a restart resends only from the written cursor."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiomqtt
import msgspec

from avila_edge.config.fleet import FleetConfig
from avila_edge.config.model import JournalConfig
from avila_edge.core import Event, SystemClock
from avila_edge.fleet.receiver import FleetReceiver
from avila_edge.fleet.store import DedupeStore
from avila_edge.journal import EntryKind, Journal
from avila_edge.sync.batch import Batch, decode_batch
from hil.mosquitto import Mosquitto

from .test_mqtt_uplink import readings, shipping, uplink_config

WINDOW = 4
BATCH = 100


class Acker:
    """The fleet's side in the test's hands: records each batch as it arrives and acknowledges only
    when told, so the uplink's window can be watched from outside."""

    def __init__(self, client: aiomqtt.Client) -> None:
        self.client = client
        self.arrived: list[Batch] = []
        self.acked = -1
        self.outstanding_max = 0
        self._messages = aiter(client.messages)

    @property
    def outstanding(self) -> int:
        """Readings batches received and not acknowledged (acks are cumulative per lane)."""
        return sum(1 for b in self.arrived if b.lane == "readings" and b.last > self.acked)

    async def next_batch(self, within: float) -> Batch | None:
        try:
            async with asyncio.timeout(within):
                message = await anext(self._messages)
        except TimeoutError:
            return None
        batch = decode_batch(bytes(message.payload))  # type: ignore[arg-type]
        self.arrived.append(batch)
        self.outstanding_max = max(self.outstanding_max, self.outstanding)
        return batch

    async def ack(self, batch: Batch) -> None:
        if batch.lane == "readings":
            self.acked = max(self.acked, batch.last)
        ack = msgspec.json.encode({"lane": batch.lane, "first": batch.first, "last": batch.last})
        await self.client.publish("avila/gw1/ack", ack, qos=1)


@contextlib.asynccontextmanager
async def acker(broker: Mosquitto) -> AsyncIterator[Acker]:
    async with aiomqtt.Client("127.0.0.1", broker.port, identifier="slow-fleet") as client:
        await client.subscribe("avila/gw1/batch", qos=1)
        yield Acker(client)


def written(journal: Journal) -> int:
    cursor = journal.cursors().get("uplink:cloud:readings")
    return 0 if cursor is None else cursor.position


async def test_new_batches_leave_while_older_ones_await_the_fleets_ack_up_to_max_in_flight(
    tmp_path: Path, broker: Mosquitto
) -> None:
    total = 20 * BATCH
    config = uplink_config(broker, ack="fleet", ack_timeout=5.0, batch_max=BATCH, max_in_flight=WINDOW)
    async with (
        Journal.open(tmp_path / "j.sqlite3", JournalConfig(), clock=SystemClock()) as journal,
        acker(broker) as fleet,
    ):
        await journal.append(readings(total))
        async with shipping(journal, config):
            for _ in range(WINDOW):
                assert await fleet.next_batch(within=5) is not None
            # the window is full: nothing more leaves until a batch is confirmed
            assert await fleet.next_batch(within=0.3) is None
            assert fleet.outstanding == WINDOW
            slid = 0
            while fleet.acked < total - 1:
                oldest = next(b for b in fleet.arrived if b.last > fleet.acked)
                await fleet.ack(oldest)  # one at a time, the oldest first
                assert written(journal) <= fleet.acked + 1  # never beyond what the fleet confirmed
                if oldest.last + WINDOW * BATCH < total:  # a batch is left to send: it takes the slot
                    assert await fleet.next_batch(within=2) is not None
                    slid += 1
                assert fleet.outstanding <= WINDOW
            async with asyncio.timeout(5):
                while written(journal) < total:
                    await asyncio.sleep(0.01)
    assert slid == 20 - WINDOW
    assert fleet.outstanding_max == WINDOW
    assert sorted(s for b in fleet.arrived for s, _, _ in b.entries) == list(range(total))


async def test_an_alarm_takes_the_next_free_slot_of_a_full_window(tmp_path: Path, broker: Mosquitto) -> None:
    config = uplink_config(broker, ack="fleet", ack_timeout=5.0, batch_max=BATCH, max_in_flight=WINDOW)
    async with (
        Journal.open(tmp_path / "j.sqlite3", JournalConfig(), clock=SystemClock()) as journal,
        acker(broker) as fleet,
    ):
        await journal.append(readings(20 * BATCH))
        async with shipping(journal, config):
            for _ in range(WINDOW):
                assert await fleet.next_batch(within=5) is not None
            await journal.append_events([Event(kind="alarm", source="pump1/hot", ts=1)])
            assert await fleet.next_batch(within=0.3) is None  # the window is full: the alarm waits
            await fleet.ack(fleet.arrived[0])
            alarm = await fleet.next_batch(within=2)
    assert alarm is not None
    assert alarm.lane == "events"
    assert [EntryKind(k) for _, k, _ in alarm.entries] == [EntryKind.EVENT]


def stored(state: Path) -> set[int]:
    store = DedupeStore(state / "fleet.sqlite3")
    try:
        return set(store.seqs("gw1"))
    finally:
        store.close()


class SlowReceiver(FleetReceiver):
    """The real receiver, its store calls slowed so that batches queue in the uplink's window; it
    records the first seq of every batch it is handed."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.firsts: list[int] = []

    async def _run(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        if getattr(fn, "__name__", "") == "unseen":
            self.firsts.append(min(args[1], default=-1))
            await asyncio.sleep(0.01)
        return await super()._run(fn, *args, **kwargs)


async def test_a_restart_mid_drain_resends_only_from_the_written_cursor_and_the_fleet_holds_each_reading_once(
    tmp_path: Path, broker: Mosquitto
) -> None:
    total = 60 * BATCH
    state = tmp_path / "fleet"
    fleet_config = msgspec.convert(
        {
            "broker": {"host": "127.0.0.1", "port": broker.port, "plaintext": True, "client_id": "rx"},
            "state_dir": state,
        },
        FleetConfig,
    )
    config = uplink_config(broker, ack="fleet", ack_timeout=5.0, batch_max=BATCH, max_in_flight=WINDOW)
    receiver = SlowReceiver(fleet_config, clock=SystemClock())
    async with (
        Journal.open(tmp_path / "j.sqlite3", JournalConfig(), clock=SystemClock()) as journal,
        asyncio.TaskGroup() as tg,
    ):
        rx = tg.create_task(receiver.run())
        async with asyncio.timeout(5):
            while not receiver.connected:
                await asyncio.sleep(0.01)
        await journal.append(readings(total))
        async with shipping(journal, config):
            async with asyncio.timeout(10):
                while written(journal) < total // 3:
                    await asyncio.sleep(0.005)
        # the uplink is gone mid-drain (its task cancelled): what its cursor says is stored
        cursor = written(journal)
        assert cursor < total
        assert set(range(cursor)) <= stored(state)
        before = len(receiver.firsts)
        async with shipping(journal, config) as again:
            async with asyncio.timeout(10):
                while again.stats().lag.get("readings", 1) > 0:
                    await asyncio.sleep(0.01)
        rx.cancel()
    await receiver.close()
    # nothing below the written cursor came again: the new uplink started there (what the old one
    # still had on its way starts above it)
    assert min(receiver.firsts[before:]) == cursor
    assert stored(state) == set(range(total))
    stats = receiver.stats()
    assert stats.entries == total
    # again: the unconfirmed window and confirmed batches not written yet (about a window more)
    assert stats.duplicates <= (2 * WINDOW + 2) * BATCH


async def test_an_ack_confirms_its_own_batch_and_not_the_unacknowledged_ones_before_it(
    tmp_path: Path, broker: Mosquitto
) -> None:
    # a receiver that subscribed late, or one of two sharing the subscription that died before
    # storing, acknowledges a later batch only: the earlier ones must not count as delivered
    config = uplink_config(broker, ack="fleet", ack_timeout=5.0, batch_max=BATCH, max_in_flight=WINDOW)
    async with (
        Journal.open(tmp_path / "j.sqlite3", JournalConfig(), clock=SystemClock()) as journal,
        acker(broker) as fleet,
    ):
        await journal.append(readings(20 * BATCH))
        async with shipping(journal, config) as uplink:
            for _ in range(WINDOW):
                assert await fleet.next_batch(within=5) is not None
            await fleet.ack(fleet.arrived[-1])
            # the window starts at the oldest unconfirmed batch: no slot is free yet
            assert await fleet.next_batch(within=0.3) is None
            assert written(journal) == 0
            assert uplink.stats().lag["readings"] == 20 * BATCH  # nothing confirmed below the gap
            for batch in fleet.arrived[: WINDOW - 1]:
                await fleet.ack(batch)
            async with asyncio.timeout(5):
                while uplink.stats().lag["readings"] > 16 * BATCH:
                    await asyncio.sleep(0.01)
