"""The operations endpoints: ``/status`` and ``/metrics`` (open on loopback, else viewer+), ``/healthz``
(always open, reveals only whether the gateway is healthy) and the what-if ``/api/replay``."""

from __future__ import annotations

import time
from typing import Any

import msgspec
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.openmetrics.exposition import CONTENT_TYPE_LATEST as OPENMETRICS
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics

import avila_edge
from avila_edge.web.routing import GATEWAY, Operation, reply

REGISTRY: web.AppKey[CollectorRegistry] = web.AppKey("registry")


async def status(request: web.Request) -> web.Response:
    g = request.app[GATEWAY]
    points = []
    for point_id in g.point_ids:
        r = g.pipeline.latest.get(point_id)
        points.append({
            "id": point_id,
            "unit": g.units.get(point_id, ""),
            "value": None if r is None else r.value,
            "quality": "none" if r is None else r.quality.name.lower(),
            "reason": "" if r is None else r.reason,
            "ts_source": None if r is None else r.ts_source,
            "ts_gateway": None if r is None else r.ts_gateway,
            "seq": None if r is None else r.seq,
        })  # fmt: skip
    return reply(
        {
            "site": {"id": g.config.site.id, "name": g.config.site.name},
            "version": avila_edge.__version__,
            "uptime_seconds": round(time.monotonic() - g.started_at, 3),
            "points": points,
            "journal": msgspec.to_builtins(g.journal.stats()),
            "cursors": {n: {"position": c.position, "lag": c.lag} for n, c in sorted(g.journal.cursors().items())},
            "drivers": [
                {**msgspec.to_builtins(s.driver.health()), "restarts": s.restarts, "last_failure": s.last_failure}
                for s in g.supervisors
            ],
            "pipeline": {
                "accepted": g.pipeline.counters.accepted,
                "filtered": g.pipeline.counters.filtered,
                "rejected": g.pipeline.counters.rejected,
                "events": g.pipeline.counters.events,
            },
            "audit": None
            if g.audit is None
            else {"origin": g.audit.origin, "tree_size": g.audit.size, "problem": g.audit.problem},
            "uplinks": [msgspec.to_builtins(u.stats()) for u in g.uplinks],
            "sinks": [msgspec.to_builtins(s.stats()) for s in g.sinks],
            "north": {name: msgspec.to_builtins(s) for name, s in g.north_stats().items()},
        }
    )


async def metrics(request: web.Request) -> web.Response:
    registry = request.app[REGISTRY]
    if "application/openmetrics-text" in request.headers.get("Accept", ""):
        body = generate_openmetrics(registry)  # type: ignore[no-untyped-call]
        return web.Response(body=body, headers={"Content-Type": OPENMETRICS})
    return web.Response(body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST})


async def healthz(request: web.Request) -> web.Response:
    g = request.app[GATEWAY]
    problems = g.health_problems()
    return reply({"status": "ok" if not problems else "unhealthy", "problems": problems}, 200 if not problems else 503)


class ReplayRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    variant: str
    start: str = msgspec.field(name="from")
    end: str = msgspec.field(name="to")


async def replay(request: web.Request) -> web.Response:
    """What-if replay: the body names a time range and the variant configuration (YAML text)."""
    from datetime import datetime  # noqa: PLC0415

    from avila_edge.config import parse_config  # noqa: PLC0415
    from avila_edge.core import ConfigError  # noqa: PLC0415
    from avila_edge.twins.replay import replay_journal  # noqa: PLC0415

    g = request.app[GATEWAY]
    try:
        body = msgspec.json.decode(await request.read(), type=ReplayRequest)
        start = int(datetime.fromisoformat(body.start.replace("Z", "+00:00")).timestamp() * 1e9)
        end = int(datetime.fromisoformat(body.end.replace("Z", "+00:00")).timestamp() * 1e9)
    except (msgspec.DecodeError, ValueError) as exc:
        return reply({"error": f"bad request: {exc}"}, 400)
    try:
        variant = parse_config(body.variant, filename="variant.yaml")
    except ConfigError as exc:
        return reply({"error": "the variant configuration is invalid", "issues": [str(i) for i in exc.issues]}, 400)
    report = await replay_journal(g.journal, g.config, variant, start_ns=start, end_ns=end)
    return reply(report)


class Health(msgspec.Struct, frozen=True):
    status: str
    problems: list[str]


OPERATIONS = [
    Operation("GET", "/status", status, "loopback", "Points, journal, cursors, drivers, pipeline, audit, sync, "
              "north", "ops", response=dict[str, Any]),
    Operation("GET", "/metrics", metrics, "loopback", "Prometheus text (OpenMetrics when asked with Accept)", "ops",
              content="text/plain"),
    Operation("GET", "/healthz", healthz, "open", "Whether the gateway is healthy (503 when not)", "ops",
              response=Health, errors={503: "unhealthy"}),
    Operation("POST", "/api/replay", replay, "operator", "What-if replay of a time range under a variant "
              "configuration", "config", body=ReplayRequest, response=dict[str, Any],
              errors={400: "bad request or invalid variant"}),
]  # fmt: skip
