"""Data routes of the REST API: site, twins and desired values, points and history, events, alarms, sync,
drivers and configuration. Audit routes are in ``audit.py``, the live stream in ``live.py``."""

from __future__ import annotations

import asyncio
import math
import time
import weakref
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec
from aiohttp import web

from avila_edge.config import parse_config
from avila_edge.core import ConfigError, Event, GatewayError
from avila_edge.journal import EntryKind
from avila_edge.twins.alarms import AcknowledgeError, AlarmState
from avila_edge.twins.service import UnknownAsset
from avila_edge.twins.state import NotWritable, StaleVersion
from avila_edge.web.auth import caller_of
from avila_edge.web.routing import GATEWAY, BadRequest, Operation, Param, json_body, problem, reply

if TYPE_CHECKING:
    from avila_edge.runtime.gateway import Gateway

MAX_HISTORY = 10_000
MAX_BUCKETS = 2_000
MAX_EVENTS = 1_000
MAX_TIME = 2**62
"""Latest time in ns a query may name (year 2116): keeps bucket arithmetic inside 64 bits."""
RECENT_SCAN = 50_000
"""Without ``after``, event lists show the newest events among this many last journal entries."""

Scalar = float | bool | str
ANY_OBJECT: dict[str, Any] = {"type": "object"}


# -- response shapes (also the OpenAPI schemas) ----------------------------------------------------


class SiteInfo(msgspec.Struct, frozen=True):
    id: str
    name: str


class AssetInfo(msgspec.Struct, frozen=True):
    id: str
    name: str
    type: str
    parent: str | None
    points: list[str]
    writable: list[str]


class Site(msgspec.Struct, frozen=True):
    site: SiteInfo
    assets: list[AssetInfo]


class Twins(msgspec.Struct, frozen=True):
    assets: list[dict[str, Any]]


class DesiredRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    value: Scalar
    version: int | None = None


class DesiredAccepted(msgspec.Struct, frozen=True):
    version: int
    status: str


class PointView(msgspec.Struct, frozen=True):
    id: str
    unit: str
    value: Scalar | None
    quality: str
    reason: str
    ts_source: int | None
    ts_gateway: int | None
    seq: int | None


class Points(msgspec.Struct, frozen=True):
    points: list[PointView]


class ReadingView(msgspec.Struct, frozen=True):
    seq: int | None
    value: Scalar | None
    quality: str
    reason: str
    ts_source: int
    ts_gateway: int


class BucketView(msgspec.Struct, frozen=True):
    start_ns: int
    count: int
    min: float
    max: float
    mean: float


class History(msgspec.Struct, frozen=True, omit_defaults=True):
    point: str
    readings: list[ReadingView] | None = None
    buckets: list[BucketView] | None = None


class EventView(msgspec.Struct, frozen=True):
    seq: int | None
    kind: str
    source: str
    ts: int
    attrs: dict[str, Any]


class Events(msgspec.Struct, frozen=True):
    events: list[EventView]
    next: int


class AnomalyView(EventView, frozen=True):
    acked: bool
    acked_by: str | None


class Anomalies(msgspec.Struct, frozen=True):
    events: list[AnomalyView]
    next: int


class AnomalyAcked(msgspec.Struct, frozen=True):
    seq: int
    source: str
    by: str


class AlarmView(msgspec.Struct, frozen=True):
    asset: str
    id: str
    state: str
    severity: str
    message: str
    active: bool
    acked: bool
    since_ns: int | None


class Alarms(msgspec.Struct, frozen=True):
    alarms: list[AlarmView]


class Sync(msgspec.Struct, frozen=True):
    journal: dict[str, Any]
    cursors: dict[str, dict[str, int]]
    uplinks: list[dict[str, Any]]
    sinks: list[dict[str, Any]]


class Drivers(msgspec.Struct, frozen=True):
    drivers: list[dict[str, Any]]


class ConfigText(msgspec.Struct, frozen=True):
    yaml: str
    files: list[str]


class Valid(msgspec.Struct, frozen=True):
    ok: bool


# -- parameters -----------------------------------------------------------------------------------


