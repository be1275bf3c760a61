"""Predictive maintenance: track a health indicator, fit its degradation trend, estimate remaining life.

The indicator (for example vibration RMS) is averaged into buckets of ``sample_interval`` seconds.
The trend is a hinge: flat until an onset, then ``y = a + b·h + c·h²`` with ``h`` the (scaled)
time since the onset, fitted by least squares over the ``history`` window for every candidate onset,
keeping the onset with the smallest residual. Wear that grows steadily makes vibration grow with the
square of time; a straight line is the case ``c = 0``, and an onset at the first sample is a plain
quadratic. The remaining useful life is the time until the trend
crosses ``failure_threshold``; its interval comes from where the upper and lower prediction bands
(at ``confidence``) cross it. With no significant upward trend there is no estimate.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from statistics import NormalDist

import msgspec

from avila_edge.config.twins import MaintenanceConfig


class RulEstimate(msgspec.Struct, frozen=True):
    indicator: float
    """The indicator's current value on the fitted trend."""
    health: float
    """1.0 at the start of the history window, 0.0 at the failure threshold."""
    trend_per_hour: float
    """How fast the indicator rises now, per hour."""
    rul_seconds: float | None
    rul_low: float | None
    rul_high: float | None
    """The interval at ``confidence``; ``rul_high`` is None when the lower band never reaches failure."""
    failure_at: float | None
    samples: int


class HealthTracker:
    """Samples of one asset's health indicator over time (seconds on any clock, simulated or real)."""

    def __init__(self, config: MaintenanceConfig) -> None:
        self.config = config
        self._samples: deque[tuple[float, float]] = deque()
        self._bucket: tuple[float, float, int] | None = None  # start, sum, count

    def add(self, t: float, value: float) -> bool:
        """Add a sample; True when it closed a bucket (the estimate may have changed)."""
        if not math.isfinite(value):
            return False
        width = self.config.sample_interval
        if self._bucket is not None and t < self._bucket[0] + width:
            start, total, count = self._bucket
            self._bucket = (start, total + value, count + 1)
            return False
        closed = self._bucket is not None
        if self._bucket is not None:
            start, total, count = self._bucket
            self._samples.append((start + width / 2, total / count))
        self._bucket = (t, value, 1)
        while self._samples and self._samples[0][0] < t - self.config.history:
            self._samples.popleft()
        return closed

    def estimate(self, now: float) -> RulEstimate | None:
        points = list(self._samples)
        if len(points) < max(self.config.min_samples, 5):
            return None
        fits = _fits(points)
        fit = min(fits, key=lambda f: f.ssr)
        threshold = self.config.failure_threshold
        current = fit.value(now)
        start = fit.value(points[0][0])
        span = points[-1][0] - points[0][0]
        rise = fit.value(points[-1][0]) - start
        health = 1.0 if threshold == start else max(0.0, min(1.0, (threshold - current) / (threshold - start)))
        slope = fit.slope(now) * 3600.0
        significant = rise > 3.0 * fit.sigma and slope > 0
        if not significant:
            return RulEstimate(current, health, slope, None, None, None, None, len(points))
        z = NormalDist().inv_cdf(0.5 + self.config.confidence / 2)
        horizon = now + max(span * 20.0, 86400.0)
        mid = _crossing(fit.value, threshold, now, horizon)
        # onsets the data cannot tell apart from the best one (profile likelihood, one parameter)
        plausible = [f for f in fits if f.ssr <= fit.ssr * math.exp(z * z / len(points))]
        lows: list[float | None] = []
        highs: list[float | None] = []
        for f in plausible:
            lows.append(_crossing(f.band(+z), threshold, now, horizon))
            highs.append(_crossing(f.band(-z), threshold, now, horizon))
        low = min((x for x in lows if x is not None), default=None)
        high = None if any(x is None for x in highs) else max(x for x in highs if x is not None)
        return RulEstimate(
            indicator=current,
            health=health,
            trend_per_hour=slope,
            rul_seconds=None if mid is None else mid - now,
            rul_low=None if low is None else low - now,
            rul_high=None if high is None else high - now,
            failure_at=mid,
            samples=len(points),
        )


