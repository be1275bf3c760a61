"""The MQTT uplink against a real Mosquitto: delivery, priority, outages, resume after crashes."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiomqtt
import msgspec

from avila_edge.config.model import JournalConfig
from avila_edge.config.sync import AckMode, MqttUplinkConfig
from avila_edge.core import Event, Reading, SystemClock
from avila_edge.journal import EntryKind, Journal
from avila_edge.sync.batch import decode_batch
from avila_edge.sync.mqtt_uplink import MqttUplink
from hil.mosquitto import Mosquitto

from .conftest import Fleet

CHILD = Path(__file__).with_name("uplink_child.py")


def readings(n: int, start: int = 0) -> list[Reading]:
    return [Reading(point=f"pump1/p{i % 5}", value=float(start + i), ts_source=1, ts_gateway=1) for i in range(n)]


def uplink_config(broker: Mosquitto, **kw: object) -> MqttUplinkConfig:
    return msgspec.convert(
        {"host": "127.0.0.1", "port": broker.port, "plaintext": True, "batch_max": 200, "batch_age": 0.05, **kw},
        MqttUplinkConfig,
    )


@contextlib.asynccontextmanager
async def shipping(journal: Journal, config: MqttUplinkConfig) -> AsyncIterator[MqttUplink]:
    uplink = MqttUplink(config, gateway="gw1", journal=journal, clock=SystemClock())
    async with asyncio.TaskGroup() as tg:
        task = tg.create_task(uplink.run(), name="uplink[cloud]")
        try:
            yield uplink
        finally:
            task.cancel()


async def test_every_entry_arrives_and_cursors_reach_the_end(tmp_path: Path, broker: Mosquitto, fleet: Fleet) -> None:
    async with Journal.open(tmp_path / "j.sqlite3", JournalConfig(), clock=SystemClock()) as journal:
        await journal.append(readings(1000))
        await journal.append_events([Event(kind="alarm", source="pump1/hot", ts=1)])
        async with shipping(journal, uplink_config(broker)) as uplink:
            await fleet.until(lambda: len(fleet.seqs) == 1001)
            await asyncio.sleep(0.2)
            stats = uplink.stats()
        cursors = journal.cursors()
        assert cursors["uplink:cloud:readings"].position == 1001
        assert cursors["uplink:cloud:events"].position == 1001
    assert set(fleet.seqs) == set(range(1001))
    assert stats.entries == 1001
    assert stats.bytes / 1000 < 30  # bytes per reading on the wire


async def test_events_overtake_a_telemetry_backlog(tmp_path: Path, broker: Mosquitto, fleet: Fleet) -> None:
    async with Journal.open(tmp_path / "j.sqlite3", JournalConfig(), clock=SystemClock()) as journal:
        await journal.append(readings(5000))
        await journal.append_events([Event(kind="alarm", source="pump1/hot", ts=1)])
        async with shipping(journal, uplink_config(broker, max_in_flight=1)):
            await fleet.until(lambda: len(fleet.seqs) == 5001)
    assert fleet.kinds_in_order()[0] is EntryKind.EVENT


async def test_a_broker_outage_loses_nothing_and_resumes(tmp_path: Path, broker: Mosquitto, fleet: Fleet) -> None:
    # the test broker keeps no sessions across a restart, so only the receiver's own ack proves delivery
    config = uplink_config(broker, ack="fleet", ack_timeout=2.0)
    async with Journal.open(tmp_path / "j.sqlite3", JournalConfig(), clock=SystemClock()) as journal:
        async with shipping(journal, config) as uplink:
            for i in range(10):
                await journal.append(readings(100, start=i * 100))
                if i == 3:
                    await asyncio.to_thread(broker.stop)
                    await asyncio.sleep(1.0)
                if i == 7:
                    await asyncio.to_thread(broker.start)
                await asyncio.sleep(0.1)
            await fleet.until(lambda: len(fleet.seqs) == 1000, within=60)
            assert uplink.stats().errors >= 1
    assert set(fleet.seqs) == set(range(1000))


async def test_a_gateway_killed_mid_stream_resumes_from_its_cursor(
    tmp_path: Path, broker: Mosquitto, fleet: Fleet
) -> None:
    db = tmp_path / "j.sqlite3"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    for round_ in range(5):
        child = subprocess.Popen(
            [sys.executable, str(CHILD), str(db), str(broker.port), str(round_)],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "shipping"
        await asyncio.sleep(0.3 + 0.1 * round_)
        child.send_signal(signal.SIGKILL)
        child.communicate(timeout=10)
    async with Journal.open(db, JournalConfig(), clock=SystemClock()) as journal:
        total = journal.next_seq
        async with shipping(journal, uplink_config(broker)):
            await fleet.until(lambda: len(fleet.seqs) == total)
    assert set(fleet.seqs) == set(range(total))
    assert total >= 5 * 500


async def test_with_fleet_acks_the_cursor_waits_for_the_receiver(tmp_path: Path, broker: Mosquitto) -> None:
    config = uplink_config(broker, ack="fleet", ack_timeout=1.0)
    assert config.ack is AckMode.FLEET
    async with Journal.open(tmp_path / "j.sqlite3", JournalConfig(), clock=SystemClock()) as journal:
        await journal.append(readings(300))
        async with shipping(journal, config) as uplink:
            await asyncio.sleep(1.5)  # nobody acknowledges: the cursor must not move
            assert journal.cursors()["uplink:cloud:readings"].position == 0
            async with aiomqtt.Client("127.0.0.1", broker.port, identifier="acker") as c:
                await c.subscribe("avila/gw1/batch", qos=1)
                async with asyncio.timeout(15):
                    async for message in c.messages:
                        batch = decode_batch(bytes(message.payload))  # type: ignore[arg-type]
                        await c.publish(
                            "avila/gw1/ack", msgspec.json.encode({"lane": "readings", "last": batch.last}), qos=1
                        )
                        if batch.last == 299:
                            break
                async with asyncio.timeout(10):
                    while journal.cursors()["uplink:cloud:readings"].position < 300:
                        await asyncio.sleep(0.05)
            assert uplink.stats().entries >= 300


async def idle(journal: Journal, position: int) -> None:
    """Until the uplink has confirmed everything below ``position``."""
    async with asyncio.timeout(10):
        while (c := journal.cursors().get("uplink:cloud:readings")) is None or c.position < position:
            await asyncio.sleep(0.01)


async def test_a_trickle_of_readings_waits_up_to_batch_age_and_travels_as_one_batch(
    tmp_path: Path, broker: Mosquitto, fleet: Fleet
) -> None:
    async with Journal.open(tmp_path / "j.sqlite3", JournalConfig(), clock=SystemClock()) as journal:
        async with shipping(journal, uplink_config(broker, batch_max=1000, batch_age=3.0)):
            await journal.append(readings(1))
            await idle(journal, 1)  # sent and confirmed: the next reading finds the uplink idle and waits its age
            for i in range(30):  # 1.5 s of one reading every 50 ms: shorter than the batch age
                await journal.append(readings(1, start=1 + i))
                await asyncio.sleep(0.05)
            await fleet.until(lambda: len(fleet.seqs) == 31)
    assert fleet.batches == [1, 30]


async def test_a_full_batch_or_an_alarm_does_not_wait_for_the_batch_age(
    tmp_path: Path, broker: Mosquitto, fleet: Fleet
) -> None:
    age = 60.0
    async with Journal.open(tmp_path / "j.sqlite3", JournalConfig(), clock=SystemClock()) as journal:
        async with shipping(journal, uplink_config(broker, batch_max=100, batch_age=age)):
            await journal.append(readings(1))
            await idle(journal, 1)
            for i in range(10):
                await journal.append(readings(10, start=1 + i * 10))
            await fleet.until(lambda: len(fleet.seqs) == 101, within=age / 4)  # batch_max reached: sent
            await journal.append_events([Event(kind="alarm", source="pump1/hot", ts=1)])
            await fleet.until(lambda: len(fleet.seqs) == 102, within=age / 4)  # an alarm goes at once
    assert fleet.batches[:2] == [1, 100]
    assert all(n <= 100 for n in fleet.batches)
    assert fleet.kinds_in_order()[-1] is EntryKind.EVENT


async def test_the_bandwidth_cap_holds_the_bytes_sent_per_second(
    tmp_path: Path, broker: Mosquitto, fleet: Fleet
) -> None:
    rate = 5_000  # bytes per second; the bucket starts full (one second's worth)
    async with Journal.open(tmp_path / "j.sqlite3", JournalConfig(), clock=SystemClock()) as journal:
        await journal.append(readings(3000))
        loop = asyncio.get_running_loop()
        started = loop.time()
        async with shipping(journal, uplink_config(broker, bandwidth=rate, batch_max=100)) as uplink:
            await fleet.until(lambda: len(fleet.seqs) == 3000, within=60)
            elapsed = loop.time() - started
            sent = uplink.stats().bytes
    assert sent > 2 * rate  # enough bytes for the cap to matter
    assert elapsed >= (sent - rate - 2_000) / rate  # never faster than the cap (one batch of slack)
    assert set(fleet.seqs) == set(range(3000))


async def test_after_a_broker_restart_a_puback_uplink_keeps_running_and_delivers_what_was_journaled(
    tmp_path: Path, broker: Mosquitto
) -> None:
    # no ack lane and no commands: the publishes are the only place the lost connection shows
    async with Journal.open(tmp_path / "j.sqlite3", JournalConfig(), clock=SystemClock()) as journal:
        async with shipping(journal, uplink_config(broker, reconnect_max=1.0)) as uplink:
            for i in range(40):
                await journal.append(readings(10, start=i * 10))
                if i == 10:
                    await asyncio.to_thread(broker.stop)
                if i == 20:
                    await asyncio.to_thread(broker.start)
                await asyncio.sleep(0.05)
            await idle(journal, 400)
            assert uplink.stats().errors >= 1 and uplink.connected
            await journal.append(readings(10, start=400))
            await idle(journal, 410)  # and it goes on after that
