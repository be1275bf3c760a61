"""CoAP devices serving the pump plant: a constrained node with observable resources, and a poster
that sends SenML packs (RFC 8428) to a gateway's ingest endpoint.

Resources of ``CoapNode`` (one pump, stepped every ``interval`` seconds; observable ones notify then):

  /temp        motor temperature, text/plain "45.12"                       observable
  /vibration   vibration (mm/s), text/plain                                 observable
  /senml       a SenML pack of flow, pressure, motor_temperature, vibration, observable
               speed and running (``senml_format``, or what the request accepts: 110/112)
  /status      JSON {"flow": .., "pressure": .., "speed": .., "running": ..}  GET only (poll it)
  /setpoint    speed setpoint (rpm), text/plain; PUT a number to change it  observable

The node can be stopped and started again on the same port (``restart``): its observers are lost,
as on a real node that reboots. ``registrations`` and ``observers`` tell how many observations each
resource accepted in total and holds now; ``notifications`` how many it sent.

Imports nothing of the gateway: SenML is written here with ``json`` and ``cbor2`` directly.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import signal
import socket
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, Final, Self

import aiocoap
import aiocoap.resource
import cbor2
from aiocoap.numbers.codes import Code

from hil.plant import PumpPlant

logger = logging.getLogger(__name__)

SENML_JSON: Final = 110
SENML_CBOR: Final = 112
TEXT: Final = 0
JSON_CF: Final = 50
_CBOR_LABELS: Final = {"bn": -2, "bt": -3, "bu": -4, "bv": -5, "n": 0, "u": 1, "v": 2, "vs": 3, "vb": 4, "s": 5, "t": 6}
UNITS: Final = {
    "flow": "m3/h",
    "pressure": "bar",
    "motor_temperature": "Cel",
    "vibration": "mm/s",
    "speed": "1/min",
}


def free_udp_port(host: str = "127.0.0.1") -> int:
    """A UDP port nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def plant_pack(plant: PumpPlant, base_name: str, *, now: float | None = None) -> list[dict[str, Any]]:
    """The plant's values as SenML records (JSON field names) under ``base_name``."""
    values = plant.values()
    records: list[dict[str, Any]] = []
    for i, (name, unit) in enumerate(UNITS.items()):
        record: dict[str, Any] = {"n": name, "u": unit, "v": round(values[name], 4)}
        if i == 0:
            record = {"bn": base_name, "bt": time.time() if now is None else now, **record}
        records.append(record)
    records.append({"n": "running", "vb": plant.running})
    return records


def encode_pack(records: list[dict[str, Any]], content_format: int = SENML_JSON) -> bytes:
    """SenML JSON (110) or CBOR (112) of ``records``."""
    if content_format == SENML_CBOR:
        return cbor2.dumps([{_CBOR_LABELS[k]: v for k, v in r.items()} for r in records])
    return json.dumps(records, separators=(",", ":")).encode()


class _Counted(aiocoap.resource.ObservableResource):  # type: ignore[misc]
    def __init__(self, node: CoapNode, path: str, render: Callable[[Any], aiocoap.Message]) -> None:
        super().__init__()
        self._node = node
        self._path = path
        self._render = render

    async def add_observation(self, request: Any, serverobservation: Any) -> None:
        self._node.registrations[self._path] = self._node.registrations.get(self._path, 0) + 1
        await super().add_observation(request, serverobservation)

    def update_observation_count(self, newcount: int) -> None:
        self._node.observers[self._path] = newcount

    def notify(self) -> None:
        count = self._node.observers.get(self._path, 0)
        if count:
            self._node.notifications[self._path] = self._node.notifications.get(self._path, 0) + count
            self.updated_state()

    async def render_get(self, request: Any) -> aiocoap.Message:
        return self._render(request)


class _Setpoint(_Counted):
    async def render_put(self, request: Any) -> aiocoap.Message:
        try:
            rpm = float(bytes(request.payload).decode("utf-8"))
        except ValueError:
            return aiocoap.Message(code=Code.BAD_REQUEST, payload=b"send the speed setpoint in rpm as text")
        self._node.plant.set_speed(rpm)
        self._node.writes.append(rpm)
        self.notify()
        return aiocoap.Message(code=Code.CHANGED)


class _Status(aiocoap.resource.Resource):  # type: ignore[misc]
    def __init__(self, node: CoapNode) -> None:
        super().__init__()
        self._node = node

    async def render_get(self, request: Any) -> aiocoap.Message:
        v = self._node.plant.values()
        doc = {"flow": v["flow"], "pressure": v["pressure"], "speed": v["speed"], "running": self._node.plant.running}
        return aiocoap.Message(payload=json.dumps(doc).encode(), content_format=JSON_CF)


