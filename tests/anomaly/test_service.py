"""The anomaly service end to end: readings → twins → windows → scores → events journaled and shown in the
twin; batching across assets, bounded queue, a slow model off the event loop, models swapped at run time."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import msgspec
import numpy as np
import pytest

from avila_edge.anomaly import AnomalyService, ModelRegistry
from avila_edge.anomaly.registry import SHIPPED
from avila_edge.config import parse_config
from avila_edge.config.model import GatewayConfig, JournalConfig
from avila_edge.core import Event, ManualClock, Reading, SystemClock
from avila_edge.journal import EntryKind, Journal
from avila_edge.runtime.pipeline import Pipeline
from avila_edge.twins.service import TwinService
from hil.plant import PumpPlant

from .conftest import DATA, add_version, plant, site_text

BASELINE = """anomaly:
  detectors:
    - id: health
      asset_type: pump
      window: 10s
      features: [{point: flow}, {point: current}, {point: vibration}, {point: pressure}]
      threshold: {warmup: 10, raise_after: 2, clear_after: 2}
"""
ONNX = """anomaly:
  queue: {queue}
  max_latency: 5s
  detectors:
    - {{id: health, asset_type: pump, detector: onnx, model: {model}}}
"""


def config(section: str, tmp_path: Path, pumps: tuple[str, ...] = ("pump1",)) -> GatewayConfig:
    return parse_config(site_text(section, pumps=pumps, state_dir=str(tmp_path / "state")), filename="site.yaml")


def readings(plants: dict[str, PumpPlant], t: float) -> list[Reading]:
    ns = int((plant.START + t) * 1e9)
    return [
        Reading(point=f"{asset}/{name}", value=value, ts_source=ns, ts_gateway=ns)
        for asset, p in plants.items()
        for name, value in plant.samples(p).items()
    ]


@contextlib.asynccontextmanager
async def plant_run(
    cfg: GatewayConfig, tmp_path: Path, seconds: int, faults: Callable[[PumpPlant, int], None] | None = None
) -> AsyncIterator[tuple[Journal, AnomalyService, TwinService]]:
    """One pump of the plant run second by second through the real pipeline (journal, twins) into a
    running anomaly service; the journal is flushed and still open inside the block."""
    async with Journal.open(tmp_path / "j.sqlite3", JournalConfig(), clock=SystemClock()) as journal:
        twins = TwinService(cfg)
        pipeline = Pipeline(cfg, journal, twins)
        service = AnomalyService(cfg, twins, pipeline.record, clock=SystemClock())
        pump = PumpPlant(seed=3)
        async with asyncio.TaskGroup() as tg:
            task = tg.create_task(service.run(), name="anomaly")
            await asyncio.sleep(0)
            for second in range(1, seconds + 1):
                if faults is not None:
                    faults(pump, second)
                pump.step(1.0)
                await pipeline(readings({"pump1": pump}, second))
                await asyncio.sleep(0)
            for _ in range(20):
                await asyncio.sleep(0)
            task.cancel()
        await journal.flush()
        yield journal, service, twins


async def test_a_blocked_inlet_is_journaled_shown_in_the_twin_and_cleared(tmp_path: Path) -> None:
    def faults(pump: PumpPlant, second: int) -> None:
        if second == 250:
            pump.block_inlet(0.3)
        if second == 330:
            pump.clear_faults()

    async with plant_run(config(BASELINE, tmp_path), tmp_path, 400, faults) as (journal, service, twins):
        entries = await journal.read(0, 10_000, kinds=[EntryKind.EVENT])
    events = [e.event() for e in entries if e.point is None]
    anomalies = [e for e in events if e.kind == "anomaly"]
    assert [e.attrs["state"] for e in anomalies] == ["start", "clear"], anomalies
    start = anomalies[0]
    assert start.source == "pump1/health"
    assert 250 <= start.ts / 1e9 - plant.START <= 280, "within three windows of the fault"
    assert start.attrs["detector"] == "baseline" and start.attrs["model"] is None
    assert start.attrs["score"] > start.attrs["threshold"] > 0
    assert start.attrs["top"][0]["feature"] in ("flow.mean", "current.mean", "pressure.mean")
    assert set(start.attrs["top"][0]) == {"feature", "share", "value", "expected"}
    shown = twins.snapshot("pump1")["anomaly"]
    assert isinstance(shown, dict)
    assert shown["health"]["active"] is False and shown["health"]["detector"] == "baseline"
    assert service.counters.anomalies == 1
    assert service.incomplete == 0


async def test_onnx_windows_of_several_assets_go_to_the_model_in_one_batch(tmp_path: Path) -> None:
    pumps = ("pump1", "pump2", "pump3")
    cfg = config(ONNX.format(queue=64, model="pump-ae"), tmp_path, pumps)
    twins = TwinService(cfg)
    recorded: list[Event] = []

    async def record(events: list[Event]) -> None:
        recorded.extend(events)

    service = AnomalyService(cfg, twins, record, clock=ManualClock(), registry=ModelRegistry(tmp_path / "models"))
    await service.start()
    assert [e.attrs["state"] for e in recorded] == ["loaded"] and recorded[0].attrs["model"] == "pump-ae@1"
    plants = {p: PumpPlant(seed=i) for i, p in enumerate(pumps)}
    for second in range(1, 122):
        if second == 60:
            plants["pump2"].block_inlet(0.4)
        for p in plants.values():
            p.step(1.0)
        twins.apply(readings(plants, second))
        for asset in pumps:
            recorded += service.observe(asset)
    assert service.counters.windows == 3 * 12
    while service._pending:
        recorded += await service.infer_pending()
    service.close()
    assert service.counters.batches == 1, "36 windows of three assets in one onnxruntime call"
    anomalies = [e for e in recorded if e.kind == "anomaly"]
    assert [(e.source, e.attrs["state"]) for e in anomalies] == [("pump2/health", "start")]
    assert anomalies[0].attrs["model"] == "pump-ae@1"
    info = twins.snapshot("pump2")["anomaly"]["health"]  # type: ignore[index]
    assert info["active"] is True and info["top"][0]["feature"] == "flow.mean"
    assert twins.snapshot("pump1")["anomaly"]["health"]["active"] is False  # type: ignore[index]


async def test_an_overloaded_queue_skips_windows_and_counts_them(tmp_path: Path) -> None:
    cfg = config(ONNX.format(queue=4, model="pump-ae"), tmp_path)
    twins = TwinService(cfg)
    clock = ManualClock()

    async def record(events: list[Event]) -> None:
        pass

    service = AnomalyService(cfg, twins, record, clock=clock, registry=ModelRegistry(tmp_path / "models"))
    await service.start()
    windows = list(plant.run(100, plant.steady_duty(), seed=1))
    watch = service._watches["pump1"][0]
    for w in windows[:10]:
        service.window(watch, w)
    assert len(service._pending) == 4 and service.counters.skipped_overload == 6
    clock.advance(6.0)  # older than max_latency: skipped rather than scored late
    assert await service.infer_pending() == []
    assert service.counters.skipped_stale == 4 and service.counters.scored == 0
    service.close()


async def test_a_slow_model_never_blocks_the_event_loop(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path / "models", shipped=None)
    registry.install(DATA / "slow" / "1")
    cfg = config(ONNX.format(queue=64, model="slow"), tmp_path)

    async def record(events: list[Event]) -> None:
        pass

    service = AnomalyService(cfg, TwinService(cfg), record, clock=SystemClock(), registry=registry)
    await service.start()
    watch = service._watches["pump1"][0]
    windows = list(plant.run(80, plant.steady_duty(), seed=1))

    async def ticker(lags: list[float], done: asyncio.Event) -> None:
        while not done.is_set():
            before = time.perf_counter()
            await asyncio.sleep(0.005)
            lags.append(time.perf_counter() - before - 0.005)

    lags: list[float] = []
    done = asyncio.Event()
    async with asyncio.TaskGroup() as tg:
        tg.create_task(ticker(lags, done))
        started = time.perf_counter()
        service.config = msgspec.structs.replace(service.config, batch_max=1)  # one slow call per window
        for w in windows[:6]:
            service.window(watch, w)
            await service.infer_pending()
        busy = time.perf_counter() - started
        done.set()
    assert service.counters.scored == 6
    assert busy > 0.15, f"the model must be slow for this test to mean anything ({busy:.3f} s)"
    # a call made on the loop would stall it for a whole call (~50 ms); a loaded machine slows the calls and the
    # loop's scheduling alike, so the bound follows the measured call time there
    bound = max(0.04, 0.6 * busy / 6)
    assert max(lags) < bound, f"event loop stalled {max(lags) * 1000:.1f} ms while the model ran {busy:.2f} s"

    on_loop: list[float] = []  # the same model called on the loop, as the service never does: the ticker sees it
    done = asyncio.Event()
    async with asyncio.TaskGroup() as tg:
        tg.create_task(ticker(on_loop, done))
        await asyncio.sleep(0.02)
        assert watch.model is not None
        watch.model.score(np.asarray([windows[0].row], dtype=np.float32))
        await asyncio.sleep(0.02)
        done.set()
    service.close()
    assert max(on_loop) > 0.03


async def test_a_refused_new_version_leaves_the_running_model_and_a_good_one_replaces_it(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path / "models", shipped=None)
    source = SHIPPED / "pump-ae" / "1"
    add_version(registry, "pump-ae", "1", source)
    cfg = config(ONNX.format(queue=64, model="pump-ae"), tmp_path)
    recorded: list[Event] = []

    async def record(events: list[Event]) -> None:
        recorded.extend(events)

    twins = TwinService(cfg)
    service = AnomalyService(cfg, twins, record, clock=ManualClock(), registry=registry)
    await service.start()
    assert service.models["pump-ae"].manifest.version == "1"
    v2 = add_version(registry, "pump-ae", "2", source)
    registry.activate("pump-ae", "2")
    (v2 / "model.onnx").write_bytes(b"\x00" * 100)  # corrupted after activation (disk, bad copy ...)
    await service.load_model("pump-ae")
    assert service.models["pump-ae"].manifest.version == "1"
    assert [e.attrs["state"] for e in recorded] == ["loaded", "refused"]
    assert "pump-ae@2" in recorded[1].attrs["reason"] and recorded[1].kind == "anomaly_model"
    assert service.counters.refused_models == 1
    pump = PumpPlant(seed=5)
    for second in range(1, 32):  # and version 1 goes on scoring the asset's windows
        pump.step(1.0)
        twins.apply(readings({"pump1": pump}, second))
        recorded += service.observe("pump1")
    while service._pending:
        recorded += await service.infer_pending()
    assert service.counters.scored == 3 and service.counters.failed == 0
    shown = twins.snapshot("pump1")["anomaly"]["health"]  # type: ignore[index]
    assert shown["model"] == "pump-ae@1" and shown["score"] is not None and shown["problem"] is None
    add_version(registry, "pump-ae", "3", source)
    registry.activate("pump-ae", "3")
    await service.load_model("pump-ae")
    assert service.models["pump-ae"].manifest.version == "3"
    assert service._watches["pump1"][0].model is service.models["pump-ae"]
    assert recorded[-1].attrs == {"state": "loaded", "model": "pump-ae@3", "reason": ""}


def test_detectors_of_a_type_are_replaced_per_asset_by_an_asset_detector_of_the_same_id(tmp_path: Path) -> None:
    section = """anomaly:
  detectors:
    - {id: health, asset_type: pump, features: [{point: flow}]}
    - {id: health, asset: pump2, features: [{point: vibration}], window: 30s}
