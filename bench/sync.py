"""Offline catch-up through real Mosquitto: how fast a journal backlog drains to the fleet, what the
gateway spends on it, and what the fleet receiver ingests per second.

The gateway was offline: its journal holds a backlog of readings. The uplink (``ack: fleet``, so
every batch is confirmed by the receiver after it stored it) ships it to a fleet receiver over a real
broker on loopback, with the uplink's default ``max_in_flight`` (8 batches awaiting the fleet's
confirmation). The receiver runs in its own process (``python -m bench.sync receiver PORT DIR``),
as the fleet runs on other machines: the drain is timed until the uplink's cursor has every reading
confirmed, and the gateway's CPU time per reading (this process: uplink, journal reads) is what a
gateway pays to catch up; readings per CPU-second is its drain capacity on one core. Baseline: the
same batches published raw with aiomqtt at QoS 1 (no journal, no cursor, no receiver). The drain
time of one hour offline at 1,000 readings/s (3.6 M readings) is measured when the budget allows,
else extrapolated from the measured drain rate (the row says which).
"""

from __future__ import annotations

import asyncio
import signal
import sys
import tempfile
import time
from pathlib import Path

import msgspec

from avila_edge.config.fleet import FleetConfig
from avila_edge.config.model import JournalConfig
from avila_edge.config.sync import MqttUplinkConfig
from avila_edge.core import Reading, SystemClock
from avila_edge.fleet.receiver import FleetReceiver
from avila_edge.journal import Journal
from avila_edge.sync.batch import encode_batch
from avila_edge.sync.mqtt_uplink import MqttUplink
from bench._table import Row
from hil.mosquitto import Mosquitto

ROOT = Path(__file__).resolve().parents[1]
HOUR = 3_600_000
"""Readings of one hour offline at 1,000 readings/s."""

PER_SECOND_OF_BUDGET = 60_000
APPEND = 10_000
BATCH = 1000
DRAIN_LIMIT = 900.0
"""Seconds a measurement may take at most (one hour's backlog drains in about one minute)."""


async def _fill(journal: Journal, n: int) -> None:
    t0 = time.time_ns() - n * 1_000_000
    for start in range(0, n, APPEND):
        await journal.append(
            [
                Reading(point=f"a{i % 20}/p{i % 10}", value=float(i), ts_source=t0 + i * 1_000_000, ts_gateway=t0)
                for i in range(start, min(n, start + APPEND))
            ]
        )


async def _receiver(broker: Mosquitto, state: Path) -> asyncio.subprocess.Process:
    """A fleet receiver in its own process, started and connected."""
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.sync", "receiver", str(broker.port), str(state),
        stdout=asyncio.subprocess.PIPE, cwd=ROOT,
    )  # fmt: skip
    assert child.stdout is not None
    async with asyncio.timeout(30):
        line = await child.stdout.readline()
    if line.strip() != b"ready":
        child.kill()
        raise RuntimeError(f"the fleet receiver did not start: {line!r}")
    return child


async def _drain(broker: Mosquitto, journal: Journal, state: Path, n: int) -> tuple[float, float]:
    """Seconds until the fleet confirmed all ``n`` readings, and this process's CPU seconds meanwhile."""
    uplink_config = msgspec.convert(
        {"host": "127.0.0.1", "port": broker.port, "plaintext": True, "ack": "fleet", "batch_max": BATCH,
         "batch_age": 0.01},
        MqttUplinkConfig,
    )  # fmt: skip
    child = await _receiver(broker, state)
    try:
        uplink = MqttUplink(uplink_config, gateway="bench", journal=journal, clock=SystemClock())
        async with asyncio.timeout(DRAIN_LIMIT), asyncio.TaskGroup() as tg:
            started, cpu = time.perf_counter(), time.process_time()
            up = tg.create_task(uplink.run())
            while not uplink.stats().connected or any(uplink.stats().lag.values()):  # noqa: ASYNC110
                await asyncio.sleep(0.005)
            elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
            up.cancel()
    finally:
        child.terminate()
        await child.wait()
    return elapsed, cpu


