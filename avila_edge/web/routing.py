"""What every endpoint module shares: the application keys, the route table entry, JSON replies.

Each route is declared once as an ``Operation``: the app registers it with the router, the access
middleware reads its ``access`` level, and the OpenAPI document is generated from the same table.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import msgspec
from aiohttp import web

if TYPE_CHECKING:
    from avila_edge.runtime.gateway import Gateway

Access = Literal["open", "loopback", "viewer", "operator", "admin"]
"""Who may call a route: anyone; anyone while the listener is on loopback (else viewer+); a role and above."""

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

GATEWAY: web.AppKey[Gateway] = web.AppKey("gateway")

_json = msgspec.json.Encoder()
T = TypeVar("T")


@dataclass(frozen=True)
class Param:
    """A path or query parameter as the OpenAPI document describes it."""

    name: str
    schema: Mapping[str, Any]
    where: Literal["path", "query"] = "query"
    description: str = ""
    required: bool = False


@dataclass(frozen=True)
class Operation:
    """One route: method, path, handler, who may call it and what the OpenAPI document says of it.

    ``body`` is a msgspec type the JSON body decodes to, or ``"text"`` for a plain-text body;
    ``response`` the msgspec type of the success reply (``None``: no body or described by ``content``).
    """

    method: Literal["GET", "POST", "PUT", "DELETE"]
    path: str
    handler: Handler
    access: Access
    summary: str
    tag: str
    params: tuple[Param, ...] = ()
    body: type[Any] | Literal["text"] | None = None
    response: Any = None
    status: int = 200
    content: str = "application/json"
    errors: Mapping[int, str] = field(default_factory=dict)


def reply(data: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    """``data`` as a JSON response."""
    return web.Response(body=_json.encode(data), status=status, content_type="application/json", headers=headers)


def problem(status: int, message: str, **extra: Any) -> web.Response:
    """An error reply: ``{"error": message, ...}``."""
    return reply({"error": message, **extra}, status)


class BadRequest(Exception):
    """A request the handler refuses with 400 (or ``status``): the message says what is wrong."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


async def json_body(request: web.Request, typ: type[T]) -> T:
    """The request's JSON body as ``typ``; ``BadRequest`` naming the problem otherwise.

    The body must be sent as ``application/json``: a page on another site cannot send that without a
    CORS preflight, which this server never grants (so no cross-site form can log a browser in)."""
    if request.content_type != "application/json":
        raise BadRequest(f"send the body as application/json, not {request.content_type}", 415)
    try:
        return msgspec.json.decode(await request.read(), type=typ)
    except msgspec.DecodeError as exc:
        raise BadRequest(f"bad request body: {exc}") from None


@web.middleware
async def bad_requests(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn ``BadRequest`` raised by a handler, and unknown API routes, into JSON error replies."""
    try:
        return await handler(request)
    except BadRequest as exc:
        return problem(exc.status, str(exc))
    except (web.HTTPNotFound, web.HTTPMethodNotAllowed) as exc:
        if not request.path.startswith("/api/"):
            raise
        return problem(exc.status, f"{exc.reason}: {request.method} {request.path}")
