"""``avila-edge fleet --config FILE``: run a fleet receiver with its status page."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import html
import signal
from pathlib import Path

import msgspec
from aiohttp import web

from avila_edge.config import load_document
from avila_edge.config.fleet import FleetConfig
from avila_edge.config.secrets import read_secret
from avila_edge.core import SystemClock
from avila_edge.fleet.receiver import FleetReceiver

RECEIVER: web.AppKey[FleetReceiver] = web.AppKey("receiver")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    fleet = sub.add_parser("fleet", help="run the cloud-side fleet receiver")
    fleet.add_argument("--config", type=Path, required=True, help="fleet receiver configuration (YAML)")
    fleet.set_defaults(handler=_fleet)


async def status(request: web.Request) -> web.Response:
    receiver = request.app[RECEIVER]
    body = {
        "receiver": msgspec.to_builtins(receiver.stats()),
        "gateways": msgspec.to_builtins(await receiver.gateways()),
    }
    return web.json_response(body)


async def page(request: web.Request) -> web.Response:
    receiver = request.app[RECEIVER]
    rows = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in (g.id, g.last_seen_ns, g.max_seq, g.entries,
                                                                         g.duplicates, g.gaps, g.dropped)) + "</tr>"
        for g in await receiver.gateways()
    )  # fmt: skip
    text = (
        "<!doctype html><meta charset=utf-8><meta name=viewport content='width=device-width'>"
        "<title>avila-edge fleet</title><h1>Fleet</h1><table><tr><th>gateway<th>last seen (ns)<th>max seq"
        f"<th>entries<th>duplicates<th>gaps<th>dropped</tr>{rows}</table>"
    )
    return web.Response(text=text, content_type="text/html")


def _fleet(args: argparse.Namespace) -> int:
    config = load_document(args.config, FleetConfig)
    if not config.state_dir.is_absolute():
        config = msgspec.structs.replace(config, state_dir=args.config.resolve().parent / config.state_dir)
    password = read_secret(config.broker.password_file, what="broker password")
    token = read_secret(config.tsdb.token_file, what="TSDB token") if config.tsdb else None
    return asyncio.run(_serve(config, password, token or ""))


async def _serve(config: FleetConfig, password: str | None, token: str) -> int:
    receiver = FleetReceiver(config, clock=SystemClock(), password=password, token=token)
    app = web.Application()
    app[RECEIVER] = receiver
    app.router.add_get("/status", status)
    app.router.add_get("/", page)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await web.TCPSite(runner, config.http.host, config.http.port).start()
        async with asyncio.TaskGroup() as tg:
            task = tg.create_task(receiver.run(), name="fleet.receiver")
            await stop.wait()
            task.cancel()
    finally:
        await runner.cleanup()
        with contextlib.suppress(Exception):
            await receiver.close()
    return 0
