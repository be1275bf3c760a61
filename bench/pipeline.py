"""End to end on one core: batches through the pipeline (filter, journal, twins, events) and uplink size."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import msgspec

from avila_edge.config.model import (
    AssetConfig,
    DataType,
    DeviceConfig,
    GatewayConfig,
    JournalConfig,
    PointConfig,
    SiteConfig,
)
from avila_edge.config.twins import AssetTypeConfig
from avila_edge.core import Reading, SystemClock
from avila_edge.journal import Journal
from avila_edge.runtime.pipeline import Pipeline
from avila_edge.sync.batch import encode_batch
from avila_edge.twins.service import TwinService
from bench._table import Row

ASSETS, POINTS, BATCH = 20, 10, 1000


def _config() -> GatewayConfig:
    pump = msgspec.convert(
        {"id": "pump", "derived": {"sum": "p0 + p1"},
         "alarms": [{"id": "hi", "value": "p2", "kind": "high", "limit": 1e12}]},
        AssetTypeConfig,
    )  # fmt: skip
    points = tuple(
        PointConfig(id=f"a{a}/p{p}", address=None, type=DataType.FLOAT64) for a in range(ASSETS) for p in range(POINTS)
    )
    return GatewayConfig(
        site=SiteConfig(id="bench"),
        assets=tuple(AssetConfig(id=f"a{a}", type="pump") for a in range(ASSETS)),
        asset_types=(pump,),
        devices=(DeviceConfig(id="d", driver="none", connection=None, points=points),),
    )


async def run(seconds: float) -> list[Row]:
    config = _config()
    ids = [p.id for p in config.devices[0].points]
    with tempfile.TemporaryDirectory() as tmp:
        async with Journal.open(Path(tmp) / "j.sqlite3", JournalConfig(), clock=SystemClock()) as journal:
            pipeline = Pipeline(config, journal, TwinService(config))
            n, started, v = 0, time.perf_counter(), 0.0
            while time.perf_counter() - started < seconds:
                now = time.time_ns()
                batch = []
                for i in range(BATCH):
                    v += 1.0
                    batch.append(Reading(point=ids[i % len(ids)], value=v, ts_source=now, ts_gateway=now))
                await pipeline(batch)
                n += BATCH
            elapsed = time.perf_counter() - started
            entries = await journal.read(0, 1000)
    wire = len(encode_batch("gw", entries)) / len(entries)
    return [
        Row("pipeline", "ingest: filter → journal → twins (1 core)", n / elapsed, "readings/s"),
        Row("pipeline", "cost per reading", elapsed / n * 1e6, "µs"),
        Row(
            "uplink",
            "bytes per reading on the wire (1,000/batch)",
            wire,
            "B",
            len(entries[0].body),
            "uncompressed body",
        ),
    ]
