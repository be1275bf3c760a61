"""A small deterministic pump plant: the process every hil/ simulator serves.

Values drift with seeded noise and react to the speed setpoint and run command. Faults:
``degrade_bearing`` (vibration and motor temperature climb toward failure), ``block_inlet`` (flow
falls, current and vibration rise) and ``stick_sensor`` (one value freezes). Time only moves when
``step(dt)`` is called, so a plant is reproducible for a given seed and sequence of steps.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

VIBRATION_FAILURE = 11.0
"""mm/s RMS at which the bearing counts as failed (ISO 10816-3 zone D for a medium pump)."""

NOMINAL_SPEED = 1500.0
MAX_SPEED = 3000.0


@dataclass
class PumpPlant:
    """One centrifugal pump with its motor."""

    seed: int = 1
    speed_setpoint: float = NOMINAL_SPEED
    running: bool = True
    ambient: float = 25.0
    elapsed: float = 0.0
    bearing_wear: float = 0.0
    bearing_rate: float = 0.0
    inlet_blockage: float = 0.0
    stuck: dict[str, float] = field(default_factory=dict)
    _speed: float = NOMINAL_SPEED
    _temp: float = 45.0
    _energy_wh: float = 0.0
    _run_seconds: float = 0.0
    _rng: random.Random = field(init=False, repr=False)
    _values: dict[str, float] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self._values = {}
        self._speed = self.speed_setpoint if self.running else 0.0
        self.step(0.0)

    # -- control ----------------------------------------------------------------------------------

    def set_speed(self, rpm: float) -> None:
        self.speed_setpoint = max(0.0, min(MAX_SPEED, float(rpm)))

    def set_running(self, running: bool) -> None:
        self.running = bool(running)

    # -- faults -----------------------------------------------------------------------------------

    def degrade_bearing(self, wear_per_hour: float) -> None:
        """Start bearing wear growing by ``wear_per_hour`` (0 stops it); 1.0 wear means failure."""
        self.bearing_rate = max(0.0, wear_per_hour)

    def block_inlet(self, fraction: float) -> None:
        self.inlet_blockage = max(0.0, min(0.9, fraction))

    def stick_sensor(self, name: str, value: float | None = None) -> None:
        """Freeze the named value at what it reads now, or make it read ``value`` (a faulty sensor)."""
        self.stuck[name] = self._values[name] if value is None else value
        self._values[name] = self.stuck[name]

    def clear_faults(self) -> None:
        self.bearing_rate = 0.0
        self.inlet_blockage = 0.0
        self.stuck.clear()

    def seconds_to_failure(self) -> float | None:
        """When vibration will reach ``VIBRATION_FAILURE`` at the current wear rate (None: never)."""
        if self.bearing_rate <= 0:
            return None
        return max(0.0, (1.0 - self.bearing_wear) / self.bearing_rate * 3600.0)

    # -- time -------------------------------------------------------------------------------------

    def step(self, dt: float) -> None:
        """Advance the plant by ``dt`` seconds."""
        dt = max(0.0, dt)
        self.elapsed += dt
        target = self.speed_setpoint if self.running else 0.0
        # the motor ramps at most 300 rpm/s
        delta = max(-300.0 * dt, min(300.0 * dt, target - self._speed))
        self._speed = target if dt == 0.0 and not self._values else self._speed + delta
        self.bearing_wear = min(1.0, self.bearing_wear + self.bearing_rate * dt / 3600.0)
        load = self._speed / NOMINAL_SPEED
        open_inlet = 1.0 - self.inlet_blockage
        noise = self._rng.gauss
        flow = max(0.0, 120.0 * load * open_inlet + noise(0.0, 0.4))
        pressure = max(0.0, 4.2 * load**2 * (0.6 + 0.4 * open_inlet) + noise(0.0, 0.02))
        current = max(0.0, 18.0 * load**3 * (1.0 + 0.15 * self.inlet_blockage) + 1.5 + noise(0.0, 0.1))
        temp_target = self.ambient + 30.0 * load**2 + 25.0 * self.bearing_wear**2
        tau = 600.0
        self._temp += (temp_target - self._temp) * (1.0 - math.exp(-dt / tau)) if dt else 0.0
        temperature = self._temp + noise(0.0, 0.05)
        healthy = 1.2 * load + 0.6 * self.inlet_blockage * load
        vibration = max(0.0, healthy + (VIBRATION_FAILURE - 1.2) * self.bearing_wear**2 + noise(0.0, 0.03))
        if self._speed > 1.0:
            self._run_seconds += dt
        power_kw = current * 400.0 * 1.732 * 0.85 / 1000.0
        self._energy_wh += power_kw * 1000.0 * dt / 3600.0
        self._values = {
            "flow": flow,
            "pressure": pressure,
            "motor_temperature": temperature,
            "vibration": vibration,
            "current": current,
            "speed": self._speed,
            "power": power_kw,
            "energy": self._energy_wh,
            "run_hours": self._run_seconds / 3600.0,
        }
        for name, value in self.stuck.items():
            self._values[name] = value

    def values(self) -> dict[str, float]:
        """The current process values (engineering units: m3/h, bar, degC, mm/s, A, rpm, kW, Wh, h)."""
        return dict(self._values)

    @property
    def high_temperature(self) -> bool:
        return self._values["motor_temperature"] > 80.0

    @property
    def high_vibration(self) -> bool:
        return self._values["vibration"] > 7.1
