"""What the detectors learned survives a restart: baselines, thresholds and active anomalies are saved to the
state directory and restored onto unchanged detectors; changed ones start over; a crash loses one interval."""

from __future__ import annotations

import asyncio
import logging
import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import msgspec
import pytest

from avila_edge.anomaly import AnomalyService, ModelRegistry
from avila_edge.anomaly.detectors import AdaptiveThreshold, Baseline, ThresholdMemory
from avila_edge.anomaly.registry import SHIPPED
from avila_edge.anomaly.state import STATE_FILE, StateStore
from avila_edge.config import parse_config
from avila_edge.config.model import GatewayConfig, JournalConfig
from avila_edge.core import Event, ManualClock, Reading, SystemClock
from avila_edge.journal import EntryKind, Journal
from avila_edge.runtime.pipeline import Pipeline
from avila_edge.twins.service import TwinService
from hil.plant import PumpPlant

from .conftest import ROOT, add_version, plant, site_text

BASELINE = """anomaly:
  state_save_interval: 1h
  detectors:
    - id: health
      asset_type: pump
      window: {window}
      features: [{{point: flow}}, {{point: current}}, {{point: vibration}}, {{point: pressure}}]
      threshold: {{warmup: 10, raise_after: 2, clear_after: 2}}
"""
PLANT_FEATURES = (
    "[" + ", ".join(f"{{{{point: {f.point}, aggregation: {f.aggregation.value}}}}}" for f in plant.FEATURES) + "]"
)
DIRECT = BASELINE.replace(
    "[{{point: flow}}, {{point: current}}, {{point: vibration}}, {{point: pressure}}]", PLANT_FEATURES
)
"""The same detector on the plant's eight features, for windows fed straight from the plant."""


def config(tmp_path: Path, section: str) -> GatewayConfig:
    return parse_config(site_text(section, state_dir=str(tmp_path / "state")), filename="site.yaml")


def readings(pump: PumpPlant, second: int) -> list[Reading]:
    ns = int((plant.START + second) * 1e9)
    return [
        Reading(point=f"pump1/{name}", value=value, ts_source=ns, ts_gateway=ns)
        for name, value in plant.samples(pump).items()
    ]


class Run:
    """One life of the gateway's anomaly path: the real journal, pipeline, twins and service."""

    def __init__(self, service: AnomalyService, twins: TwinService, events: list[Event], shown_at_start: object):
        self.service, self.twins, self.events, self.shown_at_start = service, twins, events, shown_at_start

    @property
    def anomalies(self) -> list[tuple[str, float]]:
        return [(e.attrs["state"], e.ts / 1e9 - plant.START) for e in self.events if e.kind == "anomaly"]


async def live(
    tmp_path: Path, cfg: GatewayConfig, pump: PumpPlant, seconds: range, act: Callable[[int], None] = lambda s: None
) -> Run:
    async with Journal.open(tmp_path / "j.sqlite3", JournalConfig(), clock=SystemClock()) as journal:
        first = journal.next_seq
        twins = TwinService(cfg)
        pipeline = Pipeline(cfg, journal, twins)
        service = AnomalyService(cfg, twins, pipeline.record, clock=SystemClock())
        async with asyncio.TaskGroup() as tg:
            task = tg.create_task(service.run(), name="anomaly")
            async with asyncio.timeout(3):
                await service.started.wait()
            shown = twins.snapshot("pump1")["anomaly"]
            for second in seconds:
                act(second)
                pump.step(1.0)
                await pipeline(readings(pump, second))
                await asyncio.sleep(0)
            for _ in range(20):
                await asyncio.sleep(0)
            task.cancel()  # as the gateway stops its services (shutdown, or a restart on a new bundle)
        await journal.flush()
        entries = await journal.read(first, 100_000, kinds=[EntryKind.EVENT])
    return Run(service, twins, [e.event() for e in entries if e.point is None], shown)


async def test_a_restarted_service_detects_on_its_first_windows_without_a_new_warmup(tmp_path: Path) -> None:
    cfg = config(tmp_path, BASELINE.format(window="10s"))
    pump = PumpPlant(seed=3)
    first = await live(tmp_path, cfg, pump, range(1, 301))
    learned = first.twins.snapshot("pump1")["anomaly"]["health"]  # type: ignore[index]
    assert learned["learning"] is False and first.anomalies == []
    assert first.service.counters.saves == 1, "saved once, at shutdown (the interval is an hour)"
    assert (tmp_path / "state" / STATE_FILE).exists()

    def fault(second: int) -> None:
        if second == 301:
            pump.block_inlet(0.3)

    second = await live(tmp_path, cfg, pump, range(301, 361), fault)
    assert second.service.counters.restored == 1 and second.service.counters.discarded == 0
    assert second.shown_at_start["health"]["learning"] is False  # type: ignore[index]
    assert second.shown_at_start["health"]["threshold"] == learned["threshold"]  # type: ignore[index]
    # without the saved state the baseline would learn for 10 windows and its threshold for 10 more
    assert [state for state, _ in second.anomalies] == ["start"]
    assert second.anomalies[0][1] <= 301 + 3 * 10, "within three windows of the fault, on the first run's learning"


