"""``GET /api/live``: Server-Sent Events of twin changes and new journal events.

``event: twin`` carries the asset's snapshot after each change, ``event: event`` each journal event
committed after the stream opened (alarms, anomalies, desired writes, gaps), and a ``: ping`` comment
every ``PING`` seconds so proxies keep the connection and clients notice a dead one. Streams end when
the client goes away or the server shuts down (``on_shutdown`` queues an end marker for every stream).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

import msgspec
from aiohttp import web

from avila_edge.journal import EntryKind
from avila_edge.twins.service import UnknownAsset
from avila_edge.web.routing import GATEWAY, Operation

if TYPE_CHECKING:
    from avila_edge.runtime.gateway import Gateway

logger = logging.getLogger(__name__)

PING = 15.0
OUTBOX = 1000
STREAMS: web.AppKey[set[asyncio.Queue[tuple[str, bytes]]]] = web.AppKey("live.streams")
_json = msgspec.json.Encoder()

Message = tuple[str, bytes]


def _offer(outbox: asyncio.Queue[Message], message: Message) -> None:
    """Queue ``message``; a client too slow to keep up loses the oldest."""
    if outbox.full():
        outbox.get_nowait()
    outbox.put_nowait(message)


async def _twins(g: Gateway, outbox: asyncio.Queue[Message]) -> None:
    changes = g.twins.subscribe()
    try:
        while True:
            change = await changes.get()
            try:
                snapshot = g.twins.snapshot(change.asset)
            except UnknownAsset:
                continue
            _offer(outbox, ("twin", _json.encode(snapshot)))
    finally:
        g.twins.unsubscribe(changes)


async def _events(g: Gateway, outbox: asyncio.Queue[Message]) -> None:
    position = g.journal.next_seq
    while True:
        await g.journal.wait_beyond(position - 1)
        end = g.journal.next_seq
        batch = await g.journal.read(position, 500, kinds=[EntryKind.EVENT])
        batch = [e for e in batch if e.seq < end]
        for entry in batch:
            e = entry.event()
            view = {"seq": e.seq, "kind": e.kind, "source": e.source, "ts": e.ts, "attrs": e.attrs}
            _offer(outbox, ("event", _json.encode(view)))
        position = batch[-1].seq + 1 if len(batch) == 500 else end  # a full batch: more to read


async def live(request: web.Request) -> web.StreamResponse:
    g = request.app[GATEWAY]
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    )
    await response.prepare(request)
    await response.write(b": connected\n\n")
    outbox: asyncio.Queue[Message] = asyncio.Queue(OUTBOX)
    request.app[STREAMS].add(outbox)
    try:
        async with asyncio.TaskGroup() as tg:
            pumps = [
                tg.create_task(_twins(g, outbox), name="http.live.twins"),
                tg.create_task(_events(g, outbox), name="http.live.events"),
            ]
            try:
                await _send(response, outbox)
            finally:
                for task in pumps:
                    task.cancel()
    except* ConnectionError:
        logger.debug("live stream to %s closed by the client", request.remote)
    finally:
        request.app[STREAMS].discard(outbox)
    return response


async def _send(response: web.StreamResponse, outbox: asyncio.Queue[Message]) -> None:
    loop = asyncio.get_running_loop()
    ping_at = loop.time() + PING
    while True:
        try:
            async with asyncio.timeout_at(ping_at):
                kind, data = await outbox.get()
        except TimeoutError:
            await response.write(b": ping\n\n")
            ping_at = loop.time() + PING
            continue
        if not kind:  # the server is shutting down
            return
        await response.write(b"event: " + kind.encode() + b"\ndata: " + data + b"\n\n")


async def end_streams(app: web.Application) -> None:
    for outbox in app[STREAMS]:
        _offer(outbox, ("", b""))


def setup(app: web.Application) -> None:
    app[STREAMS] = set()
    app.on_shutdown.append(end_streams)


OPERATIONS = [
    Operation("GET", "/api/live", live, "viewer", "Server-Sent Events: `twin` snapshots and journal `event`s", "live",
              content="text/event-stream"),
]  # fmt: skip
