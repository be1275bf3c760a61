"""The sink every driver writes into: filter, journal, then update live state and twins.

Per batch: readings for unknown points are refused (counted, logged once per point); non-finite
numbers become Bad readings; a Good reading that moved less than its point's deadband from the last
accepted value is filtered, as is a repeat of the same Bad reason; everything else is committed to
the journal in one append. An unchanged value is still journaled once ``HEARTBEAT`` seconds have
passed since the point's last accepted reading, so silence never hides a dead point. Only then do
the live table and the twins see the batch, and the twin events it causes (alarms, write outcomes)
are journaled too.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

from avila_edge.config.model import GatewayConfig
from avila_edge.core import Event, Quality, Reading
from avila_edge.journal import Journal
from avila_edge.twins.service import TwinService

logger = logging.getLogger(__name__)

HEARTBEAT = 60.0


@dataclass(slots=True)
class PipelineCounters:
    accepted: int = 0
    filtered: int = 0
    rejected: int = 0
    events: int = 0


class Pipeline:
    def __init__(self, config: GatewayConfig, journal: Journal, twins: TwinService) -> None:
        self.journal = journal
        self.twins = twins
        self.counters = PipelineCounters()
        self._deadband = {p.id: p.deadband for d in config.devices for p in d.points}
        self.latest: dict[str, Reading] = {}
        """The live point table: the newest committed reading of each point (``/status``, twins)."""
        self._accepted: dict[str, Reading] = {}  # newest accepted per point, committed or not: the filter's memory
        self._unknown_logged: set[str] = set()

    async def __call__(self, batch: Sequence[Reading]) -> None:
        accepted = self.filter(batch)
        if not accepted:
            return
        try:
            committed = await self.journal.append(accepted)
        except BaseException:
            for r in accepted:  # not accepted: compare the next ones with what was committed
                self._accepted.pop(r.point, None)
            raise
        self.counters.accepted += len(committed)
        latest = self.latest
        for r in committed:
            latest[r.point] = r
        events = self.twins.apply(committed)
        if events:
            await self.record(events)

    def filter(self, batch: Sequence[Reading]) -> list[Reading]:
        """The readings of ``batch`` to journal: known points, non-finite numbers made Bad, deadband and
        repeats filtered. Each one is remembered as its point's newest accepted reading."""
        accepted: list[Reading] = []
        accepted_by_point, latest, deadbands = self._accepted, self.latest, self._deadband
        for incoming in batch:
            r = incoming
            deadband = deadbands.get(r.point)
            if deadband is None:
                self.counters.rejected += 1
                if r.point not in self._unknown_logged:
                    self._unknown_logged.add(r.point)
                    logger.warning("reading for unknown point %r refused (not in the configuration)", r.point)
                continue
            if isinstance(r.value, float) and not math.isfinite(r.value):
                r = Reading(point=r.point, value=None, quality=Quality.BAD, reason=f"device sent {r.value}",
                            ts_source=r.ts_source, ts_gateway=r.ts_gateway)  # fmt: skip
            previous = accepted_by_point.get(r.point) or latest.get(r.point)
            fresh = previous is not None and r.ts_gateway - previous.ts_gateway < HEARTBEAT * 1e9
            if previous is not None and fresh and _unchanged(previous, r, deadband):
                self.counters.filtered += 1
                continue
            accepted_by_point[r.point] = r
            accepted.append(r)
        return accepted

    async def record(self, events: Sequence[Event]) -> None:
        """Journal events produced outside a reading batch (acknowledgements, write outcomes, ticks)."""
        await self.journal.append_events(events)
        self.counters.events += len(events)


def _unchanged(previous: Reading, new: Reading, deadband: float) -> bool:
    if previous.quality is not new.quality:
        return False
    if new.quality is Quality.BAD:
        return previous.reason == new.reason
    a, b = previous.value, new.value
    if isinstance(a, bool) or isinstance(b, bool) or isinstance(a, str) or isinstance(b, str) or a is None or b is None:
        return a == b and previous.reason == new.reason
    if deadband > 0:
        return abs(float(b) - float(a)) < deadband
    return a == b and previous.reason == new.reason