async def test_an_anomaly_active_before_a_restart_stays_active_and_clears_once(tmp_path: Path) -> None:
    cfg = config(tmp_path, BASELINE.format(window="10s"))
    pump = PumpPlant(seed=3)

    def fault(second: int) -> None:
        if second == 250:
            pump.block_inlet(0.3)
        if second == 330:
            pump.clear_faults()

    first = await live(tmp_path, cfg, pump, range(1, 301), fault)
    assert [state for state, _ in first.anomalies] == ["start"]
    since = first.twins.snapshot("pump1")["anomaly"]["health"]["since"]  # type: ignore[index]

    second = await live(tmp_path, cfg, pump, range(301, 401), fault)
    shown = second.shown_at_start["health"]  # type: ignore[index]
    assert shown["active"] is True and shown["since"] == since, "the twin shows it from the first moment"
    assert [state for state, _ in second.anomalies] == ["clear"], "no second start for the same anomaly"
    assert second.anomalies[0][1] > 330
    assert second.service.counters.anomalies == 0


def windows(seconds: float, seed: int = 1) -> list[object]:
    return list(plant.run(seconds, plant.steady_duty(), seed=seed))


async def learn_directly(
    cfg: GatewayConfig, clock: ManualClock, n: int, registry: ModelRegistry | None = None
) -> tuple[int, ThresholdMemory]:
    """Feed ``n`` windows of normal operation and save; what the detector learned."""
    service = AnomalyService(cfg, TwinService(cfg), _nothing, clock=clock, registry=registry)
    await service.start()
    watch = service._watches["pump1"][0]
    for w in windows(n * 10.0):
        service.window(watch, w)  # type: ignore[arg-type]
    while service._pending:
        await service.infer_pending()
    await service.save()
    service.close()
    assert service.counters.saves == 1
    return watch.windows, watch.threshold.memory()


async def _nothing(events: object) -> None:
    pass


async def test_a_changed_detector_discards_its_saved_state_and_says_what_changed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clock = ManualClock()
    cfg = config(tmp_path, DIRECT.format(window="10s"))
    learned, memory = await learn_directly(cfg, clock, 30)
    same = AnomalyService(cfg, TwinService(cfg), _nothing, clock=clock)
    await same.start()
    assert same.counters.restored == 1 and same._watches["pump1"][0].threshold.learned
    assert same._watches["pump1"][0].windows == learned > 20
    assert same._watches["pump1"][0].threshold.memory() == memory

    changed_cfg = config(tmp_path, DIRECT.format(window="20s"))
    changed = AnomalyService(changed_cfg, TwinService(changed_cfg), _nothing, clock=clock)
    with caplog.at_level(logging.WARNING, logger="avila_edge.anomaly"):
        await changed.start()
    assert changed.counters.restored == 0 and changed.counters.discarded == 1
    watch = changed._watches["pump1"][0]
    assert not watch.threshold.learned and watch.baseline is not None and watch.baseline.n == 0
    assert "pump1/health: saved anomaly state discarded, the detector changed: window 10.0 → 20.0" in caplog.text

    renamed_cfg = config(tmp_path, DIRECT.format(window="10s").replace("id: health", "id: wear"))
    renamed = AnomalyService(renamed_cfg, TwinService(renamed_cfg), _nothing, clock=clock)
    with caplog.at_level(logging.WARNING, logger="avila_edge.anomaly"):
        await renamed.start()
    assert renamed.counters.discarded == 1 and renamed.states()[0].detector == "wear"
    assert "pump1/health: saved anomaly state discarded: no such detector on this asset any more" in caplog.text