async def _serve(port: int, state: Path) -> None:
    """The child: a fleet receiver on the broker at ``port`` until terminated; says ``ready`` once connected."""
    fleet = msgspec.convert(
        {"broker": {"host": "127.0.0.1", "port": port, "plaintext": True, "client_id": "bench-rx"},
         "state_dir": state},
        FleetConfig,
    )  # fmt: skip
    receiver = FleetReceiver(fleet, clock=SystemClock())
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with asyncio.TaskGroup() as tg:
        rx = tg.create_task(receiver.run())
        while not receiver.connected:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        print("ready", flush=True)
        await stop.wait()
        rx.cancel()
    await receiver.close()


async def _raw(broker: Mosquitto, journal: Journal, state: Path, n: int) -> tuple[float, float]:
    """Readings/s of the same batches published straight with aiomqtt (QoS 1, eight in flight), and
    of a fleet receiver (no acks) consuming them."""
    import aiomqtt

    payloads = []
    for start in range(0, n, BATCH):
        payloads.append(encode_batch("bench", await journal.read(start, BATCH)))
    fleet = msgspec.convert(
        {"broker": {"host": "127.0.0.1", "port": broker.port, "plaintext": True, "client_id": "bench-raw"},
         "state_dir": state, "topic_prefix": "raw", "ack": False},
        FleetConfig,
    )  # fmt: skip
    receiver = FleetReceiver(fleet, clock=SystemClock())
    async with asyncio.timeout(DRAIN_LIMIT), asyncio.TaskGroup() as tg:
        rx = tg.create_task(receiver.run())
        while not receiver.connected:  # noqa: ASYNC110 - polling a counter is the measurement
            await asyncio.sleep(0.01)
        async with aiomqtt.Client("127.0.0.1", broker.port, max_inflight_messages=8) as client:
            started = time.perf_counter()
            for i in range(0, len(payloads), 8):
                await asyncio.gather(*(client.publish("raw/bench/batch", p, qos=1) for p in payloads[i : i + 8]))
            published = time.perf_counter() - started
        while receiver.stats().entries < n:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        received = time.perf_counter() - started
        rx.cancel()
    await receiver.close()
    return n / published, n / received


async def run(seconds: float) -> list[Row]:
    n = max(20_000, min(HOUR, int(PER_SECOND_OF_BUDGET * seconds)))
    with tempfile.TemporaryDirectory() as tmp, Mosquitto() as broker:
        async with Journal.open(Path(tmp) / "gw.sqlite3", JournalConfig(max_bytes=8 << 30), clock=SystemClock()) as j:
            await _fill(j, n)
            raw, receiver = await _raw(broker, j, Path(tmp) / "raw", n)
            elapsed, cpu = await _drain(broker, j, Path(tmp) / "fleet", n)
    rate = n / elapsed
    hour = elapsed if n == HOUR else HOUR / rate
    how = "measured" if n == HOUR else f"from {n:,} readings"
    return [
        Row("sync", "backlog drain to fleet (acked, deduped, stored)", rate, "readings/s", raw, "raw aiomqtt QoS1"),
        Row("sync", f"drain 1 h offline at 1,000/s ({how})", hour, "s"),
        Row("sync", "gateway CPU per reading drained (uplink, journal reads)", cpu / n * 1e6, "µs CPU"),
        Row("sync", "gateway drain capacity, per CPU-second (1 core)", n / cpu, "readings/s"),
        Row("fleet", "receiver ingest (dedupe + audit fold, no TSDB)", receiver, "readings/s", raw, "raw aiomqtt QoS1"),
    ]


if __name__ == "__main__":
    if sys.argv[1:2] != ["receiver"] or len(sys.argv) != 4:
        raise SystemExit("usage: python -m bench.sync receiver PORT STATE_DIR")
    asyncio.run(_serve(int(sys.argv[2]), Path(sys.argv[3])))
