"""Configuration of anomaly detection on twins: which assets get which detector, windows, thresholds.

A detector watches the assets of one type (``asset_type``) or one asset (``asset``; it replaces a
type-wide detector of the same ``id`` on that asset). It builds one feature vector per asset and
``window`` seconds of twin time, scores it with the streaming ``baseline`` detector or an ONNX
``model`` from the registry, and raises/clears an anomaly against an adaptive per-asset threshold.
"""

from __future__ import annotations

import enum
from pathlib import Path

import msgspec

from avila_edge.config.units import Duration


class Aggregation(enum.StrEnum):
    """How the samples of one point in one window become one feature value."""

    MEAN = "mean"
    MIN = "min"
    MAX = "max"
    STD = "std"
    LAST = "last"


class DetectorKind(enum.StrEnum):
    BASELINE = "baseline"
    ONNX = "onnx"


class FeatureConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One model input: a point (or derived value) of the asset, aggregated over the window."""

    point: str
    aggregation: Aggregation = Aggregation.MEAN

    @property
    def name(self) -> str:
        return f"{self.point}.{self.aggregation.value}"


class ThresholdConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The per-asset alert threshold. Unset keys come from the model's manifest, then the defaults.

    The threshold is ``quantile`` of the scores of normal windows times ``margin``, learned over the
    first ``warmup`` windows of each asset and then over a rolling ``history`` of normal windows.
    ``manual`` fixes the threshold (no learning). An anomaly starts after ``raise_after`` windows
    above the threshold and clears after ``clear_after`` windows below ``clear_ratio`` times the threshold.
    """

    quantile: float | None = None
    margin: float | None = None
    warmup: int | None = None
    history: int | None = None
    manual: float | None = None
    raise_after: int = 2
    clear_after: int = 3
    clear_ratio: float = 0.8


class DetectorConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One detector on the assets of a type, or on one asset."""

    id: str
    asset_type: str | None = None
    asset: str | None = None
    detector: DetectorKind = DetectorKind.BASELINE
    model: str | None = None
    features: tuple[FeatureConfig, ...] = ()
    window: Duration | None = None
    threshold: ThresholdConfig = ThresholdConfig()
    explain: int = 3


class AnomalyConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The anomaly service; it runs when ``enabled`` and at least one detector is configured.

    ``registry`` holds the model versions (default ``<state_dir>/models``). At most ``queue`` windows
    wait for inference; when more arrive they are skipped and counted, and a window that waited longer
    than ``max_latency`` is skipped too. ``batch_max`` windows go to the model in one call. What each
    detector has learned is saved to the state directory every ``state_save_interval`` and at shutdown.
    """

    enabled: bool = True
    registry: Path | None = None
    queue: int = 256
    batch_max: int = 64
    max_latency: Duration = 5.0
    reload_interval: Duration = 10.0
    state_save_interval: Duration = 60.0
    detectors: tuple[DetectorConfig, ...] = ()