"""
    cfg = config(section, tmp_path, ("pump1", "pump2"))

    async def record(events: list[Event]) -> None:
        pass

    service = AnomalyService(cfg, TwinService(cfg), record, clock=ManualClock())
    assert [w.names for w in service._watches["pump1"]] == [["flow.mean"]]
    assert [(w.names, w.builder.window) for w in service._watches["pump2"]] == [(["vibration.mean"], 30.0)]


@pytest.fixture(autouse=True)
def _quiet(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("CRITICAL", logger="avila_edge.anomaly")


async def test_the_running_service_follows_an_activation_in_the_registry(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path / "models", shipped=None)
    add_version(registry, "pump-ae", "1", SHIPPED / "pump-ae" / "1")
    cfg = config(ONNX.format(queue=64, model="pump-ae"), tmp_path)
    clock = ManualClock()

    async def record(events: list[Event]) -> None:
        pass

    service = AnomalyService(cfg, TwinService(cfg), record, clock=clock, registry=registry)
    async with asyncio.TaskGroup() as tg:
        task = tg.create_task(service.run())
        async with asyncio.timeout(3):
            while "pump-ae" not in service.models:
                await asyncio.sleep(0.01)
        add_version(registry, "pump-ae", "2", SHIPPED / "pump-ae" / "1")
        registry.activate("pump-ae", "2")
        async with asyncio.timeout(3):
            while service.models["pump-ae"].manifest.version != "2":
                clock.advance(cfg.anomaly.reload_interval)
                await asyncio.sleep(0.01)
        task.cancel()
    assert service._executor is None, "the worker thread pool is shut down with the service"


async def test_a_point_held_back_by_its_deadband_is_carried_by_the_heartbeat_and_windows_stay_complete(
    tmp_path: Path,
) -> None:
    """A flow reading that never leaves its deadband (a frozen sensor, or a very steady one) is journaled
    only at the pipeline's heartbeat; the windows carry it from one heartbeat to the next, so the
    detector keeps judging the asset instead of going silent."""
    text = site_text(BASELINE, state_dir=str(tmp_path / "state"))
    flow = next(line for line in text.splitlines() if "pump1/flow," in line)
    text = text.replace(flow, flow.replace("type: float32}", "type: float32, deadband: 1000000}"))
    cfg = parse_config(text, filename="site.yaml")
    assert next(p for p in cfg.devices[0].points if p.id == "pump1/flow").deadband == 1000000
    async with plant_run(cfg, tmp_path, 600) as (journal, service, _):
        flows = [r for r in await journal.history("pump1/flow", 0, 2**62) if r.point == "pump1/flow"]
    assert 10 <= len(flows) <= 12, "flow journaled once a heartbeat (60 s), not every second"
    assert service.incomplete == 0, "no window lost its flow feature"
    assert service.counters.windows >= 58, "every 10 s window of the 600 s judged"
