"""End to end on one core: readings made as a driver makes them → journal → twins → anomaly → audit →
uplink cursor, the cost of each stage in CPU microseconds per reading, and the uplink's bytes per reading.

The stages are switched on one after another, each for the time budget, in the same run and process
(a fresh journal each time): readings made only; ``Journal.append``; the pipeline (deadband filter,
journal, twins with a derived value and an alarm); + the audit log; + the anomaly service (a baseline
detector on every asset, fed by the twins' change notifications); + a real MQTT uplink (QoS 1 to a
Mosquitto on loopback, ``batch_max`` 1,000, ``batch_age`` 10 ms), the run ending once its cursor has passed every reading.
The journal's cost is the process CPU time per reading (``time.process_time``: every thread, so the
journal writer and reader count) minus that of the step before. The small stages are timed where
they run instead (a difference of two runs that small would be noise, even below 0): the thread CPU
time of ``Pipeline.filter`` and ``TwinService.apply`` on the event loop, of the audit's commit hook
on the journal writer thread and of the anomaly service's ``observe``. The uplink's is what the last
run's process CPU leaves once every timed part of that same run (readings made, filter, twins, the
journal writer's ``write`` with the audit in it, anomaly) is taken away: the uplink, and the glue
between stages that nothing times.
``readings per CPU-second`` is what one core can carry when it does nothing else; it is set beside
raw ``sqlite3`` ``executemany`` of the same rows into the same tables (CPU time too), the floor
under any journal, so the ratio holds on a busy machine where the wall-clock rate does not.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import msgspec

from avila_edge.anomaly import AnomalyService
from avila_edge.audit import AuditLog
from avila_edge.config.anomaly import AnomalyConfig, DetectorConfig, FeatureConfig
from avila_edge.config.model import (
    AssetConfig,
    AuditConfig,
    DataType,
    DeviceConfig,
    GatewayConfig,
    JournalConfig,
    PointConfig,
    SiteConfig,
)
from avila_edge.config.sync import MqttUplinkConfig
from avila_edge.config.twins import AssetTypeConfig
from avila_edge.core import Reading, SystemClock
from avila_edge.journal import Journal, encode_reading
from avila_edge.journal._store import SCHEMA, WriterStore
from avila_edge.runtime.pipeline import Pipeline
from avila_edge.sync.batch import encode_batch
from avila_edge.sync.mqtt_uplink import MqttUplink
from avila_edge.twins.service import TwinService
from bench._table import Row
from hil.mosquitto import Mosquitto

ASSETS, POINTS, BATCH = 20, 10, 1000
STAGES = ("readings", "journal", "pipeline", "audit", "anomaly", "uplink")
UPLINK_DRAIN_LIMIT = 60.0


def _config(state_dir: Path) -> GatewayConfig:
    pump = msgspec.convert(
        {"id": "pump", "derived": {"sum": "p0 + p1"},
         "alarms": [{"id": "hi", "value": "p2", "kind": "high", "limit": 1e12}]},
        AssetTypeConfig,
    )  # fmt: skip
    points = tuple(
        PointConfig(id=f"a{a}/p{p}", address=None, type=DataType.FLOAT64) for a in range(ASSETS) for p in range(POINTS)
    )
    detector = DetectorConfig(id="health", asset_type="pump", features=tuple(FeatureConfig(f"p{i}") for i in range(4)))
    return GatewayConfig(
        site=SiteConfig(id="bench"),
        assets=tuple(AssetConfig(id=f"a{a}", type="pump") for a in range(ASSETS)),
        asset_types=(pump,),
        devices=(DeviceConfig(id="d", driver="none", connection=None, points=points),),
        anomaly=AnomalyConfig(detectors=(detector,)),
        state_dir=state_dir,
    )


class _Batches:
    """Batches of readings as a driver makes them: a fresh value for every point, stamped now."""

    def __init__(self, ids: list[str]) -> None:
        self.ids = ids
        self.value = 0.0

    def __call__(self) -> list[Reading]:
        now = time.time_ns()
        ids, count = self.ids, len(self.ids)
        batch = []
        for i in range(BATCH):
            self.value += 1.0
            batch.append(Reading(point=ids[i % count], value=self.value, ts_source=now, ts_gateway=now))
        return batch


class _Timed:
    """CPU time spent inside a wrapped callable (on the thread that calls it)."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn
        self.seconds = 0.0

    def __call__(self, *args: Any) -> Any:
        started = time.thread_time()
        try:
            return self.fn(*args)
        finally:
            self.seconds += time.thread_time() - started


