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
from collections.abc import Iterable, Iterator, KeysView, Mapping, Sequence
from dataclasses import dataclass

import msgspec

from avila_edge.config.model import DeviceConfig, GatewayConfig, PointConfig
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


class PointSlot(msgspec.Struct, gc=False):
    """What the runtime keeps for one configured point, in one object behind one dict entry: its
    configuration (deadband, unit), its device (who writes it), its newest committed reading and a
    newer accepted one still being committed.

    ``gc=False`` (not tracked by the garbage collector, 16 bytes less): it refers only to frozen
    config structs and readings, none of which can refer back to it, so it is never in a cycle."""

    config: PointConfig
    device: DeviceConfig
    reading: Reading | None = None
    """The newest committed reading (the live table)."""
    pending: Reading | None = None
    """The newest reading the filter accepted while its commit has not finished: the filter's memory
    until then; ``None`` once it is committed (``reading`` holds it, with its seq) or failed."""


def point_slots(config: GatewayConfig) -> dict[str, PointSlot]:
    """A slot for every configured point, by id, in configuration order."""
    return {p.id: PointSlot(p, d) for d in config.devices for p in d.points}


class Pipeline:
    def __init__(
        self, config: GatewayConfig, journal: Journal, twins: TwinService, *, slots: dict[str, PointSlot] | None = None
    ) -> None:
        self.journal = journal
        self.twins = twins
        self.counters = PipelineCounters()
        self.slots: dict[str, PointSlot] = point_slots(config) if slots is None else slots
        """Every configured point by id (the one per-point table of the runtime; see ``PointSlot``)."""
        self.latest: Mapping[str, Reading] = LiveTable(self.slots)
        """The live point table: the newest committed reading of each point (``/status``, twins)."""
        self.units: Mapping[str, str] = Units(self.slots)
        """Each configured point's unit (``""`` when it has none)."""
        self._unknown_logged: set[str] = set()

    def restore(self, readings: Iterable[Reading]) -> None:
        """Take the newest journaled readings as committed (at start); points no longer configured
        are left out."""
        slots = self.slots
        for r in readings:
            slot = slots.get(r.point)
            if slot is not None:
                slot.reading = r

    async def __call__(self, batch: Sequence[Reading]) -> None:
        accepted = self.filter(batch)
        if not accepted:
            return
        slots = self.slots
        try:
            committed = await self.journal.append(accepted)
        except BaseException:
            for r in accepted:  # not accepted: compare the next ones with what was committed
                slots[r.point].pending = None
            raise
        self.counters.accepted += len(committed)
        for sent, r in zip(accepted, committed, strict=True):
            slot = slots[r.point]
            slot.reading = r
            if slot.pending is sent:  # no newer reading accepted meanwhile: one reading per point again
                slot.pending = None
        events = self.twins.apply(committed)
        if events:
            await self.record(events)

    def filter(self, batch: Sequence[Reading]) -> list[Reading]:
        """The readings of ``batch`` to journal: known points, non-finite numbers made Bad, deadband and
        repeats filtered. Each one is remembered as its point's newest accepted reading."""
        accepted: list[Reading] = []
        slots = self.slots
        for incoming in batch:
            r = incoming
            slot = slots.get(r.point)
            if slot is None:
                self.counters.rejected += 1
                if r.point not in self._unknown_logged:
                    self._unknown_logged.add(r.point)
                    logger.warning("reading for unknown point %r refused (not in the configuration)", r.point)
                continue
            if isinstance(r.value, float) and not math.isfinite(r.value):
                r = Reading(point=r.point, value=None, quality=Quality.BAD, reason=f"device sent {r.value}",
                            ts_source=r.ts_source, ts_gateway=r.ts_gateway)  # fmt: skip
            previous = slot.pending or slot.reading
            fresh = previous is not None and r.ts_gateway - previous.ts_gateway < HEARTBEAT * 1e9
            if previous is not None and fresh and _unchanged(previous, r, slot.config.deadband):
                self.counters.filtered += 1
                continue
            slot.pending = r
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


class LiveTable(Mapping[str, Reading]):
    """The newest committed reading of each point, read from the point slots (no copy, no dict of
    its own). Points with no committed reading yet are not in it."""

    __slots__ = ("_slots",)

    def __init__(self, slots: dict[str, PointSlot]) -> None:
        self._slots = slots

    def __getitem__(self, point: str) -> Reading:
        r = self._slots[point].reading
        if r is None:
            raise KeyError(point)
        return r

    def __contains__(self, point: object) -> bool:
        slot = self._slots.get(point) if isinstance(point, str) else None
        return slot is not None and slot.reading is not None

    def __iter__(self) -> Iterator[str]:
        return (point for point, slot in self._slots.items() if slot.reading is not None)

    def __len__(self) -> int:
        return sum(1 for slot in self._slots.values() if slot.reading is not None)


class Units(Mapping[str, str]):
    """Each configured point's unit, read from the point slots."""

    __slots__ = ("_slots",)

    def __init__(self, slots: dict[str, PointSlot]) -> None:
        self._slots = slots

    def __getitem__(self, point: str) -> str:
        return self._slots[point].config.unit

    def __contains__(self, point: object) -> bool:
        return point in self._slots

    def __iter__(self) -> Iterator[str]:
        return iter(self._slots)

    def __len__(self) -> int:
        return len(self._slots)

    def keys(self) -> KeysView[str]:
        return self._slots.keys()
