"""Scoring and judging one asset's windows: the streaming baseline, the adaptive threshold, explanations.

``Baseline`` needs no model: a running mean and variance per feature (Welford during warm-up, then
exponentially forgetting over ``history`` windows, fed only with windows judged normal). Its score is
the mean squared z-score over features, the same scale as an autoencoder's mean squared
reconstruction error on normalised features, and each feature's share of it explains an anomaly.

``AdaptiveThreshold`` learns ``quantile`` times ``margin`` of an asset's normal scores and applies
hysteresis (a model's ``reference`` threshold, measured on its training data, is used until the asset's
own is learned and is never undercut: a quiet first hour must not make every later duty point an
anomaly): ``raise_after`` windows above the threshold start an anomaly, ``clear_after`` windows
below ``clear_ratio`` times the threshold clear it.

Both can ``memory()`` what they have learned as plain values and ``recall`` it after a restart
(``state.py`` keeps it in the state directory).
"""

from __future__ import annotations

import enum
import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

import msgspec
import numpy as np
import numpy.typing as npt

Z_FLOOR = 1e-3
"""Relative floor of a feature's standard deviation (a constant feature must not divide by zero)."""


class Transition(enum.StrEnum):
    START = "start"
    CLEAR = "clear"


@dataclass(frozen=True, slots=True)
class Scored:
    """A window's score, each feature's share of it (sums to 1) and the value each feature was expected at."""

    score: float
    shares: tuple[float, ...]
    expected: tuple[float, ...]


