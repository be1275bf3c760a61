"""What both CoAP modes share: the readings of a device's points (last value kept on Bad, repeated Bad
reasons suppressed) and the counting and rate-limited logging of malformed input."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Final

from avila_edge.config.model import PointConfig
from avila_edge.core import Reading, Value, bad
from avila_edge.driver import DriverHealth
from drivers.coap.codec import excerpt

logger = logging.getLogger("drivers.coap.driver")

LOG_FIRST: Final = 20
LOG_EVERY: Final = 1000


class PointBook:
    """The latest state of a device's points, and the device's problem counters."""

    def __init__(self, device: str, health: DriverHealth) -> None:
        self.device = device
        self.health = health
        self._last_value: dict[str, Value] = {}
        self._bad_reason: dict[str, str] = {}
        self._logged: dict[str, int] = {}

    def good(self, point: PointConfig, value: Value, ts_source: int, now: int) -> Reading:
        self._last_value[point.id] = value
        self._bad_reason.pop(point.id, None)
        return Reading(point=point.id, value=value, ts_source=ts_source, ts_gateway=now)

    def bad(self, point_id: str, reason: str, now: int) -> Reading:
        self._bad_reason[point_id] = reason
        return bad(point_id, reason, ts_source=now, ts_gateway=now, value=self._last_value.get(point_id))

    def bad_all(self, points: Iterable[PointConfig], reason: str, now: int) -> list[Reading]:
        """Bad readings for ``points``, except those already Bad for the same reason."""
        return [self.bad(p.id, reason, now) for p in points if self._bad_reason.get(p.id) != reason]

    def is_bad(self, point_id: str) -> bool:
        return point_id in self._bad_reason

    def problem(self, kind: str, where: str, text: str, payload: bytes, *, log: bool = True) -> None:
        """Count a survived problem; log the first ones of each kind, then one in ``LOG_EVERY``."""
        self.health.count(kind)
        seen = self._logged.get(kind, 0) + 1
        self._logged[kind] = seen
        if log and (seen <= LOG_FIRST or seen % LOG_EVERY == 0):
            logger.warning(
                "%s: %s from %s (%s; payload %s)%s",
                self.device,
                kind.replace("_", " "),
                where,
                text,
                excerpt(payload),
                f" [{seen} so far]" if seen > LOG_FIRST else "",
            )
        else:
            logger.debug("%s: %s from %s: %s", self.device, kind, where, text)