def int_param(request: web.Request, name: str, default: int, lo: int, hi: int) -> int:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"query parameter {name}={raw!r} is not an integer") from None
    if not lo <= value <= hi:
        raise BadRequest(f"query parameter {name}={value} is outside {lo}..{hi}")
    return value


def time_param(request: web.Request, name: str, default: int) -> int:
    """A time in ns from integer ns or ISO-8601 (``2026-11-25T10:00:00Z``; no zone means UTC)."""
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        ns = int(raw)
    except ValueError:
        try:
            moment = datetime.fromisoformat(raw.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            raise BadRequest(f"query parameter {name}={raw!r} is neither ISO-8601 nor integer nanoseconds") from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        ns = int(moment.timestamp() * 1_000_000) * 1000
    if not 0 <= ns <= MAX_TIME:
        raise BadRequest(f"query parameter {name}={raw!r} is outside 1970..2116")
    return ns


def _asset_or_404(g: Gateway, asset: str) -> dict[str, object]:
    try:
        return g.twins.snapshot(asset)
    except UnknownAsset as exc:
        raise BadRequest(str(exc), 404) from None


# -- site, twins, desired values ------------------------------------------------------------------


def _points_of(g: Gateway, asset: str) -> list[str]:
    return [p for p in g.point_ids if p.startswith(f"{asset}/")]


def _writable(g: Gateway, asset: str) -> list[str]:
    """Names an operator can set on ``asset``: its points marked ``writable: true`` (a twin type's writable
    property is settable only through such a point, so it is listed when its point is writable)."""
    return [p.id.removeprefix(f"{asset}/") for d in g.config.devices for p in d.points
            if p.writable and p.id.startswith(f"{asset}/")]  # fmt: skip


async def site(request: web.Request) -> web.Response:
    g = request.app[GATEWAY]
    assets = [
        AssetInfo(a.id, a.name or a.id, a.type, a.parent, _points_of(g, a.id), _writable(g, a.id))
        for a in g.config.assets
    ]
    return reply(Site(SiteInfo(g.config.site.id, g.config.site.name), assets))


async def twins(request: web.Request) -> web.Response:
    g = request.app[GATEWAY]
    return reply(Twins([g.twins.snapshot(a) for a in g.twins.assets()]))


async def twin(request: web.Request) -> web.Response:
    return reply(_asset_or_404(request.app[GATEWAY], request.match_info["asset"]))


async def set_desired(request: web.Request) -> web.Response:
    g = request.app[GATEWAY]
    asset, name = request.match_info["asset"], request.match_info["name"]
    body = await json_body(request, DesiredRequest)
    if isinstance(body.value, float) and not math.isfinite(body.value):
        raise BadRequest("value must be a finite number")
    _asset_or_404(g, asset)
    try:
        desired, events = await g.twins.set_desired(
            asset, name, body.value, expected_version=body.version, by=caller_of(request).by
        )
    except StaleVersion as exc:
        return problem(409, str(exc), current=exc.current)
    except NotWritable as exc:
        return problem(422, str(exc))
    except (GatewayError, ValueError, TypeError) as exc:
        return problem(422, f"{asset}/{name}: {exc}")
    await g.pipeline.record(events)
    return reply(DesiredAccepted(desired.version, desired.status.value), 202)


# -- points and history ---------------------------------------------------------------------------


def _point_view(g: Gateway, point_id: str) -> PointView:
    r = g.pipeline.latest.get(point_id)
    unit = g.units.get(point_id, "")
    if r is None:
        return PointView(point_id, unit, None, "none", "", None, None, None)
    return PointView(point_id, unit, r.value, r.quality.name.lower(), r.reason, r.ts_source, r.ts_gateway, r.seq)


async def points(request: web.Request) -> web.Response:
    g = request.app[GATEWAY]
    return reply(Points([_point_view(g, p) for p in g.point_ids]))


async def history(request: web.Request) -> web.Response:
    g = request.app[GATEWAY]
    point = request.match_info["point"]
    if point not in g.units:
        return problem(404, f"no point {point!r}")
    end = time_param(request, "to", time.time_ns() + 1)
    start = time_param(request, "from", end - 3600 * 10**9)
    if end <= start:
        raise BadRequest(f"'to' ({end}) must be after 'from' ({start})")
    buckets = int_param(request, "buckets", 0, 0, MAX_BUCKETS)
    if buckets:
        width = max(1, -(-(end - start) // buckets))
        found = await g.journal.history_buckets(point, start, end, width)
        return reply(History(point, buckets=[BucketView(b.start_ns, b.count, b.min, b.max, b.mean) for b in found]))
    limit = int_param(request, "limit", 1000, 1, MAX_HISTORY)
    readings = await g.journal.history(point, start, end, limit=limit)
    views = [ReadingView(r.seq, r.value, r.quality.name.lower(), r.reason, r.ts_source, r.ts_gateway) for r in readings]
    return reply(History(point, readings=views))


# -- events and alarms ----------------------------------------------------------------------------


def _event_view(e: Event) -> EventView:
    return EventView(e.seq, e.kind, e.source, e.ts, dict(e.attrs))


async def _events(g: Gateway, *, kind: str | None, after: int | None, limit: int) -> Events:
    """Events of ``kind`` (all when ``None``) after seq ``after``; without it, the newest ones."""
    found: list[EventView] = []
    position = max(g.journal.first_seq, g.journal.next_seq - RECENT_SCAN) if after is None else after + 1
    end = g.journal.next_seq
    last = position - 1
    full = False
    while position < end and not full:
        batch = await g.journal.read(position, 1000, kinds=[EntryKind.EVENT])
        batch = [e for e in batch if e.seq < end]
        if not batch:
            break
        for entry in batch:
            last = entry.seq
            event = entry.event()
            if kind is None or event.kind == kind:
                found.append(_event_view(event))
                full = after is not None and len(found) >= limit
                if full:
                    break
        position = last + 1
    if not full:
        last = max(last, end - 1)
    return Events(found[-limit:], last)


async def events(request: web.Request) -> web.Response:
    g = request.app[GATEWAY]
    kind = request.query.get("kind") or None
    after = int_param(request, "after", -1, -1, 2**62) if "after" in request.query else None
    limit = int_param(request, "limit", 100, 1, MAX_EVENTS)
    return reply(await _events(g, kind=kind, after=after, limit=limit))


async def _anomaly_acks(g: Gateway, after: int) -> dict[int, str]:
    """Anomaly seq → who acknowledged it, from the ``anomaly_ack`` events journaled after seq ``after``."""
    acks: dict[int, str] = {}
    position, end = max(after + 1, g.journal.first_seq), g.journal.next_seq
    while position < end:
        batch = await g.journal.read(position, 1000, kinds=[EntryKind.EVENT])
        if not batch:
            break
        for entry in batch:
            event = entry.event()
            seq = event.attrs.get("seq")
            if event.kind == "anomaly_ack" and isinstance(seq, int):
                acks.setdefault(seq, str(event.attrs.get("by", "")))
        position = batch[-1].seq + 1
    return acks


async def anomalies(request: web.Request) -> web.Response:
    g = request.app[GATEWAY]
    after = int_param(request, "after", -1, -1, 2**62) if "after" in request.query else None
    limit = int_param(request, "limit", 100, 1, MAX_EVENTS)
    found = await _events(g, kind="anomaly", after=after, limit=limit)
    acks = await _anomaly_acks(g, min((e.seq for e in found.events if e.seq is not None), default=g.journal.next_seq))
    views = [
        AnomalyView(e.seq, e.kind, e.source, e.ts, e.attrs, acked=e.seq in acks, acked_by=acks.get(e.seq or -1))
        for e in found.events
    ]
    return reply(Anomalies(views, found.next))


_ACK_LOCKS: weakref.WeakKeyDictionary[Gateway, asyncio.Lock] = weakref.WeakKeyDictionary()


async def acknowledge_anomaly(request: web.Request) -> web.Response:
    g = request.app[GATEWAY]
    try:
        seq = int(request.match_info["seq"])
    except ValueError:
        return problem(404, f"no anomaly event {request.match_info['seq']!r}")
    if not g.journal.first_seq <= seq < g.journal.next_seq:
        return problem(404, f"no anomaly event at seq {seq}")
    found = await g.journal.read(seq, 1, kinds=[EntryKind.EVENT])
    if not found or found[0].seq != seq or (anomaly := found[0].event()).kind != "anomaly":
        return problem(404, f"journal entry {seq} is not an anomaly event")
    by = caller_of(request).by
    async with _ACK_LOCKS.setdefault(g, asyncio.Lock()):  # one check-and-journal at a time: no double acks
        earlier = (await _anomaly_acks(g, seq)).get(seq)
        if earlier is not None:
            return problem(409, f"anomaly {seq} ({anomaly.source}) is already acknowledged by {earlier}")
        ack = Event(kind="anomaly_ack", source=anomaly.source, ts=g.clock.now_ns(), attrs={"seq": seq, "by": by})
        await g.pipeline.record([ack])
    return reply(AnomalyAcked(seq, anomaly.source, by))


async def alarms(request: web.Request) -> web.Response:
    g = request.app[GATEWAY]
    views = [
        AlarmView(
            asset=a.asset,
            id=a.config.id,
            state=a.state.value,
            severity=a.config.severity,
            message=a.config.message,
            active=a.active,
            acked=a.state in (AlarmState.ACKNOWLEDGED, AlarmState.NORMAL),
            since_ns=None if a.raised_at is None else int(a.raised_at * 1e9),
        )
        for a in g.twins.alarms()
    ]
    return reply(Alarms(views))


async def acknowledge(request: web.Request) -> web.Response:
    g = request.app[GATEWAY]
    asset, alarm = request.match_info["asset"], request.match_info["alarm"]
    try:
        event = g.twins.acknowledge(asset, alarm, by=caller_of(request).by)
    except UnknownAsset as exc:
        return problem(404, str(exc))
    except AcknowledgeError as exc:
        return problem(409, str(exc))
    await g.pipeline.record([event])
    return reply({"asset": asset, "id": alarm, "state": str(event.attrs.get("state", ""))})


# -- sync, drivers, configuration -----------------------------------------------------------------


async def sync(request: web.Request) -> web.Response:
    g = request.app[GATEWAY]
    stats = g.journal.stats()
    per_entry = stats.bytes / stats.entries if stats.entries else 0.0  # the journal's mean bytes per entry
    cursors = {
        n: {"position": c.position, "lag": c.lag, "queued_bytes": round(c.lag * per_entry)}
        for n, c in sorted(g.journal.cursors().items())
    }
    return reply(
        Sync(
            msgspec.to_builtins(stats),
            cursors,
            [msgspec.to_builtins(u.stats()) for u in g.uplinks],
            [msgspec.to_builtins(s.stats()) for s in g.sinks],
        )
    )


def driver_views(g: Gateway) -> list[dict[str, Any]]:
    return [
        {**msgspec.to_builtins(s.driver.health()), "restarts": s.restarts, "last_failure": s.last_failure}
        for s in g.supervisors
    ]


async def drivers(request: web.Request) -> web.Response:
    return reply(Drivers(driver_views(request.app[GATEWAY])))


def _config_files(g: Gateway) -> list[Path]:
    active = g.bundles.active
    if active.exists():
        return [active]
    return [g.bundles.base] if g.bundles.base is not None and g.bundles.base.exists() else []


async def config(request: web.Request) -> web.Response:
    g = request.app[GATEWAY]
    files = _config_files(g)
    if files:
        text = await asyncio.to_thread(files[0].read_text, encoding="utf-8")
    else:  # built in code (tests, embedding): show the parsed values
        import yaml  # noqa: PLC0415

        text = yaml.safe_dump(msgspec.to_builtins(g.config, enc_hook=str), sort_keys=False)
    return reply(ConfigText(text, [str(f) for f in files]))


async def validate_config(request: web.Request) -> web.Response:
    raw = await request.read()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("the configuration must be UTF-8 text") from None
    try:
        parse_config(text, filename="config.yaml")
    except ConfigError as exc:
        issues = [{"file": i.file, "line": i.line, "path": i.path, "message": i.message} for i in exc.issues]
        return problem(422, f"the configuration has {len(issues)} problem(s)", issues=issues)
    return reply(Valid(True))


# -- the route table ------------------------------------------------------------------------------

_ASSET = Param("asset", {"type": "string"}, "path", "asset id", required=True)
_POINT = Param("point", {"type": "string"}, "path", "point id, URL-encoded (pump1%2Fflow)", required=True)
_TIME = {"oneOf": [{"type": "integer", "minimum": 0, "maximum": MAX_TIME}, {"type": "string", "format": "date-time"}]}
_AFTER = Param("after", {"type": "integer", "minimum": -1}, description="only events with a higher seq")
_LIMIT = Param("limit", {"type": "integer", "minimum": 1, "maximum": MAX_EVENTS}, description="at most this many")
ISSUES = {422: "not valid: `issues` lists each problem with file, line and path"}

OPERATIONS = [
    Operation("GET", "/api/site", site, "viewer", "The site and its assets with their points", "data", response=Site),
    Operation("GET", "/api/twins", twins, "viewer", "Every asset's twin snapshot", "data", response=Twins),
    Operation("GET", "/api/twins/{asset}", twin, "viewer", "One twin: reported, desired, derived, alarms, "
              "maintenance, anomaly", "data", params=(_ASSET,), response=dict[str, Any], errors={404: "no asset"}),
    Operation("PUT", "/api/twins/{asset}/desired/{name}", set_desired, "operator", "Request a desired value "
              "(written to the device, confirmed by a reading)", "data",
              params=(_ASSET, Param("name", {"type": "string"}, "path", "point name in the asset", required=True)),
              body=DesiredRequest, response=DesiredAccepted, status=202,
              errors={400: "bad body", 404: "no asset", 409: "stale version", 422: "not writable"}),
    Operation("GET", "/api/points", points, "viewer", "Every point's latest committed reading", "data",
              response=Points),
    Operation("GET", "/api/points/{point}/history", history, "viewer", "A point's stored readings, or buckets of "
              "count/min/max/mean with `buckets`", "data",
              params=(_POINT, Param("from", _TIME, description="start, ISO-8601 or ns (default: `to` - 1 h)"),
                      Param("to", _TIME, description="end, exclusive (default: now)"),
                      Param("limit", {"type": "integer", "minimum": 1, "maximum": MAX_HISTORY}),
                      Param("buckets", {"type": "integer", "minimum": 0, "maximum": MAX_BUCKETS})),
              response=History, errors={400: "bad parameter", 404: "no point"}),
    Operation("GET", "/api/events", events, "viewer", "Journal events (alarms, desired, anomalies, gaps, ...); "
              "the newest without `after`", "data",
              params=(Param("kind", {"type": "string"}), _AFTER, _LIMIT), response=Events),
    Operation("GET", "/api/alarms", alarms, "viewer", "Every configured alarm and its state", "data",
              response=Alarms),
    Operation("POST", "/api/alarms/{asset}/{alarm}/ack", acknowledge, "operator", "Acknowledge an alarm", "data",
              params=(_ASSET, Param("alarm", {"type": "string"}, "path", "alarm id", required=True)),
              response=dict[str, str], errors={404: "no asset or alarm", 409: "nothing to acknowledge"}),
    Operation("GET", "/api/anomalies", anomalies, "viewer", "Journal events of kind `anomaly`, each with "
              "`acked` and `acked_by`", "data", params=(_AFTER, _LIMIT), response=Anomalies),
    Operation("POST", "/api/anomalies/{seq}/ack", acknowledge_anomaly, "operator", "Acknowledge an anomaly "
              "(journals an `anomaly_ack` event)", "data",
              params=(Param("seq", {"type": "integer", "minimum": 0}, "path", "journal seq of the anomaly event",
                            required=True),),
              response=AnomalyAcked, errors={404: "no anomaly event at that seq", 409: "already acknowledged"}),
    Operation("GET", "/api/sync", sync, "viewer", "Journal, cursors, uplinks and sinks", "data", response=Sync),
    Operation("GET", "/api/drivers", drivers, "viewer", "Health of every driver with restarts", "data",
              response=Drivers),
    Operation("GET", "/api/config", config, "viewer", "The loaded configuration text", "config",
              response=ConfigText),
    Operation("POST", "/api/config/validate", validate_config, "admin", "Check a configuration (YAML text body)",
              "config", body="text", response=Valid, errors={400: "not UTF-8", **ISSUES}),
]  # fmt: skip
