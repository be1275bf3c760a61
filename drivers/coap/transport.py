"""The only module that speaks aiocoap: requests and observations towards one node, and the SenML
ingest server. Library errors are translated here.

Client failures leave as ``LinkDown`` (network error: the node is unreachable, the observation was
ended by the node), ``Timeout`` (no answer within ``timeout``) or ``DeviceRejected`` (the node
answered with an error code), each naming the device, the method and the resource URI.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import aiocoap
import aiocoap.error
import aiocoap.resource
from aiocoap.numbers.codes import Code

from avila_edge.core import DeviceRejected, LinkDown, Timeout
from drivers.coap.config import path_segments

logger = logging.getLogger(__name__)

_EXCERPT: Final = 64
TRANSPORTS: Final = ["udp6"]
"""CoAP over UDP only: aiocoap would otherwise also listen on TCP, TLS and WebSocket ports."""


@dataclass(frozen=True, slots=True)
class Response:
    """A node's answer (a response or a notification)."""

    code: str
    payload: bytes
    content_format: int | None
    observe: int | None


def _response(msg: Any) -> Response:
    cf = msg.opt.content_format
    return Response(
        code=str(msg.code),
        payload=bytes(msg.payload),
        content_format=None if cf is None else int(cf),
        observe=msg.opt.observe,
    )


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class NodeClient:
    """Requests to one CoAP node; ``async with`` opens and closes the client endpoint."""

    def __init__(self, device: str, host: str, port: int, *, timeout: float) -> None:
        self.device = device
        self.endpoint = f"coap://{_host_port(host, port)}"
        self.timeout = timeout
        self._context: aiocoap.Context | None = None

    async def __aenter__(self) -> NodeClient:
        self._context = await aiocoap.Context.create_client_context(
            loggername="drivers.coap.aiocoap", transports=TRANSPORTS
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        context, self._context = self._context, None
        if context is not None:
            await context.shutdown()

    def _message(self, code: Code, path: str, **options: Any) -> aiocoap.Message:
        msg = aiocoap.Message(code=code, uri=self.endpoint, **options)
        msg.opt.uri_path = path_segments(path)
        return msg

    def _ctx(self, op: str) -> aiocoap.Context:
        if self._context is None:
            raise LinkDown(self.device, op, "the CoAP client is not open")
        return self._context

    async def _answer(self, op: str, request: Any) -> Response:
        try:
            async with asyncio.timeout(self.timeout):
                msg = await request.response
        except TimeoutError:
            request.response.cancel()
            raise Timeout(self.device, op, f"no answer within {self.timeout:g} s") from None
        except aiocoap.error.NetworkError as exc:
            raise LinkDown(self.device, op, f"node unreachable ({exc or 'network error'})") from exc
        except aiocoap.error.Error as exc:
            raise LinkDown(self.device, op, str(exc) or type(exc).__name__) from exc
        answer = _response(msg)
        if not msg.code.is_successful():
            raise DeviceRejected(self.device, op, f"the node answered {answer.code}{_diagnostic(answer.payload)}")
        return answer

    async def get(self, path: str) -> Response:
        op = f"GET {self.endpoint}{path}"
        return await self._answer(op, self._ctx(op).request(self._message(Code.GET, path)))

    async def put(self, path: str, payload: bytes, content_format: int) -> Response:
        op = f"PUT {self.endpoint}{path}"
        msg = self._message(Code.PUT, path, payload=payload, content_format=content_format)
        return await self._answer(op, self._ctx(op).request(msg))

    @contextlib.asynccontextmanager
    async def observe(self, path: str) -> AsyncIterator[Observation]:
        """Register an observation of ``path``; leaving the block cancels it on the node too."""
        op = f"observe {self.endpoint}{path}"
        request = self._ctx(op).request(self._message(Code.GET, path, observe=0))
        observation = request.observation
        try:
            first = await self._answer(op, request)
            yield Observation(self.device, op, first, observation)
        finally:
            if not observation.cancelled:
                observation.cancel()


class Observation:
    """A registered observation: the first response, then notifications from ``next()``."""

    def __init__(self, device: str, op: str, first: Response, observation: Any) -> None:
        self.device = device
        self.op = op
        self.first = first
        self.observable = first.observe is not None
        self._iterator = aiter(observation)

    async def next(self) -> Response:
        """The next notification; raises when the node ends the observation or answers an error."""
        try:
            msg = await anext(self._iterator)
        except StopAsyncIteration:
            raise LinkDown(self.device, self.op, "the node ended the observation") from None
        except aiocoap.error.NetworkError as exc:
            raise LinkDown(self.device, self.op, f"node unreachable ({exc or 'network error'})") from exc
        except aiocoap.error.Error as exc:
            raise LinkDown(self.device, self.op, str(exc) or type(exc).__name__) from exc
        answer = _response(msg)
        if not msg.code.is_successful():
            raise DeviceRejected(self.device, self.op, f"the node answered {answer.code}{_diagnostic(answer.payload)}")
        return answer


def _diagnostic(payload: bytes) -> str:
    text = payload[:_EXCERPT].decode("utf-8", "replace").strip()
    return f" ({text})" if text else ""


# -- the ingest server ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Inbound:
    """One request a node sent to the ingest server."""

    path: str
    payload: bytes
    content_format: int | None
    source: str
    incomplete: bool = False
    """A blockwise upload refused before it was assembled (it would exceed ``max_payload``)."""


@dataclass(frozen=True, slots=True)
class Reply:
    """The answer to an ``Inbound``: a CoAP response code (``"2.04"``) and a diagnostic text."""

    code: str
    text: str = ""


Handler = Callable[[Inbound], Awaitable[Reply]]

_CODES: Final = {
    "2.04": Code.CHANGED,
    "4.00": Code.BAD_REQUEST,
    "4.04": Code.NOT_FOUND,
    "4.13": Code.REQUEST_ENTITY_TOO_LARGE,
    "4.15": Code.UNSUPPORTED_CONTENT_FORMAT,
    "5.03": Code.SERVICE_UNAVAILABLE,
}


class _PackResource(aiocoap.resource.Resource):  # type: ignore[misc]
    def __init__(self, path: str, handler: Handler, max_payload: int) -> None:
        super().__init__()
        self._path = path
        self._handler = handler
        self._max_payload = max_payload

    async def needs_blockwise_assembly(self, request: Any) -> bool:
        block1 = request.opt.block1
        # a blockwise upload that would outgrow max_payload goes to render_post unassembled (4.13)
        return block1 is None or (block1.block_number + 1) * block1.size <= self._max_payload

    async def render_post(self, request: Any) -> aiocoap.Message:
        cf = request.opt.content_format
        inbound = Inbound(
            path=self._path,
            payload=bytes(request.payload),
            content_format=None if cf is None else int(cf),
            source=str(request.remote.hostinfo),
            # a blockwise upload that would outgrow max_payload reaches us unassembled
            incomplete=request.opt.block1 is not None and request.opt.block1.more,
        )
        reply = await self._handler(inbound)
        response = aiocoap.Message(code=_CODES[reply.code], payload=reply.text.encode())
        if reply.code == "4.13":
            response.opt.size1 = self._max_payload
        return response

    render_put = render_post


class IngestServer:
    """Listens on ``host:port``; POST (or PUT) to one of ``paths`` goes to ``handler``."""

    def __init__(
        self, device: str, host: str, port: int, paths: Sequence[str], handler: Handler, *, max_payload: int
    ) -> None:
        self.device = device
        self.endpoint = f"coap://{_host_port(host, port)}"
        self._bind = (host, port)
        self._site = aiocoap.resource.Site()
        for path in paths:
            self._site.add_resource(path_segments(path), _PackResource(path, handler, max_payload))
        self._context: aiocoap.Context | None = None

    async def __aenter__(self) -> IngestServer:
        try:
            await _probe(self._bind)
            self._context = await aiocoap.Context.create_server_context(
                self._site, bind=self._bind, loggername="drivers.coap.aiocoap", transports=TRANSPORTS
            )
        except OSError as exc:
            raise LinkDown(self.device, f"listen on {self.endpoint}", exc.strerror or str(exc)) from exc
        except aiocoap.error.Error as exc:
            raise LinkDown(self.device, f"listen on {self.endpoint}", str(exc)) from exc
        return self

    async def __aexit__(self, *exc: object) -> None:
        context, self._context = self._context, None
        if context is not None:
            await context.shutdown()


__all__ = ["Handler", "Inbound", "IngestServer", "NodeClient", "Observation", "Reply", "Response"]


async def _probe(bind: tuple[str, int]) -> None:
    """Bind the address the way aiocoap will (IPv6 socket, v4-mapped, SO_REUSEPORT) and let go.

    aiocoap leaves its socket open when the bind fails; trying first keeps a port in use from
    leaking one socket per retry."""
    infos = await asyncio.get_running_loop().getaddrinfo(
        bind[0], bind[1], family=socket.AF_INET6, type=socket.SOCK_DGRAM, flags=socket.AI_V4MAPPED
    )
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        probe.bind(infos[0][4])
