"""Alarms on twin values: limits with hysteresis and delays, rate of change, Bad quality for too long.

States follow ISA-18.2::

    NORMAL ──raise──► ACTIVE ──ack──► ACKNOWLEDGED ──clear──► NORMAL
                        │                                        ▲
                        └──clear──► CLEARED_UNACKED ──ack────────┘
                                        └──raise──► ACTIVE

A condition must hold for ``delay`` seconds before the alarm is raised and be gone (beyond the
hysteresis band) for ``clear_delay`` seconds before it clears, so a noisy value does not flap.
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass

from avila_edge.config.expr import Sample
from avila_edge.config.twins import AlarmConfig, AlarmKind
from avila_edge.core import Quality


class AlarmState(enum.StrEnum):
    NORMAL = "normal"
    ACTIVE = "active"
    ACKNOWLEDGED = "acknowledged"
    CLEARED_UNACKED = "cleared_unacknowledged"


@dataclass(frozen=True, slots=True)
class AlarmTransition:
    """A change of an alarm's state, journaled as an ``alarm`` event."""

    alarm: str
    asset: str
    transition: str  # raised | cleared | acknowledged
    state: AlarmState
    value: float | bool | None
    limit: float
    severity: str
    message: str
    by: str = ""

    def attrs(self) -> dict[str, object]:
        return {
            "alarm": self.alarm,
            "asset": self.asset,
            "transition": self.transition,
            "state": self.state.value,
            "value": self.value,
            "limit": self.limit,
            "severity": self.severity,
            "message": self.message,
            "by": self.by,
        }


class AcknowledgeError(ValueError):
    """The alarm cannot be acknowledged in its current state."""


class Alarm:
    """The live state of one configured alarm on one asset. Time is monotonic seconds."""

    def __init__(self, config: AlarmConfig, asset: str) -> None:
        self.config = config
        self.asset = asset
        self.state = AlarmState.NORMAL
        self._pending_since: float | None = None
        self._history: deque[tuple[float, float]] = deque(maxlen=10_000)
        self.last_value: float | bool | None = None
        self.raised_at: float | None = None

    @property
    def active(self) -> bool:
        return self.state in (AlarmState.ACTIVE, AlarmState.ACKNOWLEDGED)

    def update(self, sample: Sample, now: float) -> AlarmTransition | None:
        """Feed the alarm's value; return the transition it caused, if any."""
        condition = self._condition(sample, now)
        if condition is None:
            self._pending_since = None
            return None
        wants_change = condition != self.active
        if not wants_change:
            self._pending_since = None
            return None
        if self._pending_since is None:
            self._pending_since = now
        wait = self.config.delay if condition else self.config.clear_delay
        if now - self._pending_since < wait:
            return None
        self._pending_since = None
        if condition:
            self.state = AlarmState.ACTIVE
            self.raised_at = now
            return self._transition("raised")
        self.state = AlarmState.NORMAL if self.state is AlarmState.ACKNOWLEDGED else AlarmState.CLEARED_UNACKED
        return self._transition("cleared")

    def acknowledge(self, by: str) -> AlarmTransition:
        if self.state is AlarmState.ACTIVE:
            self.state = AlarmState.ACKNOWLEDGED
        elif self.state is AlarmState.CLEARED_UNACKED:
            self.state = AlarmState.NORMAL
        else:
            raise AcknowledgeError(f"alarm {self.asset}/{self.config.id} is {self.state.value}: nothing to acknowledge")
        return self._transition("acknowledged", by=by)

    def _transition(self, name: str, *, by: str = "") -> AlarmTransition:
        c = self.config
        return AlarmTransition(c.id, self.asset, name, self.state, self.last_value, c.limit, c.severity, c.message, by)

    def _condition(self, sample: Sample, now: float) -> bool | None:
        """True: alarm condition present; False: clearly gone; None: cannot judge / inside the band."""
        c = self.config
        if c.kind is AlarmKind.BAD_QUALITY:
            self.last_value = sample.value
            return sample.quality is Quality.BAD
        if sample.quality is Quality.BAD or sample.value is None:
            return None
        value = float(sample.value)
        self.last_value = sample.value
        if c.kind is AlarmKind.RATE:
            self._history.append((now, value))
            while self._history and self._history[0][0] < now - c.window:
                self._history.popleft()
            (t0, v0), (t1, v1) = self._history[0], self._history[-1]
            if t1 <= t0:
                return None
            value = abs((v1 - v0) / (t1 - t0))
            self.last_value = value
        if c.kind in (AlarmKind.HIGH, AlarmKind.RATE):
            if value > c.limit:
                return True
            return False if value < c.limit - c.hysteresis else (None if not self.active else True)
        if value < c.limit:
            return True
        return False if value > c.limit + c.hysteresis else (None if not self.active else True)