TIMED: dict[str, tuple[tuple[type, str], ...]] = {
    "pipeline": ((Pipeline, "filter"), (TwinService, "apply")),
    "audit": ((AuditLog, "_on_commit"),),
    "anomaly": ((AnomalyService, "observe"),),
    "uplink": (
        (_Batches, "__call__"),
        (Pipeline, "filter"),
        (TwinService, "apply"),
        (WriterStore, "write"),
        (AnomalyService, "observe"),
    ),  # the journal's write runs the audit's hook
}
"""The methods timed on the thread they run on: each small stage's own work, and in the last run
every stage but the uplink's (``WriterStore.write`` includes the audit's commit hook)."""


@contextlib.contextmanager
def _timing(cls: type, name: str) -> Iterator[_Timed]:
    """Every call of the method ``cls.name`` timed (in this process, while the block runs)."""
    original = cls.__dict__[name]
    timed = _Timed(original)

    def method(self: object, *args: Any) -> Any:  # a function, so it binds to the instance as the original did
        return timed(self, *args)

    setattr(cls, name, method)
    try:
        yield timed
    finally:
        setattr(cls, name, original)


@contextlib.asynccontextmanager
async def _broker(needed: bool) -> AsyncIterator[Mosquitto | None]:
    if not needed:
        yield None
        return
    async with Mosquitto() as broker:
        yield broker


class _Measured(NamedTuple):
    readings: int
    wall: float
    cpu: float
    timed: float
    """CPU seconds of the methods timed where they run (the stage's own work, for the small stages)."""


async def _stage(stage: str, seconds: float, tmp: Path) -> _Measured:
    """Readings pushed with everything up to ``stage`` on, timing what runs in ``stage`` itself."""
    with contextlib.ExitStack() as stack:
        timed = [stack.enter_context(_timing(cls, name)) for cls, name in TIMED.get(stage, ())]
        n, wall, cpu = await _push(stage, seconds, tmp)
    return _Measured(n, wall, cpu, sum(t.seconds for t in timed))


async def _push(stage: str, seconds: float, tmp: Path) -> tuple[int, float, float]:
    """Readings pushed with everything up to ``stage`` on: (count, wall s, CPU s)."""
    level = STAGES.index(stage)
    state = tmp / stage
    config = _config(state)
    make = _Batches([p.id for p in config.devices[0].points])
    clock = SystemClock()
    if level == 0:
        n, cpu, started = 0, time.process_time(), time.perf_counter()
        while time.perf_counter() - started < seconds:
            make()
            n += BATCH
        return n, time.perf_counter() - started, time.process_time() - cpu
    async with (
        _broker(level >= 5) as broker,
        Journal.open(state / "journal.sqlite3", JournalConfig(), clock=clock) as journal,
    ):
        if level >= 3:
            await AuditLog.attach(journal, state_dir=state, config=AuditConfig(), origin="bench/pipeline", clock=clock)
        twins = TwinService(config)
        pipeline = Pipeline(config, journal, twins)
        async with asyncio.TaskGroup() as tg:
            tasks = []
            if level >= 4:
                service = AnomalyService(config, twins, pipeline.record, clock=clock)
                tasks.append(tg.create_task(service.run(), name="bench.anomaly"))
            uplink: MqttUplink | None = None
            if broker is not None:
                uplink_config = MqttUplinkConfig(host=broker.host, port=broker.port, plaintext=True, batch_age=0.01)
                uplink = MqttUplink(uplink_config, gateway="bench", journal=journal, clock=clock)
                tasks.append(tg.create_task(uplink.run(), name="bench.uplink"))
            await asyncio.sleep(0.1)  # services started and subscribed
            n, cpu, started = 0, time.process_time(), time.perf_counter()
            while time.perf_counter() - started < seconds:
                batch = make()
                if level == 1:
                    await journal.append(batch)
                else:
                    await pipeline(batch)
                n += BATCH
            if uplink is not None:  # the run ends once the uplink's cursor has passed every reading
                async with asyncio.timeout(UPLINK_DRAIN_LIMIT):
                    while not uplink.stats().connected or any(uplink.stats().lag.values()):  # noqa: ASYNC110
                        await asyncio.sleep(0.005)
            elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
            for task in tasks:
                task.cancel()
    return n, elapsed, cpu