ONSET_CANDIDATES = 40


def _fits(points: list[tuple[float, float]]) -> list[_HingeFit]:
    """Hinge fits for evenly spaced candidate onsets (each leaves at least 5 samples after it)."""
    first, last = points[0][0], points[-5][0]
    fits = []
    for k in range(ONSET_CANDIDATES):
        try:
            fits.append(_HingeFit(points, first + (last - first) * k / ONSET_CANDIDATES))
        except ValueError:
            continue
    if not fits:
        raise ValueError("samples do not determine a trend")
    return fits


class _HingeFit:
    """Least squares ``y = a + b·h + c·h²``, h = max(0, t - onset) / scale, with prediction bands."""

    def __init__(self, points: list[tuple[float, float]], onset: float) -> None:
        self.onset = onset
        self.scale = max(points[-1][0] - onset, 1e-9)
        rows = [self._basis(t) for t, _ in points]
        ys = [y for _, y in points]
        xtx = [[sum(r[i] * r[j] for r in rows) for j in range(3)] for i in range(3)]
        xty = [sum(r[i] * y for r, y in zip(rows, ys, strict=True)) for i in range(3)]
        self.inverse = _invert3(xtx)
        self.coef = [sum(self.inverse[i][j] * xty[j] for j in range(3)) for i in range(3)]
        residuals = [y - self._dot(r) for r, y in zip(rows, ys, strict=True)]
        self.ssr = sum(e * e for e in residuals)
        self.sigma = math.sqrt(self.ssr / max(1, len(points) - 4))

    def _basis(self, t: float) -> tuple[float, float, float]:
        h = max(0.0, t - self.onset) / self.scale
        return (1.0, h, h * h)

    def _dot(self, x: tuple[float, float, float]) -> float:
        return sum(c * v for c, v in zip(self.coef, x, strict=True))

    def value(self, t: float) -> float:
        return self._dot(self._basis(t))

    def slope(self, t: float) -> float:
        if t <= self.onset:
            return 0.0
        _, b, c = self.coef
        return (b + 2 * c * (t - self.onset) / self.scale) / self.scale

    def band(self, z: float) -> Callable[[float], float]:
        """The prediction band ``z`` standard deviations above (or below, for negative z) the trend."""
        return lambda t: self.value(t) + z * self.prediction_sd(t)

    def prediction_sd(self, t: float) -> float:
        x = self._basis(t)
        leverage = sum(x[i] * self.inverse[i][j] * x[j] for i in range(3) for j in range(3))
        return self.sigma * math.sqrt(1.0 + max(0.0, leverage))


def _invert3(m: list[list[float]]) -> list[list[float]]:
    (a, b, c), (d, e, f), (g, h, i) = m
    det = a * (e * i - f * h) - b * (d * i - f * g) + c * (d * h - e * g)
    if abs(det) < 1e-300:
        raise ValueError("samples do not determine a trend")
    cof = [
        [e * i - f * h, -(b * i - c * h), b * f - c * e],
        [-(d * i - f * g), a * i - c * g, -(a * f - c * d)],
        [d * h - e * g, -(a * h - b * g), a * e - b * d],
    ]
    return [[cof[r][k] / det for k in range(3)] for r in range(3)]


def _crossing(
    curve: Callable[[float], float], threshold: float, start: float, end: float, steps: int = 400
) -> float | None:
    """The first time in [start, end] at which ``curve(t) >= threshold`` (None if never)."""
    f = curve
    if f(start) >= threshold:
        return start
    step = (end - start) / steps
    t_prev = start
    for k in range(1, steps + 1):
        t = start + k * step
        if f(t) >= threshold:
            lo, hi = t_prev, t
            for _ in range(50):
                mid = (lo + hi) / 2
                if f(mid) >= threshold:
                    hi = mid
                else:
                    lo = mid
            return hi
        t_prev = t
    return None
