"""The aiohttp application of one gateway: every route table, the access middleware, the console files.

Modules, one job each: ``routing`` (shared keys, route entries, JSON replies), ``auth`` (users, tokens,
the access check), ``sessions`` (console logins, lockout), ``accounts`` (setup, login, users and tokens
routes), ``status`` (/status, /metrics, /healthz, replay), ``api`` (data routes), ``audit`` (checkpoints
and proofs), ``live`` (Server-Sent Events), ``openapi`` (the document at /api/openapi.json), ``tls`` (HTTPS).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web

from avila_edge.core.net import is_loopback
from avila_edge.observability.metrics import registry_for
from avila_edge.web import accounts, api, audit, live, status
from avila_edge.web.auth import AUTH, Accounts, AuthState, access, register
from avila_edge.web.openapi import document
from avila_edge.web.routing import GATEWAY, Operation, bad_requests, reply
from avila_edge.web.sessions import Lockout, Sessions
from avila_edge.web.tls import wants_tls

if TYPE_CHECKING:
    from avila_edge.runtime.gateway import Gateway

STATIC = Path(__file__).parent / "static"
OPENAPI_PATH = "/api/openapi.json"


SPEC: web.AppKey[dict[str, Any]] = web.AppKey("openapi")


async def openapi(request: web.Request) -> web.Response:
    return reply(request.app[SPEC])


def operations() -> list[Operation]:
    """Every route of the gateway's web server."""
    own = Operation("GET", OPENAPI_PATH, openapi, "open", "This OpenAPI 3.1 document", "meta",
                    response=dict[str, Any])  # fmt: skip
    return [*status.OPERATIONS, *accounts.OPERATIONS, *api.OPERATIONS, *audit.OPERATIONS, *live.OPERATIONS, own]


async def index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})


def build_app(gateway: Gateway) -> web.Application:
    http = gateway.config.http
    app = web.Application(middlewares=[access, bad_requests], client_max_size=4 * 2**20)
    app[GATEWAY] = gateway
    app[status.REGISTRY] = registry_for(lambda: gateway)
    app[AUTH] = AuthState(
        accounts=Accounts(gateway.config.state_dir),  # replaced by the loaded store at startup
        sessions=Sessions(http.session_idle),
        lockout=Lockout(),
        loopback=is_loopback(http.host),
        secure_cookies=wants_tls(http),
    )

    async def open_accounts(app: web.Application) -> None:
        app[AUTH].accounts = await Accounts.open(gateway.config.state_dir)

    app.on_startup.append(open_accounts)
    live.setup(app)
    table = operations()
    app[SPEC] = document(table)
    for op in table:
        if op.method == "GET":
            app.router.add_get(op.path, op.handler)  # and HEAD
        else:
            app.router.add_route(op.method, op.path, op.handler)
    register(app, table)
    if (STATIC / "index.html").exists():
        app.router.add_get("/", index)
        app.router.add_static("/static/", STATIC, append_version=False)
    return app
