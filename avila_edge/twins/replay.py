"""What-if replay: run recorded readings through twins built from a changed configuration.

Both the configuration as it is and the variant are replayed over the same journal range on the
readings' own timestamps, so the run is deterministic: the same inputs always give the same report.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable

import msgspec

from avila_edge.config.model import GatewayConfig
from avila_edge.core import Event, Reading
from avila_edge.journal import Entry, EntryKind, Journal
from avila_edge.twins.service import TwinService


class AlarmChange(msgspec.Struct, frozen=True):
    ts: int
    alarm: str
    transition: str
    value: float | bool | None


class DerivedDifference(msgspec.Struct, frozen=True):
    name: str
    samples: int
    max_abs_difference: float
    first_ts: int | None


class ReplayReport(msgspec.Struct, frozen=True):
    readings: int
    first_ts: int | None
    last_ts: int | None
    alarms_as_configured: tuple[AlarmChange, ...]
    alarms_with_variant: tuple[AlarmChange, ...]
    only_with_variant: tuple[AlarmChange, ...]
    only_as_configured: tuple[AlarmChange, ...]
    derived_differences: tuple[DerivedDifference, ...]


def replay_readings(readings: Iterable[Reading], base: GatewayConfig, variant: GatewayConfig) -> ReplayReport:
    """Feed ``readings`` (in journal order) through both configurations and compare."""
    a, b = TwinService(base), TwinService(variant)
    alarms_a: list[AlarmChange] = []
    alarms_b: list[AlarmChange] = []
    diffs: dict[str, tuple[int, float, int | None]] = {}
    count, first, last = 0, None, None
    for r in readings:
        count += 1
        first = r.ts_gateway if first is None else first
        last = r.ts_gateway
        alarms_a += _alarms(a.apply([r]))
        alarms_b += _alarms(b.apply([r]))
        asset = r.point.partition("/")[0]
        da, db = a.state(asset).derived, b.state(asset).derived
        for name in sorted(set(da) | set(db)):
            va = da[name].value if name in da else None
            vb = db[name].value if name in db else None
            key = f"{asset}/{name}"
            n, worst, first_diff = diffs.get(key, (0, 0.0, None))
            delta = _difference(va, vb)
            if delta > 0 and first_diff is None:
                first_diff = r.ts_gateway
            diffs[key] = (n + 1, max(worst, delta), first_diff)
    set_a, set_b = {_key(c) for c in alarms_a}, {_key(c) for c in alarms_b}
    return ReplayReport(
        readings=count,
        first_ts=first,
        last_ts=last,
        alarms_as_configured=tuple(alarms_a),
        alarms_with_variant=tuple(alarms_b),
        only_with_variant=tuple(c for c in alarms_b if _key(c) not in set_a),
        only_as_configured=tuple(c for c in alarms_a if _key(c) not in set_b),
        derived_differences=tuple(
            DerivedDifference(name, n, worst, first_diff)
            for name, (n, worst, first_diff) in sorted(diffs.items())
            if worst > 0
        ),
    )


async def replay_journal(
    journal: Journal, base: GatewayConfig, variant: GatewayConfig, *, start_ns: int, end_ns: int
) -> ReplayReport:
    """Replay the journal's readings with ``start_ns <= ts_gateway < end_ns``."""
    readings = [r async for r in _readings(journal, start_ns, end_ns)]
    return replay_readings(readings, base, variant)


async def _readings(journal: Journal, start_ns: int, end_ns: int) -> AsyncIterator[Reading]:
    position = journal.first_seq
    while True:
        batch: list[Entry] = await journal.read(position, 5000, kinds=[EntryKind.READING])
        if not batch:
            return
        for e in batch:
            if start_ns <= e.ts < end_ns:
                yield e.reading()
        position = batch[-1].seq + 1


def _key(c: AlarmChange) -> tuple[int, str, str]:
    return (c.ts, c.alarm, c.transition)


def _alarms(events: list[Event]) -> list[AlarmChange]:
    return [
        AlarmChange(e.ts, e.source, str(e.attrs["transition"]), e.attrs.get("value"))
        for e in events
        if e.kind == "alarm"
    ]


def _difference(a: object, b: object) -> float:
    if a == b:
        return 0.0
    if isinstance(a, int | float) and isinstance(b, int | float) and not isinstance(a, bool):
        return abs(float(a) - float(b))
    return float("inf")
