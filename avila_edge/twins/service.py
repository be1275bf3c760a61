"""The twin service: every asset's twin, fed by committed readings; the API endpoints and the console use.

Time inside twins is the readings' gateway time (seconds), so a replay of the journal behaves as the
live run did. ``tick(now)`` advances time when no reading arrives (alarm delays, write deadlines).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from avila_edge.config.expr import Expression, Sample
from avila_edge.config.model import GatewayConfig
from avila_edge.config.twins import AggregateFunction, AssetTypeConfig
from avila_edge.core import DriverError, Event, GatewayError, Quality, Reading, Value
from avila_edge.core.reading import POINT_SEPARATOR
from avila_edge.twins.alarms import Alarm, AlarmState, AlarmTransition
from avila_edge.twins.maintenance import HealthTracker, RulEstimate
from avila_edge.twins.state import Desired, NotWritable, Reported, TwinState, WriteStatus

logger = logging.getLogger(__name__)

Writer = Callable[[str, Value], Awaitable[None]]
"""Writes an engineering value to a device point (``asset/point``); raises ``DriverError``."""

SUBSCRIBER_QUEUE = 1000


class UnknownAsset(GatewayError):
    """No twin has that id."""


_NOTHING: Mapping[str, Any] = MappingProxyType({})
"""The derived values, alarms and tolerances of an asset without a type: one shared empty mapping."""


def _nothing() -> Mapping[str, Any]:
    return _NOTHING


@dataclass(slots=True)
class _Twin:
    state: TwinState
    type: AssetTypeConfig | None
    parent: str | None
    children: tuple[str, ...] = ()
    derived: Mapping[str, Expression] = field(default_factory=_nothing)
    alarms: Mapping[str, Alarm] = field(default_factory=_nothing)
    health: HealthTracker | None = None
    rul: RulEstimate | None = None
    anomaly: dict[str, dict[str, object]] | None = None
    """Each detector's latest judgement, once a detector has judged this asset."""
    tolerance: Mapping[str, float] = field(default_factory=_nothing)
    """How near a reading must come to a desired value to confirm it, by writable point name."""


@dataclass(frozen=True, slots=True)
class TwinChange:
    """Sent to subscribers when a twin changes."""

    asset: str
    version: int


