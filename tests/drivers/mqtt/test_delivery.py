"""What the MQTT driver promises about delivery, against a real Mosquitto: QoS 1/2 messages are
acknowledged only once their readings are committed (so a gateway killed in between gets them again),
and the incoming queue is bounded (QoS 1 waits at the broker, QoS 0 beyond the bound is counted)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

from avila_edge.config.model import DeviceConfig, JournalConfig
from avila_edge.core import Reading, SystemClock
from avila_edge.journal import EntryKind, Journal
from drivers.mqtt.config import Subscription
from drivers.mqtt.driver import MqttDriver
from hil.mosquitto import Mosquitto

from .conftest import WITHIN, Collector, device, mosquitto_pub, point, running, wait_connected

ROOT = Path(__file__).resolve().parents[3]

NUMBER_SUB = Subscription(filter="plant/+/+", template="plant/{asset}/{point}", format="number", qos=1)

# The gateway side of the crash test, in its own process: the MQTT driver feeding a real journal whose
# commits wait a minute, so the process can be killed after a message arrived and before its commit.
CHILD = """
import asyncio, sys
from pathlib import Path
from avila_edge.config.model import DataType, DeviceConfig, JournalConfig, PointConfig, TimingConfig
from avila_edge.core import SystemClock
from avila_edge.journal import Journal
from drivers.mqtt.config import MqttAddress, MqttConnection, Subscription
from drivers.mqtt.driver import MqttDriver

