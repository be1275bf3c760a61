"""Configuration of digital twins: asset types with derived properties, alarms, maintenance, writes."""

from __future__ import annotations

import enum

import msgspec

from avila_edge.config.units import Duration


class AlarmKind(enum.StrEnum):
    HIGH = "high"
    LOW = "low"
    RATE = "rate"
    BAD_QUALITY = "bad_quality"


class AlarmConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """An alarm on one value of a twin (a point or a derived property of the same asset).

    ``high``/``low`` compare with ``limit`` and clear only beyond ``hysteresis``; ``rate`` compares the
    mean rate of change per second over ``window``; ``bad_quality`` fires when the value has been Bad
    for ``delay`` seconds. ``delay``/``clear_delay``: how long the condition must hold before the
    alarm raises/clears.
    """

    id: str
    value: str
    kind: AlarmKind
    limit: float = 0.0
    hysteresis: float = 0.0
    delay: Duration = 0.0
    clear_delay: Duration = 0.0
    window: Duration = 60.0
    severity: str = "warning"
    message: str = ""


class MaintenanceConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Remaining-useful-life tracking on a health indicator (a point or derived property)."""

    indicator: str
    failure_threshold: float
    sample_interval: Duration = 60.0
    history: Duration = 7 * 86400.0
    min_samples: int = 20
    confidence: float = 0.9


class WritableConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A property operators may set: confirmed when a reading is within ``tolerance`` by ``timeout``."""

    tolerance: float = 0.0
    timeout: Duration = 10.0


class AggregateFunction(enum.StrEnum):
    SUM = "sum"
    MEAN = "mean"
    MIN = "min"
    MAX = "max"
    COUNT = "count"


class AggregateConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A value of a parent asset computed over the same-named value of its children."""

    function: AggregateFunction
    of: str


class AssetTypeConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """What every asset of a type has in common. Assets name their type in ``assets[].type``."""

    id: str
    description: str = ""
    derived: dict[str, str] = {}
    alarms: tuple[AlarmConfig, ...] = ()
    maintenance: MaintenanceConfig | None = None
    writable: dict[str, WritableConfig] = {}
    aggregates: dict[str, AggregateConfig] = {}
    units: dict[str, str] = {}