class TwinService:
    """All twins of one gateway."""

    def __init__(
        self, config: GatewayConfig, *, writer: Writer | None = None, units: Mapping[str, str] | None = None
    ) -> None:
        """``units``: each point's unit, from a table the caller already keeps (the gateway's point
        slots); without it the service builds its own from ``config``."""
        self._writer = writer
        types = {t.id: t for t in config.asset_types}
        self._twins: dict[str, _Twin] = {}
        for a in config.assets:
            t = types.get(a.type)
            twin = _Twin(TwinState(a.id), t, a.parent)
            if t is not None:
                twin.derived = {name: Expression(text) for name, text in t.derived.items()}
                twin.alarms = {c.id: Alarm(c, a.id) for c in t.alarms}
                twin.health = HealthTracker(t.maintenance) if t.maintenance else None
                twin.tolerance = {name: w.tolerance for name, w in t.writable.items()}
            self._twins[a.id] = twin
        children: dict[str, list[str]] = {}
        for a in config.assets:
            if a.parent in self._twins:
                children.setdefault(a.parent, []).append(a.id)
        for parent, ids in children.items():
            self._twins[parent].children = tuple(ids)
        self._units: Mapping[str, str] = (
            {p.id: p.unit for d in config.devices for p in d.points if p.unit} if units is None else units
        )
        self._writable_points = {p.id for d in config.devices for p in d.points if p.writable}
        self._subscribers: set[asyncio.Queue[TwinChange]] = set()
        self.dropped_notifications = 0
        self.now = 0.0

    # -- reading the twins ------------------------------------------------------------------------

    def assets(self) -> list[str]:
        return list(self._twins)

    def state(self, asset: str) -> TwinState:
        return self._twin(asset).state

    def snapshot(self, asset: str) -> dict[str, object]:
        """The twin as plain data (what the REST API and the console show)."""
        twin = self._twin(asset)
        s = twin.state
        tolerance = {k: w.tolerance for k, w in (twin.type.writable.items() if twin.type else ())}
        return {
            "asset": asset,
            "type": twin.type.id if twin.type else None,
            "parent": twin.parent,
            "children": list(twin.children),
            "version": s.version,
            "reported": {k: _reported(v, self._units.get(f"{asset}/{k}", "")) for k, v in s.reported.items()},
            "derived": {k: _reported(v, "") for k, v in s.derived.items()},
            "desired": {k: _desired(v) for k, v in s.desired.items()},
            "delta": s.delta(tolerance),
            "alarms": {k: {"state": a.state.value, "value": a.last_value} for k, a in twin.alarms.items()},
            "maintenance": None if twin.rul is None else {
                "indicator": twin.rul.indicator,
                "health": twin.rul.health,
                "trend_per_hour": twin.rul.trend_per_hour,
                "rul_seconds": twin.rul.rul_seconds,
                "rul_low": twin.rul.rul_low,
                "rul_high": twin.rul.rul_high,
                "samples": twin.rul.samples,
            },
            "anomaly": {k: dict(v) for k, v in (twin.anomaly or {}).items()},
        }  # fmt: skip

    def subscribe(self) -> asyncio.Queue[TwinChange]:
        """A queue that receives every change (bounded: the oldest are dropped and counted)."""
        q: asyncio.Queue[TwinChange] = asyncio.Queue(SUBSCRIBER_QUEUE)
        self._subscribers.add(q)
        return q

    def unsubscribe(self, q: asyncio.Queue[TwinChange]) -> None:
        self._subscribers.discard(q)

    # -- feeding the twins ------------------------------------------------------------------------

    def apply(self, readings: Sequence[Reading]) -> list[Event]:
        """Take committed readings; return the events (alarms, write outcomes) to journal."""
        events: list[Event] = []
        touched: set[str] = set()
        twins = self._twins
        newest = 0
        for r in readings:  # the hot path: one reading after another of every batch
            asset, _, name = r.point.partition(POINT_SEPARATOR)
            twin = twins.get(asset)
            if twin is None or not name or POINT_SEPARATOR in name:  # not 'asset/point' of a twin
                continue
            newest = max(newest, r.ts_gateway)
            confirmed = twin.state.report(name, r, twin.tolerance.get(name, 0.0))
            if confirmed is not None:
                events.append(_write_event(asset, name, confirmed, r.ts_gateway))
            touched.add(asset)
        if touched:
            self.now = max(self.now, newest / 1e9)
        for asset in list(touched):
            events += self._recompute(asset, int(self.now * 1e9))
            parent = self._twins[asset].parent
            while parent is not None and parent in self._twins:
                if self._aggregate(parent, int(self.now * 1e9)):
                    touched.add(parent)
                parent = self._twins[parent].parent
        for asset in touched:
            self._notify(asset)
        return events

    def tick(self, now: float) -> list[Event]:
        """Advance time without readings: time out writes, let delayed alarms fire."""
        self.now = max(self.now, now)
        now_ns = int(self.now * 1e9)
        events: list[Event] = []
        for asset, twin in self._twins.items():
            changed = False
            for name in twin.state.overdue(self.now):
                d = twin.state.settle(name, WriteStatus.FAILED, "no matching reading before the deadline")
                if d is not None:
                    events.append(_write_event(asset, name, d, now_ns))
                    changed = True
            for alarm in twin.alarms.values():
                sample = self._sample(twin, alarm.config.value)
                tr = alarm.update(sample, self.now)
                if tr is not None:
                    events.append(_alarm_event(tr, now_ns))
                    changed = True
            if changed:
                self._notify(asset)
        return events

    def _recompute(self, asset: str, now_ns: int) -> list[Event]:
        twin = self._twins[asset]
        events: list[Event] = []
        for name, expr in twin.derived.items():
            inputs = {n: self._input(asset, n) for n in expr.names}
            res = expr.evaluate(inputs, self.now)
            twin.state.derived[name] = Reported(res.value, res.quality, res.reason, now_ns, now_ns, None)
        for alarm in twin.alarms.values():
            tr = alarm.update(self._sample(twin, alarm.config.value), self.now)
            if tr is not None:
                events.append(_alarm_event(tr, now_ns))
        if twin.health is not None and twin.type is not None and twin.type.maintenance is not None:
            sample = self._sample(twin, twin.type.maintenance.indicator)
            good = sample.quality is Quality.GOOD and isinstance(sample.value, int | float)
            if good and twin.health.add(self.now, float(sample.value or 0.0)):
                twin.rul = twin.health.estimate(self.now)
        return events

    def _aggregate(self, asset: str, now_ns: int) -> bool:
        twin = self._twins[asset]
        if twin.type is None or not twin.type.aggregates:
            return False
        for name, agg in twin.type.aggregates.items():
            values = []
            bad = []
            for child in twin.children:
                s = self._sample(self._twins[child], agg.of)
                if s.quality is Quality.BAD or s.value is None:
                    bad.append(child)
                else:
                    values.append(float(s.value))
            value = _aggregate(agg.function, values)
            if bad:
                quality, reason = Quality.UNCERTAIN, f"no good {agg.of} from {', '.join(bad)}"
            else:
                quality, reason = Quality.GOOD, ""
            if value is None:
                quality, reason = Quality.BAD, reason or "no children"
            twin.state.derived[name] = Reported(value, quality, reason, now_ns, now_ns, None)
        twin.state.version += 1
        return True

    def restore(self, latest: Iterable[Reading], events: Iterable[Event]) -> None:
        """Rebuild state after a restart from the newest readings and the journaled twin events."""
        for r in latest:
            asset, _, name = r.point.partition("/")
            twin = self._twins.get(asset)
            if twin is not None:
                twin.state.reported[name] = r
                self.now = max(self.now, r.ts_gateway / 1e9)
        for e in events:
            asset, _, name = e.source.partition("/")
            twin = self._twins.get(asset)
            if twin is None:
                continue
            if e.kind == "desired":
                status = WriteStatus(str(e.attrs["status"]))
                if status is WriteStatus.PENDING:
                    status, reason = WriteStatus.FAILED, "gateway restarted before the write was confirmed"
                else:
                    reason = str(e.attrs.get("reason", ""))
                value = e.attrs["value"]
                twin.state.desired[name] = Desired(
                    value, int(e.attrs["version"]), status, reason, str(e.attrs.get("by", "")), e.ts, 0.0
                )
            elif e.kind == "alarm" and name in twin.alarms:
                twin.alarms[name].state = AlarmState(str(e.attrs["state"]))
        for asset in self._twins:
            self._recompute(asset, int(self.now * 1e9))

    # -- desired values and alarms ----------------------------------------------------------------

    async def set_desired(
        self, asset: str, name: str, value: Value, *, expected_version: int | None, by: str
    ) -> tuple[Desired, list[Event]]:
        """Request a desired value and write it to the device. Returns it and the events to journal."""
        twin = self._twin(asset)
        point = f"{asset}/{name}"
        writable = twin.type.writable.get(name) if twin.type else None
        if point not in self._writable_points:
            raise NotWritable(f"{point} is not a writable device point (set writable: true on the point)")
        timeout = writable.timeout if writable else 10.0
        now_ns = int(self.now * 1e9)
        d = twin.state.request(name, value, expected_version=expected_version, by=by, now_ns=now_ns,
                               deadline=self.now + timeout)  # fmt: skip
        events = [_write_event(asset, name, d, now_ns)]
        if self._writer is not None:
            try:
                await self._writer(point, value)
            except DriverError as exc:
                failed = twin.state.settle(name, WriteStatus.FAILED, str(exc))
                if failed is not None:
                    events.append(_write_event(asset, name, failed, now_ns))
        self._notify(asset)
        return twin.state.desired[name], events

    def acknowledge(self, asset: str, alarm_id: str, *, by: str) -> Event:
        twin = self._twin(asset)
        alarm = twin.alarms.get(alarm_id)
        if alarm is None:
            raise UnknownAsset(f"{asset} has no alarm '{alarm_id}'")
        tr = alarm.acknowledge(by)
        self._notify(asset)
        return _alarm_event(tr, int(self.now * 1e9))

    def set_anomaly(self, asset: str, detector: str, info: dict[str, object], *, notify: bool) -> None:
        """Show a detector's latest judgement in the twin (``snapshot()["anomaly"][detector]``);
        subscribers hear of it when ``notify`` (an anomaly started or cleared)."""
        twin = self._twin(asset)
        if twin.anomaly is None:
            twin.anomaly = {}
        twin.anomaly[detector] = info
        if notify:
            self._notify(asset)

    def alarms(self) -> Iterable[Alarm]:
        for twin in self._twins.values():
            yield from twin.alarms.values()

    # -- helpers ----------------------------------------------------------------------------------

    def _twin(self, asset: str) -> _Twin:
        twin = self._twins.get(asset)
        if twin is None:
            raise UnknownAsset(f"no asset '{asset}'; known: {', '.join(sorted(self._twins))}")
        return twin

    def _input(self, asset: str, name: str) -> Sample:
        if "." in name:
            other, _, value = name.partition(".")
            twin = self._twins.get(other)
            return self._sample(twin, value) if twin else Sample(None, Quality.BAD, f"no asset {other}")
        return self._sample(self._twins[asset], name)

    @staticmethod
    def _sample(twin: _Twin | None, name: str) -> Sample:
        if twin is None:
            return Sample(None, Quality.BAD, "no such asset")
        r = twin.state.reported.get(name) or twin.state.derived.get(name)
        if r is None:
            return Sample(None, Quality.BAD, f"no value yet for {name}")
        value = r.value if isinstance(r.value, bool | int | float) else None
        return Sample(value, r.quality, r.reason)

    def _notify(self, asset: str) -> None:
        change = TwinChange(asset, self._twins[asset].state.version)
        for q in self._subscribers:
            if q.full():
                q.get_nowait()
                self.dropped_notifications += 1
            q.put_nowait(change)


