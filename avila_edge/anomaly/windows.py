"""Feature windows: the samples of an asset's points over ``window`` seconds, aggregated into one row.

Windows are aligned to multiples of ``window`` on the readings' own time, so a replay builds the same
rows as the live run. A window closes when a sample of a later window arrives. A point without a
sample in the window (the pipeline's deadband keeps unchanged values out of the journal) carries its
last value forward for up to ``carry`` seconds; a row missing a feature after that is skipped and
counted as incomplete.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from avila_edge.config.anomaly import Aggregation, FeatureConfig

CARRY = 120.0


@dataclass(slots=True)
class _Acc:
    n: int = 0
    total: float = 0.0
    squares: float = 0.0
    low: float = math.inf
    high: float = -math.inf
    last: float = math.nan

    def add(self, v: float) -> None:
        self.n += 1
        self.total += v
        self.squares += v * v
        self.low = min(self.low, v)
        self.high = max(self.high, v)
        self.last = v

    def value(self, how: Aggregation) -> float:
        if how is Aggregation.MEAN:
            return self.total / self.n
        if how is Aggregation.MIN:
            return self.low
        if how is Aggregation.MAX:
            return self.high
        if how is Aggregation.LAST:
            return self.last
        mean = self.total / self.n
        return math.sqrt(max(0.0, self.squares / self.n - mean * mean))


@dataclass(frozen=True, slots=True)
class Window:
    """One closed window of one asset: ``row`` holds the features in their configured order."""

    asset: str
    start: float
    end: float
    row: tuple[float, ...]


@dataclass(slots=True)
class WindowBuilder:
    """Collects one asset's samples and yields a ``Window`` each time one closes."""

    asset: str
    features: Sequence[FeatureConfig]
    window: float
    carry: float = CARRY
    incomplete: int = 0
    _start: float | None = None
    _acc: dict[str, _Acc] = field(default_factory=dict)
    _last: dict[str, tuple[float, float]] = field(default_factory=dict)  # point → (time, value)

    @property
    def points(self) -> set[str]:
        return {f.point for f in self.features}

    def add(self, point: str, value: float, t: float) -> Window | None:
        """Add one sample at time ``t`` (seconds); return the window it closed, if any."""
        if not math.isfinite(value):
            return None
        closed = None
        start = math.floor(t / self.window) * self.window
        if self._start is None:
            self._start = start
        elif start > self._start:
            closed = self._close()
            self._start = start
        elif start < self._start:  # late sample of a closed window: it only updates the carried value
            return None
        self._acc.setdefault(point, _Acc()).add(value)
        self._last[point] = (t, value)
        return closed

    def _close(self) -> Window | None:
        assert self._start is not None
        start, end = self._start, self._start + self.window
        accs, self._acc = self._acc, {}
        row: list[float] = []
        for f in self.features:
            acc = accs.get(f.point)
            if acc is None or acc.n == 0:
                seen = self._last.get(f.point)
                if seen is None or end - seen[0] > self.carry:
                    self.incomplete += 1
                    return None
                acc = _Acc()
                acc.add(seen[1])
            row.append(acc.value(f.aggregation))
        return Window(self.asset, start, end, tuple(row))