async def test_an_onnx_detector_keeps_its_state_for_the_same_model_version_only(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    registry = ModelRegistry(tmp_path / "models", shipped=None)
    add_version(registry, "pump-ae", "1", SHIPPED / "pump-ae" / "1")
    section = "anomaly:\n  detectors:\n    - {id: health, asset_type: pump, detector: onnx, model: pump-ae}\n"
    cfg = config(tmp_path, section)
    clock = ManualClock()
    _, memory = await learn_directly(cfg, clock, 80, registry)  # the manifest's warm-up is 60 windows
    assert memory.learned

    again = AnomalyService(cfg, TwinService(cfg), _nothing, clock=clock, registry=registry)
    await again.start()
    th = again._watches["pump1"][0].threshold
    assert again.counters.restored == 1 and th.memory() == memory
    again.close()

    add_version(registry, "pump-ae", "2", SHIPPED / "pump-ae" / "1")
    registry.activate("pump-ae", "2")
    newer = AnomalyService(cfg, TwinService(cfg), _nothing, clock=clock, registry=registry)
    with caplog.at_level(logging.WARNING, logger="avila_edge.anomaly"):
        await newer.start()
    newer.close()
    assert newer.counters.restored == 0 and newer.counters.discarded == 1
    assert not newer._watches["pump1"][0].threshold.learned
    assert "model 'pump-ae@1' → 'pump-ae@2'" in caplog.text


async def test_a_damaged_state_file_is_logged_and_the_detectors_learn_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = config(tmp_path, BASELINE.format(window="10s"))
    path = tmp_path / "state" / STATE_FILE
    path.parent.mkdir(parents=True)
    path.write_bytes(b"\x93\x01torn")
    service = AnomalyService(cfg, TwinService(cfg), _nothing, clock=ManualClock())
    with caplog.at_level(logging.ERROR, logger="avila_edge.anomaly"):
        await service.start()
    assert service.counters.restored == 0
    assert f"{path}: unreadable anomaly state" in caplog.text


def test_memories_round_trip_and_refuse_what_does_not_fit() -> None:
    baseline = Baseline(3, warmup=4, history=100)
    for i in range(9):
        baseline.learn([i, 2.0 * i, 5.0])
    copy = Baseline(3, warmup=4, history=100)
    copy.recall(baseline.memory())
    assert copy.memory() == baseline.memory() and copy.score([1, 2, 5]) == baseline.score([1, 2, 5])
    with pytest.raises(ValueError, match="3 values saved, 2 expected"):
        Baseline(2, warmup=4, history=100).recall(baseline.memory())

    th = AdaptiveThreshold(quantile=0.9, margin=1.5, warmup=5, history=20)
    for score in (1.0, 1.1, 0.9, 1.2, 1.0, 9.0, 9.0):
        th.update(score)
    assert th.active
    again = AdaptiveThreshold(quantile=0.9, margin=1.5, warmup=5, history=20)
    again.recall(th.memory())
    assert again.memory() == th.memory()
    assert [again.update(0.1) for _ in range(3)] == [None, None, "clear"]
    with pytest.raises(ValueError, match="threshold -1"):
        again.recall(msgspec.structs.replace(th.memory(), value=-1.0))


LEARNER = """
import asyncio, sys, time
from pathlib import Path
sys.path.insert(0, {tools!r})
from anomaly_plant import run, steady_duty
from avila_edge.anomaly import AnomalyService
from avila_edge.config import load_config
from avila_edge.core import SystemClock
from avila_edge.twins.service import TwinService

async def main() -> None:
    cfg = load_config(Path({config!r}))
    async def record(events):
        pass
    service = AnomalyService(cfg, TwinService(cfg), record, clock=SystemClock())
    async with asyncio.TaskGroup() as tg:
        tg.create_task(service.run())
        await service.started.wait()
        watch = service._watches["pump1"][0]
        for w in run(100_000, steady_duty(), seed=1):
            service.window(watch, w)
            print(watch.windows, service.counters.saves, time.monotonic(), flush=True)
            await asyncio.sleep(0.002)

asyncio.run(main())
"""


def test_a_kill_9_between_saves_loses_at_most_one_interval(tmp_path: Path) -> None:
    interval = 0.1
    site = tmp_path / "site.yaml"
    site.write_text(site_text(DIRECT.format(window="10s").replace("1h", "100ms"), state_dir=str(tmp_path / "s")))
    script = tmp_path / "learner.py"
    script.write_text(LEARNER.format(tools=str(ROOT / "tools"), config=str(site)))
    child = subprocess.Popen(
        [sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT
    )
    lines: list[tuple[int, int, float]] = []
    try:
        assert child.stdout is not None
        deadline = time.monotonic() + 4
        kill_at = math.inf
        while time.monotonic() < min(deadline, kill_at):
            line = child.stdout.readline()
            if not line:
                break
            windows, saves, at = line.split()
            lines.append((int(windows), int(saves), float(at)))
            if int(saves) >= 4 and kill_at == math.inf:
                kill_at = time.monotonic() + interval / 2  # in the middle between the 4th and 5th save
        os.kill(child.pid, signal.SIGKILL)  # no shutdown save
        rest, errors = child.communicate(timeout=3)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert lines and lines[-1][1] >= 4, f"the learner did not save 4 times: {errors}"
    lines += [(int(w), int(s), float(t)) for w, s, t in (ln.split() for ln in rest.splitlines() if ln.count(" ") == 2)]
    killed_at = lines[-1][2]

    saved = StateStore(tmp_path / "s" / STATE_FILE).load()[("pump1", "health")]  # a whole file, never a torn one
    learned_at = next(t for w, _, t in lines if w == saved.windows)
    assert 0 < saved.windows < lines[-1][0], "what was learned after the last save is lost, and only that"
    assert killed_at - learned_at <= interval + 0.25, f"lost {killed_at - learned_at:.3f} s of learning (+ a write)"
