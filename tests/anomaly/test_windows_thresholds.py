"""Feature windows and the adaptive threshold with hysteresis, on hand-made values."""

from __future__ import annotations

import math

import pytest

from avila_edge.anomaly import AdaptiveThreshold, Baseline, Transition, WindowBuilder, explain
from avila_edge.config.anomaly import Aggregation, FeatureConfig

F = (
    FeatureConfig("flow", Aggregation.MEAN),
    FeatureConfig("flow", Aggregation.STD),
    FeatureConfig("flow", Aggregation.MIN),
    FeatureConfig("flow", Aggregation.MAX),
    FeatureConfig("vibration", Aggregation.LAST),
)


def test_a_window_aggregates_its_samples_and_closes_on_the_first_sample_of_the_next() -> None:
    b = WindowBuilder("pump1", F, 10.0)
    for t, v in ((100.0, 1.0), (103.0, 3.0), (109.9, 2.0)):
        assert b.add("flow", v, t) is None
    assert b.add("vibration", 0.5, 105.0) is None
    w = b.add("flow", 9.0, 110.0)
    assert w is not None
    assert (w.asset, w.start, w.end) == ("pump1", 100.0, 110.0)
    assert w.row[0] == pytest.approx(2.0)
    assert w.row[1] == pytest.approx(math.sqrt(2 / 3))
    assert w.row[2:] == (1.0, 3.0, 0.5)


def test_a_quiet_point_carries_its_last_value_and_a_missing_one_makes_the_window_incomplete() -> None:
    b = WindowBuilder("pump1", (F[0], F[4]), 10.0, carry=30.0)
    b.add("flow", 1.0, 100.0)
    assert b.add("flow", 1.0, 110.0) is None, "vibration never seen: incomplete"
    assert b.incomplete == 1
    b.add("vibration", 2.0, 111.0)
    w = b.add("flow", 1.0, 125.0)
    assert w is not None and w.row == (1.0, 2.0)
    w = b.add("flow", 1.0, 135.0)
    assert w is not None and w.row == (1.0, 2.0), "vibration unchanged (deadband): carried"
    assert b.add("flow", 1.0, 175.0) is not None, "29 s after the last vibration sample: still carried"
    assert b.add("flow", 1.0, 185.0) is None
    assert b.incomplete == 2, "carried no longer than 30 s"


def test_late_and_non_finite_samples_are_ignored() -> None:
    b = WindowBuilder("pump1", (F[0],), 10.0)
    b.add("flow", 1.0, 100.0)
    b.add("flow", 5.0, 111.0)
    assert b.add("flow", 100.0, 105.0) is None
    assert b.add("flow", math.nan, 112.0) is None
    w = b.add("flow", 1.0, 120.0)
    assert w is not None and w.row == (5.0,)


def test_hysteresis_needs_consecutive_windows_to_raise_and_to_clear() -> None:
    th = AdaptiveThreshold(quantile=0.9, margin=1.0, warmup=5, history=100, manual=1.0, raise_after=2,
                           clear_after=2, clear_ratio=0.5)  # fmt: skip
    seq = [2.0, 0.1, 2.0, 2.0, 0.9, 0.4, 2.0, 0.4, 0.4]
    out = [th.update(s) for s in seq]
    assert out == [None, None, None, Transition.START, None, None, None, None, Transition.CLEAR]


def test_the_threshold_is_learned_from_warm_up_scores_and_never_below_the_reference() -> None:
    th = AdaptiveThreshold(quantile=0.5, margin=2.0, warmup=4, history=10)
    assert [th.update(s) for s in (1.0, 2.0, 3.0)] == [None] * 3 and th.value is None
    th.update(4.0)
    assert th.value == pytest.approx(5.0) and th.learned
    floored = AdaptiveThreshold(quantile=0.5, margin=2.0, warmup=4, history=10, reference=50.0)
    for s in (1.0, 2.0, 3.0, 4.0):
        floored.update(s)
    assert floored.value == 50.0


def test_the_baseline_scores_after_warm_up_and_explains_by_z_score() -> None:
    base = Baseline(2, warmup=4, history=100)
    for row in ((10.0, 1.0), (12.0, 1.1), (11.0, 0.9), (11.0, 1.0)):
        assert base.score(row) is None
        base.learn(row)
    normal, odd = base.score((11.0, 1.0)), base.score((11.0, 3.0))
    assert normal is not None and odd is not None
    assert normal.score < 0.1 < odd.score
    top = explain(["flow.mean", "vibration.mean"], (11.0, 3.0), odd, 1)
    assert top == [{"feature": "vibration.mean", "share": pytest.approx(1.0, abs=1e-3), "value": 3.0, "expected": 1.0}]
