"""``avila-edge fleet --config FILE``: run a fleet receiver with its status page."""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import html
import os
import signal
import sys
import time
from pathlib import Path

import msgspec
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat

from avila_edge.config import load_document
from avila_edge.config.fleet import FleetConfig
from avila_edge.config.secrets import read_secret
from avila_edge.core import SystemClock
from avila_edge.fleet.receiver import FleetReceiver
from avila_edge.sync.downlink import Command, ConfigCommand, DesiredCommand, sign_command

RECEIVER: web.AppKey[FleetReceiver] = web.AppKey("receiver")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    fleet = sub.add_parser("fleet", help="run the cloud-side fleet receiver")
    fleet.add_argument("--config", type=Path, required=True, help="fleet receiver configuration (YAML)")
    fleet.set_defaults(handler=_fleet)

    command = sub.add_parser("fleet-command", help="make the fleet's signing key and signed gateway commands")
    steps = command.add_subparsers(title="steps", metavar="STEP", required=True)
    keygen = steps.add_parser("keygen", help="write a new fleet signing key; print its public key (fleet_key)")
    keygen.add_argument("--out", type=Path, required=True, help="private key file to create (PEM, mode 0600)")
    keygen.set_defaults(handler=_keygen)
    sign = steps.add_parser("sign", help="print a signed command envelope (publish it to <prefix>/<gateway>/command)")
    sign.add_argument("--key", type=Path, required=True, help="the fleet's private key (from keygen)")
    sign.add_argument("--gateway", required=True, help="the site id of the gateway it is for")
    sign.add_argument("--id", type=int, help="command id, above every id sent before (default: now in ms)")
    sign.add_argument("--ttl", type=float, default=600.0, help="seconds until it expires (default 600)")
    what = sign.add_mutually_exclusive_group(required=True)
    what.add_argument("--desired", nargs=3, metavar=("ASSET", "NAME", "VALUE"), help="set a desired twin value")
    what.add_argument("--config", type=Path, help="replace the gateway's configuration with this YAML file")
    sign.set_defaults(handler=_sign)


def _keygen(args: argparse.Namespace) -> int:
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    fd = os.open(args.out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    print(base64.b64encode(key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)).decode())
    return 0


def _sign(args: argparse.Namespace) -> int:
    key = serialization.load_pem_private_key(args.key.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        print(f"{args.key}: not an Ed25519 private key", file=sys.stderr)
        return 1
    ident = args.id if args.id is not None else time.time_ns() // 1_000_000
    expires = time.time_ns() + int(args.ttl * 1e9)
    command: Command
    if args.config is not None:
        command = ConfigCommand(id=ident, gateway=args.gateway, expires_ns=expires, config=args.config.read_text())
    else:
        asset, name, raw = args.desired
        value = msgspec.yaml.decode(raw) if raw else raw
        if not isinstance(value, (bool, int, float, str)):
            print(f"--desired value {raw!r} is not a number, boolean or string", file=sys.stderr)
            return 1
        command = DesiredCommand(id=ident, gateway=args.gateway, expires_ns=expires, asset=asset, name=name,
                                 value=value)  # fmt: skip
    sys.stdout.write(sign_command(key, command).decode() + "\n")
    return 0


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
        "<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in (g.id, g.last_seen_ns, g.max_seq, g.missing,
                                                                         g.entries,
                                                                         g.duplicates, g.gaps, g.dropped,
                                                                         g.audit.chain_size, g.audit.content_verified,
                                                                         g.audit.problem or "ok")) + "</tr>"
        for g in await receiver.gateways()
    )  # fmt: skip
    text = (
        "<!doctype html><meta charset=utf-8><meta name=viewport content='width=device-width'>"
        "<title>avila-edge fleet</title><h1>Fleet</h1><table><tr><th>gateway<th>last seen (ns)<th>max seq<th>missing"
        "<th>entries<th>duplicates<th>gaps<th>dropped<th>verified checkpoint (leaves)<th>content verified<th>audit"
        f"</tr>{rows}</table>"
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
