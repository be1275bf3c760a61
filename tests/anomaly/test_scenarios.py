"""A scripted hour of simulated operation per hil/ fault scenario (degrading bearing, blocked inlet, a
flow sensor stuck at its reading) and one of normal operation: precision, recall and detection delay
of the shipped models and of the baseline, asserted against the figures stated in docs/anomaly.md
(section "Scripted hour"). Rows come straight from the hil/ plant (no network, no real time); scoring
and judging are the service's own classes (``OnnxModel``, ``Baseline``, ``AdaptiveThreshold``).

Each run: two hours of normal operation (the detectors learn; a false alarm here counts too), then the
scripted hour. Varying script: 1500 rpm, 1350 at minute 10, 1650 at 25, 1450 at 40, 1700 at 50; the
baseline's steady script stays at 1500 rpm. The fault (if any) starts at minute 20 and stays.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import pytest

from avila_edge.anomaly import AdaptiveThreshold, Baseline, Window
from avila_edge.anomaly.onnx_model import OnnxModel
from avila_edge.anomaly.registry import SHIPPED
from hil.plant import PumpPlant

from .conftest import plant

WARM = 7200.0
HOUR = 3600.0
FAULT_AT = 1200.0
"""Seconds into the scripted hour."""
VARYING = ((0.0, 1500.0), (600.0, 1350.0), (1500.0, 1650.0), (2400.0, 1450.0), (3000.0, 1700.0))
STEADY = ((0.0, 1500.0),)
SEEDS = (1, 2, 3)

FAULTS: dict[str, Callable[[PumpPlant], None]] = {
    "bearing": lambda p: p.degrade_bearing(1.0),
    "inlet": lambda p: p.block_inlet(0.3),
    "stuck": lambda p: p.stick_sensor("flow"),
}

# Stated in docs/anomaly.md ("Scripted hour"), with the reasons: precision over every judged window,
# recall over the windows after the fault started, delay from the fault to the anomaly's start event.
PRECISION = 0.98
RECALL = {  # detector → fault → at least
    "pump-ae": {"bearing": 0.70, "inlet": 0.95, "stuck": 0.55},
    "pump-iforest": {"bearing": 0.70, "inlet": 0.95, "stuck": 0.80},
    "baseline": {"bearing": 0.80, "inlet": 0.95},  # a sensor frozen in steady operation: see the docs' limits
}
DELAY = {  # detector → fault → seconds at most
    "pump-ae": {"bearing": 600.0, "inlet": 30.0, "stuck": 360.0},
    "pump-iforest": {"bearing": 660.0, "inlet": 30.0, "stuck": 360.0},
    "baseline": {"bearing": 360.0, "inlet": 30.0},
}


def scripted(script: tuple[tuple[float, float], ...], seed: int, fault: str | None) -> plant.Schedule:
    normal = plant.varying_duty(seed) if len(script) > 1 else plant.steady_duty(script[0][1])

    def schedule(p: PumpPlant, t: float) -> None:
        if t < WARM:
            normal(p, t)
            return
        h = t - WARM
        p.set_speed(next(rpm for at, rpm in reversed(script) if h >= at))
        if fault is not None and h == FAULT_AT:
            FAULTS[fault](p)

    return schedule


@dataclass(frozen=True)
class Run:
    fault: str | None
    windows: list[Window]

    @property
    def faulty(self) -> np.ndarray:  # type: ignore[type-arg]
        """Per window: it ends after the fault started."""
        ends = np.array([w.end - plant.START for w in self.windows])
        return ends > WARM + FAULT_AT if self.fault else np.zeros(len(ends), dtype=bool)


def runs(script: tuple[tuple[float, float], ...]) -> list[Run]:
    return [
        Run(fault, list(plant.run(WARM + HOUR, scripted(script, seed, fault), seed=seed)))
        for seed in SEEDS
        for fault in (None, *FAULTS)
    ]


@pytest.fixture(scope="module")
def varying() -> list[Run]:
    return runs(VARYING)


@pytest.fixture(scope="module")
def steady() -> list[Run]:
    return runs(STEADY)


Judge = Callable[[list[Window]], Iterator[bool]]
"""Per window: whether an anomaly is active once the window is judged."""


def model_judge(name: str) -> Judge:
    model = OnnxModel.load(SHIPPED / name / "1")
    p = model.manifest.threshold

    def judge(windows: list[Window]) -> Iterator[bool]:
        th = AdaptiveThreshold(quantile=p.quantile, margin=p.margin, warmup=p.warmup, history=p.history,
                               reference=p.reference)  # fmt: skip
        for s in model.score(np.asarray([w.row for w in windows], dtype=np.float32)):
            th.update(s.score)
            yield th.active

    return judge


def baseline_judge(windows: list[Window]) -> Iterator[bool]:
    base = Baseline(len(plant.FEATURES), warmup=60, history=2000)
    th = AdaptiveThreshold(quantile=0.995, margin=1.5, warmup=60, history=2000)
    for w in windows:
        s = base.score(w.row)
        if s is None:
            base.learn(w.row)
            yield False
            continue
        th.update(s.score)
        if not th.active and th.value is not None and s.score <= th.value:
            base.learn(w.row)
        yield th.active


@dataclass(frozen=True)
class Figures:
    precision: float
    recall: dict[str, float]
    delay: dict[str, float]
    false_starts: int


def measure(judge: Judge, all_runs: list[Run]) -> Figures:
    flagged = true = 0
    hits: dict[str, list[int]] = {f: [0, 0] for f in FAULTS}
    delay: dict[str, float] = dict.fromkeys(FAULTS, 0.0)
    false_starts = 0
    for run in all_runs:
        active = np.fromiter(judge(run.windows), dtype=bool, count=len(run.windows))
        faulty = run.faulty
        flagged += int(active.sum())
        true += int((active & faulty).sum())
        starts = active & ~np.concatenate(([False], active[:-1]))
        false_starts += int((starts & ~faulty).sum())
        if run.fault is None:
            continue
        hits[run.fault][0] += int((active & faulty).sum())
        hits[run.fault][1] += int(faulty.sum())
        found = np.flatnonzero(starts & faulty)
        end = run.windows[found[0]].end if found.size else np.inf
        delay[run.fault] = max(delay[run.fault], end - plant.START - WARM - FAULT_AT)
    return Figures(
        precision=true / flagged if flagged else 1.0,
        recall={f: h / n for f, (h, n) in hits.items()},
        delay=delay,
        false_starts=false_starts,
    )


def check(name: str, figures: Figures) -> None:
    assert figures.false_starts == 0, f"{name}: {figures}"
    assert figures.precision >= PRECISION, f"{name}: {figures}"
    for fault in RECALL[name]:
        assert figures.recall[fault] >= RECALL[name][fault], f"{name} {fault}: {figures}"
        assert figures.delay[fault] <= DELAY[name][fault], f"{name} {fault}: {figures}"


def test_the_shipped_autoencoder_finds_every_fault_of_the_scripted_hour_and_nothing_in_normal_operation(
    varying: list[Run],
) -> None:
    check("pump-ae", measure(model_judge("pump-ae"), varying))


def test_the_shipped_isolation_forest_finds_every_fault_of_the_scripted_hour_and_nothing_in_normal_operation(
    varying: list[Run],
) -> None:
    check("pump-iforest", measure(model_judge("pump-iforest"), varying))


def test_the_baseline_finds_bearing_wear_and_a_blocked_inlet_in_a_steady_scripted_hour_and_nothing_else(
    steady: list[Run],
) -> None:
    check("baseline", measure(baseline_judge, steady))