def _aggregate(fn: AggregateFunction, values: list[float]) -> float | None:
    if fn is AggregateFunction.COUNT:
        return float(len(values))
    if not values:
        return None
    if fn is AggregateFunction.SUM:
        return sum(values)
    if fn is AggregateFunction.MEAN:
        return sum(values) / len(values)
    return min(values) if fn is AggregateFunction.MIN else max(values)


def _reported(r: Reading | Reported, unit: str) -> dict[str, object]:
    return {
        "value": r.value,
        "quality": r.quality.name.lower(),
        "reason": r.reason,
        "ts_source": r.ts_source,
        "ts_gateway": r.ts_gateway,
        "seq": r.seq,
        "unit": unit,
    }


def _desired(d: Desired) -> dict[str, object]:
    return {
        "value": d.value,
        "version": d.version,
        "status": d.status.value,
        "reason": d.reason,
        "requested_by": d.requested_by,
        "requested_at": d.requested_at,
    }


def _write_event(asset: str, name: str, d: Desired, ts: int) -> Event:
    return Event(
        kind="desired",
        source=f"{asset}/{name}",
        ts=ts,
        attrs={
            "value": d.value,
            "version": d.version,
            "status": d.status.value,
            "reason": d.reason,
            "by": d.requested_by,
        },
    )


def _alarm_event(tr: AlarmTransition, ts: int) -> Event:
    return Event(kind="alarm", source=f"{tr.asset}/{tr.alarm}", ts=ts, attrs=tr.attrs())
