"""The plant's injected faults are found within a stated number of windows, by the shipped model and by
the baseline, and a day of normal operation raises no anomaly. Rows come straight from the hil/ plant
(no network, no real time); scoring and judging are the service's own classes.

Stated figures (10-second windows, fault injected after two hours of normal operation):

| detector | bearing wear 1.0/h | inlet blocked 30 % | false anomalies, 24 h normal |
|---|---|---|---|
| shipped pump-ae@1 (duty point changing 1200-1800 rpm) | ≤ 60 windows | ≤ 3 windows | 0 |
| baseline (steady duty point) | ≤ 40 windows | ≤ 3 windows | 0 |
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
import pytest

from avila_edge.anomaly import AdaptiveThreshold, Baseline, Transition, Window, explain
from avila_edge.anomaly.onnx_model import OnnxModel
from avila_edge.anomaly.registry import SHIPPED
from hil.plant import VIBRATION_FAILURE, PumpPlant

from .conftest import plant

FAULT_AT = 7200.0
DAY = 86400.0
MODEL_BEARING_WINDOWS = 60
BASELINE_BEARING_WINDOWS = 40
INLET_WINDOWS = 3


@pytest.fixture(scope="module")
def model() -> OnnxModel:
    return OnnxModel.load(SHIPPED / "pump-ae" / "1")


Judge = Callable[[list[Window]], list[tuple[Window, list[dict[str, object]]]]]


def model_judge(model: OnnxModel) -> Judge:
    def judge(windows: list[Window]) -> list[tuple[Window, list[dict[str, object]]]]:
        p = model.manifest.threshold
        th = AdaptiveThreshold(quantile=p.quantile, margin=p.margin, warmup=p.warmup, history=p.history,
                               reference=p.reference)  # fmt: skip
        scored = model.score(np.asarray([w.row for w in windows], dtype=np.float32))
        names = [f.name for f in model.manifest.input.features]
        return [
            (w, explain(names, w.row, s, 3)) for w, s in zip(windows, scored, strict=True)
            if th.update(s.score) is Transition.START
        ]  # fmt: skip

    return judge


def baseline_judge(windows: list[Window]) -> list[tuple[Window, list[dict[str, object]]]]:
    base = Baseline(8, warmup=60, history=2000)
    th = AdaptiveThreshold(quantile=0.995, margin=1.5, warmup=60, history=2000)
    names = [f.name for f in plant.FEATURES]
    starts = []
    for w in windows:
        s = base.score(w.row)
        if s is None:
            base.learn(w.row)
            continue
        if th.update(s.score) is Transition.START:
            starts.append((w, explain(names, w.row, s, 3)))
        if not th.active and th.value is not None and s.score <= th.value:
            base.learn(w.row)
    return starts


def faulty_run(schedule: plant.Schedule, fault: Callable[[PumpPlant], None], *, seed: int) -> list[Window]:
    def with_fault(p: PumpPlant, t: float) -> None:
        schedule(p, t)
        if t == FAULT_AT:
            fault(p)

    return list(plant.run(FAULT_AT + 3600, with_fault, seed=seed))


def windows_after_fault(starts: Iterable[tuple[Window, object]]) -> list[float]:
    return [(w.end - plant.START - FAULT_AT) / plant.WINDOW for w, _ in starts]


def test_the_shipped_model_finds_bearing_wear_early_and_names_vibration(model: OnnxModel) -> None:
    windows = faulty_run(plant.varying_duty(11), lambda p: p.degrade_bearing(1.0), seed=11)
    starts = model_judge(model)(windows)
    delays = windows_after_fault(starts)
    assert delays and 0 < delays[0] <= MODEL_BEARING_WINDOWS, delays
    assert all(d > 0 for d in delays), "no anomaly before the fault"
    top = [t["feature"] for t in starts[0][1]]
    assert any(str(f).startswith("vibration") for f in top[:2]), top
    vibration = starts[0][0].row[5]
    assert vibration < 2.0 < 7.1, "found long before the ISO 10816 vibration limit would alarm"
    assert vibration < VIBRATION_FAILURE


def test_the_shipped_model_finds_a_blocked_inlet_within_three_windows_and_names_flow(model: OnnxModel) -> None:
    windows = faulty_run(plant.varying_duty(12), lambda p: p.block_inlet(0.3), seed=12)
    starts = model_judge(model)(windows)
    delays = windows_after_fault(starts)
    assert delays and 0 < delays[0] <= INLET_WINDOWS, delays
    assert "flow.mean" in [t["feature"] for t in starts[0][1]]


def test_the_baseline_finds_bearing_wear_and_a_blocked_inlet_without_any_model() -> None:
    bearing = windows_after_fault(
        baseline_judge(faulty_run(plant.steady_duty(), lambda p: p.degrade_bearing(1.0), seed=13))
    )
    inlet = baseline_judge(faulty_run(plant.steady_duty(), lambda p: p.block_inlet(0.3), seed=13))
    assert bearing and 0 < bearing[0] <= BASELINE_BEARING_WINDOWS, bearing
    delays = windows_after_fault(inlet)
    assert delays and 0 < delays[0] <= INLET_WINDOWS, delays
    assert inlet[0][1][0]["feature"] in ("flow.mean", "current.mean", "pressure.mean")


@pytest.mark.parametrize("name", ["pump-ae", "pump-iforest"])
def test_a_day_of_normal_operation_raises_no_anomaly_from_either_shipped_model(name: str) -> None:
    windows = list(plant.run(DAY, plant.varying_duty(202), seed=202))
    assert len(windows) >= 8630
    assert model_judge(OnnxModel.load(SHIPPED / name / "1"))(windows) == []


def test_a_day_of_steady_normal_operation_raises_no_anomaly_from_the_baseline() -> None:
    windows = list(plant.run(DAY, plant.steady_duty(1480), seed=203))
    assert baseline_judge(windows) == []