def _raw_sqlite(path: Path, seconds: float) -> float:
    """Rows per CPU-second of plain ``executemany`` of the journal's rows into its own schema."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={JournalConfig().synchronous.value}")  # as the journal under test
    conn.executescript(SCHEMA)
    make = _Batches([f"a{a}/p{p}" for a in range(ASSETS) for p in range(POINTS)])
    n, cpu, started = 0, time.process_time(), time.perf_counter()
    while time.perf_counter() - started < seconds:
        rows = [(n + i, 0, i % (ASSETS * POINTS), r.ts_gateway, encode_reading(r, n + i)) for i, r in enumerate(make())]
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany("INSERT INTO entry(seq, kind, point_id, ts, body) VALUES (?,?,?,?,?)", rows)
        conn.execute("COMMIT")
        n += BATCH
    rate = n / (time.process_time() - cpu)
    conn.close()
    return rate


async def run(seconds: float) -> list[Row]:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        raw = _raw_sqlite(root / "raw.sqlite3", seconds)
        measured = {stage: await _stage(stage, seconds, root) for stage in STAGES}
        async with Journal.open(root / "pipeline" / "journal.sqlite3", JournalConfig(), clock=SystemClock()) as j:
            entries = await j.read(0, 1000)
    us = {stage: m.cpu / m.readings * 1e6 for stage, m in measured.items()}
    own = {stage: m.timed / m.readings * 1e6 for stage, m in measured.items()}
    n_all, wall_all, cpu_all, _ = measured["uplink"]
    n_audit, _, cpu_audit, _ = measured["audit"]
    n_pipe, wall_pipe, _, _ = measured["pipeline"]
    wire = len(encode_batch("gw", entries)) / len(entries)
    sqlite_raw = "same readings made, encoded, raw sqlite3 executemany"
    return [
        Row("pipeline", "ingest, all stages, wall clock", n_all / wall_all, "readings/s"),
        Row("pipeline", "ingest, all stages, per CPU-second (1 core)", n_all / cpu_all, "readings/s", raw, sqlite_raw),
        Row("pipeline", "ingest: filter → journal → twins (1 core)", n_pipe / wall_pipe, "readings/s"),
        Row("pipeline", "ingest with the audit, per CPU-second (1 core)", n_audit / cpu_audit, "readings/s", raw,
            sqlite_raw),
        Row("pipeline", "cost per reading, all stages", us["uplink"], "µs CPU"),
        Row("pipeline", "stage: readings made (as a driver does)", us["readings"], "µs CPU"),
        Row("pipeline", "stage: journal append (encode, SQLite commit)", us["journal"] - us["readings"], "µs CPU"),
        Row("pipeline", "stage: deadband filter + twins", own["pipeline"], "µs CPU"),
        Row("pipeline", "stage: audit (leaf hash, Merkle tree, tables)", own["audit"], "µs CPU"),
        Row("pipeline", "stage: anomaly (baseline detector, on the loop)", own["anomaly"], "µs CPU"),
        Row("pipeline", "stage: uplink cursor (read, encode, MQTT QoS 1; + untimed glue)", us["uplink"] - own["uplink"],
            "µs CPU"),
        Row("uplink", "bytes per reading on the wire (1,000/batch)", wire, "B", len(entries[0].body),
            "uncompressed body"),
    ]  # fmt: skip
