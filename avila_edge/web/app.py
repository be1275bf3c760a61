"""aiohttp application: ``/status``, ``/metrics``, ``/healthz``, ``/api/twins``.

Nothing here changes the plant: writes (desired values, acknowledgements) arrive with the
authenticated console and API.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import msgspec
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.openmetrics.exposition import CONTENT_TYPE_LATEST as OPENMETRICS
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics

import avila_edge
from avila_edge.observability.metrics import registry_for
from avila_edge.twins.service import UnknownAsset

if TYPE_CHECKING:
    from avila_edge.runtime.gateway import Gateway

GATEWAY: web.AppKey[Gateway] = web.AppKey("gateway")
REGISTRY: web.AppKey[CollectorRegistry] = web.AppKey("registry")
_json = msgspec.json.Encoder()


def _respond(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=_json.encode(data), status=status, content_type="application/json")


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
    return _respond(
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
    return _respond(
        {"status": "ok" if not problems else "unhealthy", "problems": problems}, 200 if not problems else 503
    )


async def twins(request: web.Request) -> web.Response:
    g = request.app[GATEWAY]
    return _respond({"assets": [g.twins.snapshot(a) for a in g.twins.assets()]})


async def twin(request: web.Request) -> web.Response:
    g = request.app[GATEWAY]
    try:
        return _respond(g.twins.snapshot(request.match_info["asset"]))
    except UnknownAsset as exc:
        return _respond({"error": str(exc)}, 404)


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
        return _respond({"error": f"bad request: {exc}"}, 400)
    try:
        variant = parse_config(body.variant, filename="variant.yaml")
    except ConfigError as exc:
        return _respond({"error": "the variant configuration is invalid", "issues": [str(i) for i in exc.issues]}, 400)
    report = await replay_journal(g.journal, g.config, variant, start_ns=start, end_ns=end)
    return _respond(report)


def build_app(gateway: Gateway) -> web.Application:
    app = web.Application()
    app[GATEWAY] = gateway
    app[REGISTRY] = registry_for(lambda: gateway)
    app.router.add_get("/status", status)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/api/twins", twins)
    app.router.add_get("/api/twins/{asset}", twin)
    app.router.add_post("/api/replay", replay)
    return app
