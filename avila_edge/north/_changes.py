"""Waiting for twin changes in the endpoints' loops, without ever missing a stop."""

from __future__ import annotations

import asyncio
from typing import Any

from avila_edge.core import check_cancelled
from avila_edge.core.cancel import CHECK_EVERY


async def next_changes(queue: asyncio.Queue[Any], *, wake: asyncio.Event | None = None) -> set[str]:
    """The assets of the next twin changes (everything queued by then); an empty set when ``wake`` is set.

    Raises ``CancelledError`` when the task is being cancelled, even if the cancellation was swallowed
    by a library call before, so an endpoint always stops with the gateway.
    """
    while True:
        check_cancelled()
        if wake is not None and wake.is_set():
            return set()
        try:
            async with asyncio.timeout(CHECK_EVERY):
                change = await _first(queue, wake)
        except TimeoutError:
            continue
        if change is None:
            return set()
        assets = {change.asset}
        while not queue.empty():
            assets.add(queue.get_nowait().asset)
        return assets


async def _first(queue: asyncio.Queue[Any], wake: asyncio.Event | None) -> Any:
    if wake is None:
        return await queue.get()
    get = asyncio.ensure_future(queue.get())
    woken = asyncio.ensure_future(wake.wait())
    try:
        await asyncio.wait([get, woken], return_when=asyncio.FIRST_COMPLETED)
    finally:
        woken.cancel()
        if not get.done():
            get.cancel()
    return get.result() if get.done() and not get.cancelled() else None
