"""Anomaly detection: windows scored per second by each shipped model batched and unbatched (with
onnxruntime alone as the same-run baseline) and by the streaming baseline, and the end-to-end latency
from the reading that closes a window to the anomaly event committed in the journal.

The latency run feeds plant readings through the real pipeline (journal, twins) into a running
``AnomalyService``; the plant's inlet is blocked and unblocked every window and the manual threshold
has no hysteresis, so every window after the first raises or clears an anomaly.
"""

from __future__ import annotations

import asyncio
import importlib.util
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

import numpy as np
import numpy.typing as npt

from avila_edge.anomaly import AnomalyService, Baseline, ModelRegistry
from avila_edge.anomaly.onnx_model import OnnxModel
from avila_edge.anomaly.registry import SHIPPED
from avila_edge.config import parse_config
from avila_edge.config.model import JournalConfig
from avila_edge.core import Event, Reading, SystemClock
from avila_edge.journal import Journal
from avila_edge.runtime.pipeline import Pipeline
from avila_edge.twins.service import TwinService
from bench._table import Row
from hil.plant import PumpPlant

ROOT = Path(__file__).resolve().parents[1]
BATCH = 256


def _plant_tools() -> ModuleType:
    if "anomaly_plant" not in sys.modules:
        spec = importlib.util.spec_from_file_location("anomaly_plant", ROOT / "tools" / "anomaly_plant.py")
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules["anomaly_plant"] = module
        spec.loader.exec_module(module)
    return sys.modules["anomaly_plant"]


def _rate(fn: object, rows_per_call: int, seconds: float) -> float:
    call = fn  # a callable taking no argument
    n, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        call()  # type: ignore[operator]
        n += rows_per_call
    return n / (time.perf_counter() - started)


MODELS = ("pump-ae", "pump-iforest")


def _model_rows(name: str, rows: npt.NDArray[np.float32], seconds: float) -> list[Row]:
    """Windows/s of one shipped model through ``OnnxModel.score``, beside onnxruntime alone."""
    model = OnnxModel.load(SHIPPED / name / "1")
    session, m = model._session, model.manifest
    x = model.normalise(rows)
    raw_1 = _rate(lambda: session.run([m.output.name], {m.input.name: x[:1]}), 1, seconds)
    raw_b = _rate(lambda: session.run([m.output.name], {m.input.name: x}), BATCH, seconds)
    one = _rate(lambda: model.score(rows[:1]), 1, seconds)
    batched = _rate(lambda: model.score(rows), BATCH, seconds)
    return [
        Row("anomaly", f"{name} windows/s, unbatched", one, "windows/s", raw_1, "onnxruntime alone, batch 1"),
        Row("anomaly", f"{name} windows/s, batch {BATCH}", batched, "windows/s", raw_b,
            f"onnxruntime alone, batch {BATCH}"),
        Row("anomaly", f"{name} batched vs unbatched (batch {BATCH})", batched, "windows/s", one, "unbatched"),
    ]  # fmt: skip


def _throughput(seconds: float) -> list[Row]:
    plant = _plant_tools()
    rows = np.asarray([w.row for w in plant.run(BATCH * 10 + 10, plant.varying_duty(3), seed=3)][:BATCH], np.float32)
    base = Baseline(rows.shape[1], warmup=10, history=2000)
    for r in rows[:20]:
        base.learn(r.tolist())
    listed = [r.tolist() for r in rows]
    baseline = _rate(lambda: [base.score(r) for r in listed], BATCH, seconds)
    return [row for name in MODELS for row in _model_rows(name, rows, seconds)] + [
        Row("anomaly", "baseline detector windows/s", baseline, "windows/s"),
    ]


SITE = """site: {{id: bench}}
state_dir: {state}
asset_types: [{{id: pump}}]
assets: [{{id: pump1, type: pump}}]
devices:
  - id: plc1
    driver: modbus
    connection: {{host: 127.0.0.1, port: 15020}}
    points:
{points}
anomaly:
  detectors:
    - id: health
      asset_type: pump
      detector: onnx
      model: pump-ae
      threshold: {{manual: 0.2, raise_after: 1, clear_after: 1}}
"""


async def _latency(seconds: float) -> list[Row]:
    plant = _plant_tools()
    names = ("speed_setpoint", "flow", "pressure", "current", "vibration", "motor_temperature")
    points = "\n".join(
        f"      - {{id: pump1/{n}, address: {{table: holding, address: {i * 2}}}, type: float32}}"
        for i, n in enumerate(names)
    )
    latencies: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        config = parse_config(SITE.format(state=tmp, points=points), filename="bench.yaml")
        async with Journal.open(Path(tmp) / "j.sqlite3", JournalConfig(), clock=SystemClock()) as journal:
            twins = TwinService(config)
            pipeline = Pipeline(config, journal, twins)
            arrived = asyncio.Event()

            async def record(events: Sequence[Event]) -> None:
                await pipeline.record(events)
                if any(e.kind == "anomaly" for e in events):
                    arrived.set()

            service = AnomalyService(config, twins, record, clock=SystemClock(),
                                     registry=ModelRegistry(Path(tmp) / "models"))  # fmt: skip
            pump = PumpPlant(seed=5)
            async with asyncio.TaskGroup() as tg:
                task = tg.create_task(service.run())
                await asyncio.sleep(0.2)
                started, second = time.perf_counter(), 0
                while time.perf_counter() - started < seconds or len(latencies) < 5:
                    second += 1
                    if second % 10 == 0 and second > 10:  # every window opposite to the one before
                        pump.block_inlet(0.0 if pump.inlet_blockage else 0.5)
                    pump.step(1.0)
                    ns = int((plant.START + second) * 1e9)
                    batch = [Reading(point=f"pump1/{k}", value=v, ts_source=ns, ts_gateway=ns)
                             for k, v in plant.samples(pump).items()]  # fmt: skip
                    closing = second % 10 == 0 and second >= 30
                    arrived.clear()
                    t0 = time.perf_counter()
                    await pipeline(batch)
                    if closing:
                        async with asyncio.timeout(5):
                            await arrived.wait()
                        latencies.append(time.perf_counter() - t0)
                    if len(latencies) > 2000:
                        break
                task.cancel()
    latencies.sort()
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    return [
        Row("anomaly", "reading → anomaly event journaled, p50", statistics.median(latencies) * 1000, "ms"),
        Row("anomaly", "reading → anomaly event journaled, p99", p99 * 1000, "ms"),
    ]


async def run(seconds: float) -> list[Row]:
    return _throughput(seconds) + await _latency(seconds)
