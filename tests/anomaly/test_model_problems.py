"""Models that cannot do their job are seen by the fleet and the console: a detector whose features differ from
its model's is journaled (``anomaly_model`` ``mismatch``) and shown in the twin; a model that fails at run time
loses only the windows it fails on, is counted and reported once, and every other asset goes on being scored."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from pathlib import Path

import pytest

from avila_edge.anomaly import AnomalyService, ModelRegistry
from avila_edge.config import parse_config
from avila_edge.config.model import GatewayConfig, JournalConfig
from avila_edge.core import Event, ManualClock, Reading, SystemClock
from avila_edge.journal import EntryKind, Journal
from avila_edge.runtime.pipeline import Pipeline
from avila_edge.twins.service import TwinService
from hil.plant import PumpPlant

from .conftest import DATA, plant, site_text

MISMATCH = """anomaly:
  detectors:
    - id: health
      asset_type: pump
      detector: onnx
      model: pump-ae
      features: [{point: flow}, {point: current}]
"""


def config(section: str, tmp_path: Path, pumps: tuple[str, ...] = ("pump1",)) -> GatewayConfig:
    return parse_config(site_text(section, pumps=pumps, state_dir=str(tmp_path / "state")), filename="site.yaml")


async def test_a_detector_whose_features_differ_from_its_model_is_journaled_and_shown_in_the_twin(
    tmp_path: Path,
) -> None:
    cfg = config(MISMATCH, tmp_path, ("pump1", "pump2"))
    async with Journal.open(tmp_path / "j.sqlite3", JournalConfig(), clock=SystemClock()) as journal:
        twins = TwinService(cfg)
        pipeline = Pipeline(cfg, journal, twins)
        service = AnomalyService(cfg, twins, pipeline.record, clock=ManualClock(), registry=ModelRegistry(tmp_path))
        await service.start()
        await journal.flush()
        events = [e.event() for e in await journal.read(0, 100, kinds=[EntryKind.EVENT])]
    service.close()
    assert [(e.kind, e.source, e.attrs["state"]) for e in events] == [
        ("anomaly_model", "model/pump-ae", "loaded"),
        ("anomaly_model", "model/pump-ae", "mismatch"),
    ]
    mismatch = events[1].attrs
    assert mismatch["model"] == "pump-ae@1" and mismatch["detector"] == "health"
    assert mismatch["assets"] == ["pump1", "pump2"]
    reason = str(mismatch["reason"])
    assert "its features (flow.mean, current.mean) differ from pump-ae@1's (speed_setpoint.mean, flow.mean" in reason
    for asset in ("pump1", "pump2"):
        shown = twins.snapshot(asset)["anomaly"]["health"]  # type: ignore[index]
        assert shown["problem"] == reason and shown["active"] is False and shown["model"] == "pump-ae@1"
    assert service._watches.get("pump1") == []


async def test_a_refused_model_shows_in_the_twins_of_its_idle_detectors(
    own_registry: ModelRegistry, tmp_path: Path
) -> None:
    (own_registry.root / "pump-ae" / "1" / "model.onnx").write_bytes(b"\x00" * 64)
    cfg = config(
        "anomaly:\n  detectors:\n    - {id: health, asset_type: pump, detector: onnx, model: pump-ae}\n", tmp_path
    )
    recorded: list[Event] = []

    async def record(events: Sequence[Event]) -> None:
        recorded.extend(events)

    twins = TwinService(cfg)
    service = AnomalyService(cfg, twins, record, clock=ManualClock(), registry=own_registry)
    await service.start()
    assert [e.attrs["state"] for e in recorded] == ["refused"]
    shown = twins.snapshot("pump1")["anomaly"]["health"]  # type: ignore[index]
    assert shown["problem"].startswith("model pump-ae refused: pump-ae@1: ")
    assert "sha256" in shown["problem"]


LOOKUP = """anomaly:
  detectors:
    - {id: health, asset_type: pump, detector: onnx, model: lookup}
"""
OVERSPEED = 2500.0
"""rpm: beyond the lookup model's table, so onnxruntime fails on this pump's windows."""


def readings(plants: dict[str, PumpPlant], t: int, overspeed: set[str]) -> list[Reading]:
    ns = int((plant.START + t) * 1e9)
    out = []
    for asset, p in plants.items():
        for name, value in plant.samples(p).items():
            v = OVERSPEED if name == "speed_setpoint" and asset in overspeed else value
            out.append(Reading(point=f"{asset}/{name}", value=v, ts_source=ns, ts_gateway=ns))
    return out


async def test_a_model_failing_at_run_time_loses_only_its_failing_windows_and_the_service_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    registry = ModelRegistry(tmp_path / "models", shipped=None)
    registry.install(DATA / "lookup" / "1")
    pumps = ("pump1", "pump2", "pump3")
    cfg = config(LOOKUP, tmp_path, pumps)
    twins = TwinService(cfg)
    recorded: list[Event] = []

    async def record(events: Sequence[Event]) -> None:
        recorded.extend(events)

    service = AnomalyService(cfg, twins, record, clock=ManualClock(), registry=registry)
    plants = {p: PumpPlant(seed=i) for i, p in enumerate(pumps)}

    async def feed(seconds: range, overspeed: set[str]) -> None:
        for second in seconds:
            for p in plants.values():
                p.step(1.0)
            twins.apply(readings(plants, second, overspeed))
            await asyncio.sleep(0)

    async def settle(scored: int, failed: int) -> None:
        async with asyncio.timeout(3):
            while (service.counters.scored, service.counters.failed) != (scored, failed):
                await asyncio.sleep(0.005)

    caplog.set_level(logging.ERROR, logger="avila_edge.anomaly")
    async with asyncio.TaskGroup() as tg:
        task = tg.create_task(service.run(), name="anomaly")
        async with asyncio.timeout(3):
            await service.started.wait()
        await feed(range(1, 122), {"pump3"})  # 12 windows closed per pump; pump3 runs beyond the model's table
        await settle(scored=2 * 12, failed=12)
        failing = twins.snapshot("pump3")["anomaly"]["health"]  # type: ignore[index]
        healthy = twins.snapshot("pump1")["anomaly"]["health"]  # type: ignore[index]
        await feed(range(122, 152), set())  # pump3 back at a normal speed: scored again, by the same service
        await settle(scored=2 * 12 + 3 * 3, failed=12)
        assert not task.done(), "the service survived"
        assert service.counters.batches < service.counters.windows / 2, "failing windows shared batches with others"
        task.cancel()
    assert "indices element out of data bounds, idx=2500" in failing["problem"]
    assert failing["score"] is None and failing["active"] is False
    assert healthy["problem"] is None and healthy["score"] is not None
    back = twins.snapshot("pump3")["anomaly"]["health"]  # type: ignore[index]
    assert back["problem"] is None and back["score"] is not None
    assert [e.kind for e in recorded] == ["anomaly_model"], "nothing journaled for the failed windows"
    reports = [r for r in caplog.records if "failed at run time" in r.getMessage()]
    assert len(reports) == 1, "reported once a minute, not once a window"
    assert "model lookup@1 failed at run time on 1 windows" in reports[0].getMessage()
    assert "pump3" in reports[0].getMessage()