class BaselineMemory(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """What a ``Baseline`` has learned; arrays as little-endian float64 bytes."""

    n: int
    mean: bytes
    var: bytes
    m2: bytes


class ThresholdMemory(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """What an ``AdaptiveThreshold`` has learned and where its hysteresis stands (a tuple of scores copies in µs)."""

    value: float | None
    learned: bool
    active: bool
    scores: tuple[float, ...]
    above: int
    below: int
    since_fit: int


def _floats(raw: bytes, width: int | None = None) -> npt.NDArray[np.float64]:
    array = np.frombuffer(raw, dtype="<f8").astype(np.float64)
    if width is not None and array.shape != (width,):
        raise ValueError(f"{array.size} values saved, {width} expected")
    if not np.isfinite(array).all():
        raise ValueError("non-finite values saved")
    return array


class Baseline:
    """Streaming mean/variance per feature; scores after ``warmup`` windows, learns from normal ones."""

    def __init__(self, width: int, *, warmup: int, history: int) -> None:
        self.warmup = warmup
        self.alpha = 1.0 / max(history, 2)
        self.n = 0
        self.mean = np.zeros(width)
        self.var = np.zeros(width)
        self._m2 = np.zeros(width)

    @property
    def ready(self) -> bool:
        return self.n >= self.warmup

    def score(self, row: Sequence[float]) -> Scored | None:
        if not self.ready:
            return None
        x = np.asarray(row, dtype=np.float64)
        std = np.maximum(np.sqrt(self.var), Z_FLOOR * np.abs(self.mean) + 1e-9)
        z2 = np.square((x - self.mean) / std)
        total = float(z2.sum())
        shares = z2 / total if total > 0 else np.zeros_like(z2)
        return Scored(float(z2.mean()), tuple(shares.tolist()), tuple(self.mean.tolist()))

    def learn(self, row: Sequence[float]) -> None:
        x = np.asarray(row, dtype=np.float64)
        self.n += 1
        if self.n <= self.warmup:  # Welford: exact mean and variance of the warm-up windows
            delta = x - self.mean
            self.mean += delta / self.n
            self._m2 += delta * (x - self.mean)
            self.var = self._m2 / self.n
            return
        delta = x - self.mean  # then forget slowly, so the baseline follows seasons and wear-in
        self.mean += self.alpha * delta
        self.var = (1.0 - self.alpha) * (self.var + self.alpha * delta * delta)

    def memory(self) -> BaselineMemory:
        return BaselineMemory(
            self.n,
            self.mean.astype("<f8").tobytes(),
            self.var.astype("<f8").tobytes(),
            self._m2.astype("<f8").tobytes(),
        )

    def recall(self, memory: BaselineMemory) -> None:
        """Continue from ``memory``; ``ValueError`` (and nothing changed) when it does not fit this baseline."""
        width = self.mean.shape[0]
        mean, var, m2 = (_floats(raw, width) for raw in (memory.mean, memory.var, memory.m2))
        if memory.n < 0:
            raise ValueError(f"negative window count {memory.n}")
        self.n, self.mean, self.var, self._m2 = memory.n, mean, var, m2


class AdaptiveThreshold:
    """The per-asset threshold with hysteresis; ``update(score)`` returns a transition or None."""

    def __init__(
        self,
        *,
        quantile: float,
        margin: float,
        warmup: int,
        history: int,
        manual: float | None = None,
        reference: float | None = None,
        raise_after: int = 2,
        clear_after: int = 3,
        clear_ratio: float = 0.8,
    ) -> None:
        self.quantile = quantile
        self.margin = margin
        self.warmup = warmup
        self.history = history
        self.manual = manual
        self.raise_after = raise_after
        self.clear_after = clear_after
        self.clear_ratio = clear_ratio
        self.value: float | None = manual if manual is not None else reference
        self.floor = reference or 1e-12
        self.learned = manual is not None
        self.active = False
        self._scores: deque[float] = deque(maxlen=max(history, warmup))
        self._above = 0
        self._below = 0
        self._since_fit = 0

    def update(self, score: float) -> Transition | None:
        if not math.isfinite(score):
            return None
        transition = self._judge(score)
        if self.manual is None and not self.active and (not self.learned or score <= (self.value or math.inf)):
            self._scores.append(score)  # learn from normal windows only (all of them during warm-up)
            self._since_fit += 1
            if len(self._scores) >= self.warmup and (not self.learned or self._since_fit >= self.warmup):
                q = float(np.quantile(np.fromiter(self._scores, float), self.quantile))
                self.value = max(q * self.margin, self.floor)
                self.learned = True
                self._since_fit = 0
        return transition

    def memory(self) -> ThresholdMemory:
        scores = tuple(self._scores)
        return ThresholdMemory(self.value, self.learned, self.active, scores, self._above, self._below, self._since_fit)

    def recall(self, memory: ThresholdMemory) -> None:
        """Continue from ``memory``; ``ValueError`` (and nothing changed) when it is not a sane state."""
        if not all(math.isfinite(v) for v in memory.scores):
            raise ValueError("non-finite scores saved")
        if memory.value is not None and not (math.isfinite(memory.value) and memory.value > 0):
            raise ValueError(f"threshold {memory.value} saved")
        if min(memory.above, memory.below, memory.since_fit) < 0:
            raise ValueError("negative hysteresis counters saved")
        if self.manual is None and memory.value is not None:  # else the reference (or nothing) applies, as before
            self.value = max(memory.value, self.floor)
            self.learned = memory.learned
        self.active = memory.active
        self._scores.clear()
        self._scores.extend(memory.scores)
        self._above, self._below, self._since_fit = memory.above, memory.below, memory.since_fit

    def _judge(self, score: float) -> Transition | None:
        if self.value is None:
            return None
        if not self.active:
            self._above = self._above + 1 if score > self.value else 0
            if self._above >= self.raise_after:
                self.active, self._above, self._below = True, 0, 0
                return Transition.START
            return None
        self._below = self._below + 1 if score < self.value * self.clear_ratio else 0
        if self._below >= self.clear_after:
            self.active, self._above, self._below = False, 0, 0
            return Transition.CLEAR
        return None


def explain(names: Sequence[str], row: Sequence[float], scored: Scored, top: int) -> list[dict[str, object]]:
    """The ``top`` features by share of the score, as plain data for events and the twin."""
    order = sorted(range(len(names)), key=lambda i: -scored.shares[i])[:top]
    return [
        {
            "feature": names[i],
            "share": round(scored.shares[i], 4),
            "value": _round(row[i]),
            "expected": _round(scored.expected[i]),
        }
        for i in order
    ]


def _round(v: float) -> float:
    return float(f"{v:.6g}")
