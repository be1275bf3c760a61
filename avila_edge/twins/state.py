"""Twin state: reported values, versioned desired values and their write-back, and the delta.

A desired value carries a version. An update must name the version it was based on (optimistic
concurrency): a stale version is refused with ``StaleVersion``. A desired change is written to the
device and tracked ``pending`` → ``confirmed`` (a reading matched within tolerance) or ``failed``
(device error or no matching reading before the deadline).
"""

from __future__ import annotations

import enum
import math
import sys
from dataclasses import dataclass, field

from avila_edge.core import GatewayError, Quality, Reading, Value


class WriteStatus(enum.StrEnum):
    PENDING = "pending"
    CONFIRMED = "confirmed"
    FAILED = "failed"


class StaleVersion(GatewayError):
    """A desired update named a version that is no longer current."""

    def __init__(self, asset: str, name: str, given: int, current: int) -> None:
        self.current = current
        super().__init__(
            f"{asset}/{name}: desired version {given} is stale; the current version is {current} "
            "(read the twin again and retry with that version)"
        )


class NotWritable(GatewayError):
    """The property cannot take a desired value."""


@dataclass(frozen=True, slots=True)
class Reported:
    """A derived value (expression, aggregate) as the twin holds it. Device points are held as the
    committed ``Reading`` itself, which has the same fields."""

    value: Value | None
    quality: Quality
    reason: str
    ts_source: int
    ts_gateway: int
    seq: int | None


@dataclass(frozen=True, slots=True)
class Desired:
    value: Value
    version: int
    status: WriteStatus
    reason: str
    requested_by: str
    requested_at: int
    deadline: float
    """Monotonic seconds by which a matching reading must confirm the write."""


@dataclass(slots=True)
class TwinState:
    """The state of one asset's twin."""

    asset: str
    reported: dict[str, Reading] = field(default_factory=dict)
    """The newest committed reading of each device point, by point name (the same object the
    pipeline's live table holds: a twin adds no copy per point)."""
    desired: dict[str, Desired] = field(default_factory=dict)
    derived: dict[str, Reported] = field(default_factory=dict)
    version: int = 0
    """Increases on every change of this twin; subscribers use it to see they missed nothing."""

    def delta(self, tolerance: dict[str, float] | None = None) -> dict[str, Value]:
        """Desired values the device does not report yet."""
        tolerance = tolerance or {}
        out: dict[str, Value] = {}
        for name, d in self.desired.items():
            r = self.reported.get(name)
            if r is None or r.quality is not Quality.GOOD or not matches(r.value, d.value, tolerance.get(name, 0.0)):
                out[name] = d.value
        return out

    def request(
        self, name: str, value: Value, *, expected_version: int | None, by: str, now_ns: int, deadline: float
    ) -> Desired:
        """Record a desired value; ``expected_version`` must be the current one (0 when none yet)."""
        current = self.desired.get(name)
        current_version = current.version if current else 0
        if expected_version is not None and expected_version != current_version:
            raise StaleVersion(self.asset, name, expected_version, current_version)
        d = Desired(value, current_version + 1, WriteStatus.PENDING, "", by, now_ns, deadline)
        self.desired[name] = d
        self.version += 1
        return d

    def settle(self, name: str, status: WriteStatus, reason: str = "") -> Desired | None:
        """Mark a pending desired value confirmed or failed; return it, or None if not pending."""
        d = self.desired.get(name)
        if d is None or d.status is not WriteStatus.PENDING:
            return None
        settled = Desired(d.value, d.version, status, reason, d.requested_by, d.requested_at, d.deadline)
        self.desired[name] = settled
        self.version += 1
        return settled

    def report(self, name: str, reading: Reading, tolerance: float) -> Desired | None:
        """Take a reading; return the desired value it confirmed, if any."""
        reported = self.reported
        if name not in reported:  # the first time: one key string for ``name`` in every twin
            name = sys.intern(name)
        reported[name] = reading
        self.version += 1
        if not self.desired:
            return None
        d = self.desired.get(name)
        if (
            d is not None
            and d.status is WriteStatus.PENDING
            and reading.quality is Quality.GOOD
            and matches(reading.value, d.value, tolerance)
        ):
            return self.settle(name, WriteStatus.CONFIRMED)
        return None

    def overdue(self, now: float) -> list[str]:
        return [n for n, d in self.desired.items() if d.status is WriteStatus.PENDING and now > d.deadline]


def matches(reported: Value | None, desired: Value, tolerance: float) -> bool:
    if reported is None:
        return False
    if isinstance(desired, bool) or isinstance(reported, bool) or isinstance(desired, str) or isinstance(reported, str):
        return reported == desired
    return math.isclose(float(reported), float(desired), abs_tol=max(tolerance, 1e-9), rel_tol=1e-9)
