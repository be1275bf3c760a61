"""Feature rows straight from the hil/ pump plant, without a network or real time.

Used to build the shipped anomaly model (``tools/build_anomaly_model.py``), by its tests and by the
benchmark: the plant is stepped once per ``step`` seconds, sampled as the Modbus registers would carry
the values (pressure in 0.01 bar, temperature in 0.1 degC, whole rpm), and the samples go through the
same ``WindowBuilder`` the gateway uses.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterator

from avila_edge.anomaly.windows import Window, WindowBuilder
from avila_edge.config.anomaly import Aggregation, FeatureConfig
from hil.plant import PumpPlant

FEATURES = (
    FeatureConfig("speed_setpoint", Aggregation.MEAN),
    FeatureConfig("flow", Aggregation.MEAN),
    FeatureConfig("flow", Aggregation.STD),
    FeatureConfig("pressure", Aggregation.MEAN),
    FeatureConfig("current", Aggregation.MEAN),
    FeatureConfig("vibration", Aggregation.MEAN),
    FeatureConfig("vibration", Aggregation.MAX),
    FeatureConfig("motor_temperature", Aggregation.MEAN),
)
WINDOW = 10.0
START = 1_700_000_000.0


def samples(plant: PumpPlant) -> dict[str, float]:
    v = plant.values()
    return {
        "speed_setpoint": float(round(plant.speed_setpoint)),
        "flow": v["flow"],
        "pressure": round(v["pressure"], 2),
        "current": v["current"],
        "vibration": v["vibration"],
        "motor_temperature": round(v["motor_temperature"], 1),
    }


Schedule = Callable[[PumpPlant, float], None]
"""Called before every step with the plant and the elapsed seconds: changes setpoints, injects faults."""


def varying_duty(seed: int, low: float = 1200.0, high: float = 1800.0) -> Schedule:
    """Normal operation: the setpoint moves to a random duty point every 10-30 minutes, ambient
    temperature follows a daily cycle of +-4 degC."""
    rng = random.Random(seed)  # noqa: S311 - a reproducible simulation, not a secret
    next_change = [0.0]

    def schedule(plant: PumpPlant, t: float) -> None:
        plant.ambient = 25.0 + 4.0 * math.sin(2 * math.pi * t / 86400.0)
        if t >= next_change[0]:
            plant.set_speed(round(rng.uniform(low, high)))
            next_change[0] = t + rng.uniform(600.0, 1800.0)

    return schedule


def steady_duty(rpm: float = 1500.0) -> Schedule:
    """Normal operation at one duty point, ambient following its daily cycle."""

    def schedule(plant: PumpPlant, t: float) -> None:
        plant.ambient = 25.0 + 4.0 * math.sin(2 * math.pi * t / 86400.0)
        plant.set_speed(rpm)

    return schedule


def run(
    seconds: float,
    schedule: Schedule,
    *,
    seed: int,
    step: float = 1.0,
    plant: PumpPlant | None = None,
    asset: str = "pump1",
) -> Iterator[Window]:
    """The closed windows of ``seconds`` of simulated operation."""
    plant = plant or PumpPlant(seed=seed)
    builder = WindowBuilder(asset, FEATURES, WINDOW)
    t = 0.0
    while t < seconds:
        schedule(plant, t)
        plant.step(step)
        t += step
        for point, value in samples(plant).items():
            w = builder.add(point, value, START + t)
            if w is not None:
                yield w