port, path, qos = int(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
sub = Subscription(filter="plant/+/+", template="plant/{asset}/{point}", format="number", qos=qos)
dev = DeviceConfig(id="crash1", driver="mqtt", timing=TimingConfig(timeout=2.0),
                   connection=MqttConnection(host="127.0.0.1", port=port, persistent_session=True,
                                             subscriptions=(sub,)),
                   points=(PointConfig(id="pump1/flow", address=MqttAddress(), type=DataType.FLOAT64),))

async def main() -> None:
    clock = SystemClock()
    async with Journal.open(path, JournalConfig(commit_interval=60.0), clock=clock) as journal:
        async def sink(batch):
            print("received", *[r.value for r in batch], flush=True)
            await journal.append(batch)
        async with MqttDriver(dev, clock=clock) as driver:
            await driver.run(sink)

asyncio.run(main())
"""


def crash_device(port: int, qos: int) -> DeviceConfig:
    """The device of CHILD (same client id, so the same persistent session)."""
    sub = Subscription(filter="plant/+/+", template="plant/{asset}/{point}", format="number", qos=qos)
    return device(port, [point("pump1/flow")], subscriptions=[sub], persistent_session=True, device_id="crash1")


async def _journaled(journal: Journal, point_id: str) -> list[Reading]:
    entries = await journal.read(0, kinds=[EntryKind.READING])
    return [r for r in (e.reading() for e in entries) if r.point == point_id]


@pytest.mark.parametrize("qos", [1, 2])
async def test_a_gateway_killed_before_the_commit_gets_the_message_again_and_journals_it_once(
    broker: Mosquitto, tmp_path: Path, qos: int
) -> None:
    path = tmp_path / "journal.db"
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CHILD, str(broker.port), str(path), str(qos),
        cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert child.stdout is not None
    try:
        async with asyncio.timeout(WITHIN):
            while "crash1 1 plant/+/+" not in broker.log_text():  # subscribed (persistent session)
                await asyncio.sleep(0.02)
            await mosquitto_pub(broker, "plant/pump1/flow", b"7", qos=qos)
            line = await child.stdout.readline()
        assert line == b"received 7.0\n"  # in the driver's hands, the journal commit still pending
    finally:
        child.send_signal(signal.SIGKILL)
        _, err = await child.communicate()
    assert child.returncode == -signal.SIGKILL, err.decode()

    clock = SystemClock()
    async with Journal.open(path, JournalConfig(), clock=clock) as journal:
        assert await _journaled(journal, "pump1/flow") == []  # the first gateway committed nothing
        driver = MqttDriver(crash_device(broker.port, qos), clock=clock)
        async with driver, asyncio.TaskGroup() as tg:
            task = tg.create_task(driver.run(journal.append), name="driver[mqtt:crash1].run")
            async with asyncio.timeout(WITHIN):
                while not (got := await _journaled(journal, "pump1/flow")):
                    await asyncio.sleep(0.02)
            await asyncio.sleep(0.3)  # a second delivery would arrive by now
            task.cancel()
        got = await _journaled(journal, "pump1/flow")
    assert [r.value for r in got] == [7.0]


class _HeldSink(Collector):
    """A sink whose first batch waits until ``release`` is set (a journal that is slow to commit)."""

    def __init__(self) -> None:
        super().__init__(WITHIN)
        self.release = asyncio.Event()
        self.batches: list[int] = []

    async def __call__(self, batch: Sequence[Reading]) -> None:
        self.batches.append(len(batch))
        await super().__call__(batch)
        await self.release.wait()


async def _publish_lines(broker: Mosquitto, topic: str, lines: Sequence[str], qos: int) -> None:
    """One mosquitto_pub process publishing each line as a message."""
    args = ["-h", broker.host, "-p", str(broker.port), "-t", topic, "-q", str(qos), "-l"]
    proc = await asyncio.create_subprocess_exec(
        "mosquitto_pub", *args, stdin=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    async with asyncio.timeout(WITHIN):
        _, err = await proc.communicate("".join(f"{line}\n" for line in lines).encode())
    assert proc.returncode == 0, err.decode()


async def test_qos0_messages_beyond_max_queued_are_dropped_and_counted_while_the_journal_is_slow(
    broker: Mosquitto,
) -> None:
    dev = device(broker.port, [point("pump1/flow"), point("pump1/done")], subscriptions=[NUMBER_SUB], max_queued=5)
    sink = _HeldSink()
    driver = MqttDriver(dev, clock=SystemClock())
    async with driver, asyncio.TaskGroup() as tg:
        task = tg.create_task(driver.run(sink), name="driver[mqtt:broker1].run")
        await wait_connected(driver)
        await _publish_lines(broker, "plant/pump1/flow", [str(i) for i in range(50)], qos=0)
        await mosquitto_pub(broker, "plant/pump1/done", b"1", qos=1)  # after the 50, and never dropped
        await asyncio.sleep(0.5)  # let the broker deliver everything into the held driver
        sink.release.set()
        await sink.wait_value("pump1/done", 1)
        health = driver.health()
        task.cancel()
    received = len(sink.of("pump1/flow"))
    assert health.errors["queue_full"] >= 1
    assert received + health.errors["queue_full"] == 50  # every message either taken or counted
    assert max(sink.batches) <= 5 + 1  # the bound (plus the QoS 1 message, which is never dropped)


async def test_qos1_messages_wait_at_the_broker_while_the_journal_is_slow_and_none_is_lost(
    broker: Mosquitto,
) -> None:
    dev = device(broker.port, [point("pump1/flow")], subscriptions=[NUMBER_SUB], max_queued=5)
    sink = _HeldSink()
    driver = MqttDriver(dev, clock=SystemClock())
    async with driver, asyncio.TaskGroup() as tg:
        task = tg.create_task(driver.run(sink), name="driver[mqtt:broker1].run")
        await wait_connected(driver)
        await _publish_lines(broker, "plant/pump1/flow", [str(i) for i in range(50)], qos=1)
        await asyncio.sleep(0.5)
        sink.release.set()
        await sink.wait_value("pump1/flow", 49)
        health = driver.health()
        task.cancel()
    assert [r.value for r in sink.of("pump1/flow")] == [float(i) for i in range(50)]
    assert "queue_full" not in health.errors
    assert max(sink.batches) <= 5  # at most max_queued unacknowledged messages were sent to the gateway


async def _run_until_the_sink_fails(dev: DeviceConfig, broker: Mosquitto) -> None:
    async def failing(batch: Sequence[Reading]) -> None:
        raise RuntimeError("journal unavailable")

    driver = MqttDriver(dev, clock=SystemClock())
    async with driver, asyncio.TaskGroup() as tg:
        tg.create_task(driver.run(failing), name="driver[mqtt:broker1].run")
        await wait_connected(driver)
        await mosquitto_pub(broker, "plant/pump1/flow", b"3", qos=1)


async def test_a_batch_whose_commit_failed_is_delivered_again_after_the_restart(broker: Mosquitto) -> None:
    dev = device(broker.port, [point("pump1/flow")], subscriptions=[NUMBER_SUB], persistent_session=True)
    with pytest.raises(ExceptionGroup) as failed:
        await _run_until_the_sink_fails(dev, broker)
    assert failed.group_contains(RuntimeError, match="journal unavailable")
    async with running(dev) as (_, sink):  # the supervisor's restart
        await sink.wait_value("pump1/flow", 3)


async def test_a_persistent_sessions_backlog_larger_than_max_queued_is_taken_whole_on_reconnect() -> None:
    sub = Subscription(filter="plant/+/+", template="plant/{asset}/{point}", format="number", qos=0)
    async with Mosquitto(extra_config=("queue_qos0_messages true",)) as broker:
        dev = device(broker.port, [point("pump1/flow")], subscriptions=[sub], persistent_session=True, max_queued=5)
        async with running(dev):
            pass
        await _publish_lines(broker, "plant/pump1/flow", [str(i) for i in range(50)], qos=0)
        async with running(dev, connected=False) as (driver, sink):  # the backlog comes ahead of the SUBACK
            await sink.wait_value("pump1/flow", 49)
            health = driver.health()
    assert [r.value for r in sink.of("pump1/flow")] == [float(i) for i in range(50)]
    assert "queue_full" not in health.errors
