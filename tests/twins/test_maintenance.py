"""Remaining-useful-life estimates on the hil/ pump plant with a degrading bearing."""

from __future__ import annotations

from avila_edge.config.twins import MaintenanceConfig
from avila_edge.twins.maintenance import HealthTracker
from hil.plant import VIBRATION_FAILURE, PumpPlant


def run(plant: PumpPlant, tracker: HealthTracker, seconds: float, dt: float = 10.0, t0: float = 0.0) -> float:
    t = t0
    while t < t0 + seconds:
        plant.step(dt)
        t += dt
        tracker.add(t, plant.values()["vibration"])
    return t


def test_degrading_bearing_makes_rul_fall_and_its_interval_contains_the_true_failure_time() -> None:
    plant = PumpPlant(seed=7)
    tracker = HealthTracker(MaintenanceConfig(indicator="vibration", failure_threshold=VIBRATION_FAILURE))
    t = run(plant, tracker, 3600)  # one healthy hour
    plant.degrade_bearing(0.1)  # fails after 10 h of wear
    estimates = []
    for _ in range(5):
        t = run(plant, tracker, 3600, t0=t)
        est = tracker.estimate(t)
        truth = plant.seconds_to_failure()
        assert est is not None and truth is not None
        estimates.append((est, truth))
    # the estimate falls as the bearing wears
    ruls = [e.rul_seconds for e, _ in estimates[1:]]
    assert all(r is not None for r in ruls)
    assert ruls == sorted(ruls, reverse=True)  # type: ignore[type-var]
    for est, truth in estimates[2:]:
        assert est.rul_low is not None
        assert est.rul_low <= truth, (est, truth)
        assert est.rul_high is None or truth <= est.rul_high, (est, truth)
        assert abs(est.rul_seconds - truth) < 0.25 * truth  # type: ignore[operator]
    assert estimates[-1][0].health < estimates[1][0].health
    assert estimates[-1][0].trend_per_hour > 0


def test_a_healthy_pump_has_no_failure_estimate() -> None:
    plant = PumpPlant(seed=3)
    tracker = HealthTracker(MaintenanceConfig(indicator="vibration", failure_threshold=VIBRATION_FAILURE))
    t = run(plant, tracker, 4 * 3600)
    est = tracker.estimate(t)
    assert est is not None
    assert est.rul_seconds is None
    assert est.health > 0.95


def test_too_few_samples_give_no_estimate() -> None:
    tracker = HealthTracker(MaintenanceConfig(indicator="v", failure_threshold=10, sample_interval=60))
    for t in range(0, 600, 10):
        tracker.add(float(t), 1.0 + t / 100)
    assert tracker.estimate(600.0) is None