class CoapNode:
    """A CoAP node serving one pump plant; ``async with CoapNode(port=...) as node``."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        plant: PumpPlant | None = None,
        interval: float = 0.1,
        base_name: str = "urn:dev:pump1:",
        senml_format: int = SENML_JSON,
    ) -> None:
        self.host = host
        self.senml_format = senml_format
        self.port = port if port is not None else free_udp_port(host)
        self.plant = plant or PumpPlant()
        self.interval = interval
        self.base_name = base_name
        self.registrations: dict[str, int] = {}
        self.observers: dict[str, int] = {}
        self.notifications: dict[str, int] = {}
        self.writes: list[float] = []
        self.ticks = 0
        self._context: aiocoap.Context | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._observable: dict[str, _Counted] = {}

    @property
    def uri(self) -> str:
        return f"coap://{self.host}:{self.port}"

    def _site(self) -> aiocoap.resource.Site:
        site = aiocoap.resource.Site()
        self._observable = {
            "/temp": _Counted(self, "/temp", lambda _: self._text(self.plant.values()["motor_temperature"])),
            "/vibration": _Counted(self, "/vibration", lambda _: self._text(self.plant.values()["vibration"])),
            "/senml": _Counted(self, "/senml", self._senml),
            "/setpoint": _Setpoint(self, "/setpoint", lambda _: self._text(self.plant.speed_setpoint)),
        }
        for path, resource in self._observable.items():
            site.add_resource([path.strip("/")], resource)
        site.add_resource(["status"], _Status(self))
        return site

    @staticmethod
    def _text(value: float) -> aiocoap.Message:
        return aiocoap.Message(payload=f"{value:.4f}".encode(), content_format=TEXT)

    def _senml(self, request: Any) -> aiocoap.Message:
        accept = request.opt.accept
        cf = int(accept) if accept is not None and int(accept) in (SENML_JSON, SENML_CBOR) else self.senml_format
        return aiocoap.Message(payload=encode_pack(plant_pack(self.plant, self.base_name), cf), content_format=cf)

    async def start(self) -> None:
        """Listen (again) on the node's port; observers of an earlier run are gone."""
        self.observers = {}
        self._context = await aiocoap.Context.create_server_context(
            self._site(), bind=(self.host, self.port), loggername="hil.coap_nodes.aiocoap", transports=["udp6"]
        )
        self._ticker = asyncio.get_running_loop().create_task(self._tick(), name=f"hil.coap_node[{self.port}].tick")

    async def stop(self) -> None:
        """Stop answering, as a node that loses power does (no notification says goodbye)."""
        ticker, self._ticker = self._ticker, None
        if ticker is not None:
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker
        context, self._context = self._context, None
        if context is not None:
            await context.shutdown()

    async def restart(self, down_for: float = 0.0) -> None:
        await self.stop()
        if down_for > 0:
            await asyncio.sleep(down_for)
        await self.start()

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            self.plant.step(self.interval)
            self.ticks += 1
            for resource in self._observable.values():
                resource.notify()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()


class SenmlPoster:
    """POSTs SenML packs of a plant to a gateway's ingest URI (``coap://host:port/path``)."""

    def __init__(
        self, uri: str, *, plant: PumpPlant | None = None, base_name: str = "urn:dev:pump1:", timeout: float = 5.0
    ) -> None:
        self.uri = uri
        self.timeout = timeout
        self.plant = plant or PumpPlant()
        self.base_name = base_name
        self.sent = 0
        self._context: aiocoap.Context | None = None

    async def __aenter__(self) -> Self:
        self._context = await aiocoap.Context.create_client_context(
            loggername="hil.coap_nodes.poster", transports=["udp6"]
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        context, self._context = self._context, None
        if context is not None:
            await context.shutdown()

    async def post(self, payload: bytes, content_format: int = SENML_JSON) -> str:
        """Send one pack; returns the response code as ``"2.04"``."""
        assert self._context is not None, "use 'async with SenmlPoster(...)'"
        msg = aiocoap.Message(code=Code.POST, uri=self.uri, payload=payload, content_format=content_format)
        async with asyncio.timeout(self.timeout):
            response = await self._context.request(msg).response
        self.sent += 1
        return str(response.code.dotted)

    async def post_plant(self, content_format: int = SENML_JSON) -> str:
        return await self.post(encode_pack(plant_pack(self.plant, self.base_name), content_format), content_format)

    async def run(self, interval: float, content_format: int = SENML_JSON) -> None:
        """Step the plant and post a pack every ``interval`` seconds until cancelled."""
        while True:
            self.plant.step(interval)
            try:
                code = await self.post_plant(content_format)
            except (TimeoutError, aiocoap.error.Error) as exc:
                logger.warning("posting to %s failed: %s", self.uri, exc)
            else:
                if not code.startswith("2."):
                    logger.warning("%s answered %s", self.uri, code)
            await asyncio.sleep(interval)


# -- command line --------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5683)
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between plant steps / notifications")
    parser.add_argument("--post-to", default=None, help="also POST SenML packs to this URI (coap://host:port/path)")
    parser.add_argument("--cbor", action="store_true", help="post SenML CBOR instead of JSON")


async def _serve(args: argparse.Namespace) -> None:
    plant = PumpPlant()
    async with CoapNode(host=args.host, port=args.port, plant=plant, interval=args.interval) as node:
        print(
            f"coap node: {', '.join(['/temp', '/vibration', '/senml', '/status', '/setpoint'])} on {node.uri}",
            flush=True,
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        async with contextlib.AsyncExitStack() as stack:
            if args.post_to:
                poster = await stack.enter_async_context(SenmlPoster(args.post_to, plant=plant))
                task = loop.create_task(poster.run(args.interval, SENML_CBOR if args.cbor else SENML_JSON))
                stack.push_async_callback(_cancelled, task)
                print(f"posting SenML packs to {args.post_to}", flush=True)
            await stop.wait()


async def _cancelled(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def run(args: argparse.Namespace) -> int:
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hil.coap_nodes", description=__doc__.splitlines()[0])
    add_arguments(parser)
    logging.basicConfig(level=logging.INFO)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
