"""Client mode: observe (or poll) the resources of one CoAP node and turn what it sends into readings.

One task per resource. An observation counts as lost when the node ends it, answers an error, or
stays silent for ``max_silence``; the resource's points go Bad with the reason and the observation is
registered again after an exponential, jittered backoff (the old one is cancelled first, so the node
never holds two registrations of this gateway). A resource the node does not let us observe is
polled with GET at the points' ``poll_interval`` instead.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from avila_edge.config.model import DeviceConfig, PointConfig
from avila_edge.core import Backoff, Clock, DriverError, Reading, Timeout
from avila_edge.driver import DriverHealth, ReadingSink
from avila_edge.driver.scaling import to_engineering
from drivers.coap import codec, senml
from drivers.coap.codec import PayloadError, ValuePath
from drivers.coap.config import CoapAddress, CoapConnection, normal_path
from drivers.coap.points import PointBook
from drivers.coap.senml import SenmlError
from drivers.coap.transport import NodeClient, Observation, Response

logger = logging.getLogger("drivers.coap.driver")


@dataclass(frozen=True, slots=True)
class Resource:
    """One resource of the node and the points it carries."""

    path: str
    observe: bool
    poll_interval: float
    points: tuple[PointConfig, ...]


def resources_of(device: DeviceConfig) -> list[Resource]:
    """The device's resources, in the order their first point appears."""
    grouped: dict[str, list[PointConfig]] = {}
    for p in device.points:
        a: CoapAddress = p.address
        assert a.path is not None
        grouped.setdefault(normal_path(a.path), []).append(p)
    return [
        Resource(
            path=path,
            observe=all(p.address.observe for p in points),
            poll_interval=min(device.poll_interval_of(p) for p in points),
            points=tuple(points),
        )
        for path, points in grouped.items()
    ]


class NodeWatch:
    """Keeps every resource of one node observed or polled, and decodes what arrives."""

    def __init__(
        self, device: DeviceConfig, client: NodeClient, book: PointBook, health: DriverHealth, clock: Clock
    ) -> None:
        self.device = device
        self.client = client
        self.book = book
        self.health = health
        self.clock = clock
        conn: CoapConnection = device.connection
        self.silence = conn.silence or 90.0
        self.max_payload = int(conn.max_payload)
        self.resources = resources_of(device)
        self.registrations: dict[str, int] = {r.path: 0 for r in self.resources}
        self._paths = {p.id: ValuePath.parse(p.address.value_path) for p in device.points if p.address.value_path}
        self._down: set[str] = set()
        self._up: set[str] = set()

    async def run(self, sink: ReadingSink) -> None:
        async with asyncio.TaskGroup() as tg:
            for res in self.resources:
                verb = "observe" if res.observe else "poll"
                tg.create_task(self._keep(res, sink), name=f"driver[coap:{self.device.id}].{verb}[{res.path}]")

    async def _keep(self, res: Resource, sink: ReadingSink) -> None:
        t = self.device.timing
        backoff = Backoff(t.backoff_initial, max(t.backoff_max, t.backoff_initial))
        observe = res.observe
        while True:
            try:
                if observe:
                    observe = await self._observe(res, sink, backoff)
                else:
                    await self._poll(res, sink, backoff)
            except DriverError as exc:
                self.health.failure(exc)
                self._mark(res.path, up=False)
                reason = f"{exc.operation}: {exc.detail}"
                readings = self.book.bad_all(res.points, reason, self.clock.now_ns())
                if readings:
                    await sink(readings)
                delay = backoff.next_delay()
                logger.warning("%s; retrying in %.2f s", exc, delay)
                await self.clock.sleep(delay)

    async def _observe(self, res: Resource, sink: ReadingSink, backoff: Backoff) -> bool:
        """Observe until lost (raises); returns False when the resource is not observable."""
        async with self.client.observe(res.path) as obs:
            self.registrations[res.path] += 1
            backoff.reset()
            self._mark(res.path, up=True)
            await self._deliver(res, obs.first, sink)
            if not obs.observable:
                self.health.count("not_observable")
                logger.warning(
                    "%s: %s%s is not observable; polling it every %g s",
                    self.device.id,
                    self.client.endpoint,
                    res.path,
                    res.poll_interval,
                )
                await self.clock.sleep(res.poll_interval)
                return False
            logger.info("%s: observing %s%s", self.device.id, self.client.endpoint, res.path)
            while True:
                await self._deliver(res, await self._next(obs), sink)

    async def _next(self, obs: Observation) -> Response:
        try:
            async with asyncio.timeout(self.silence):
                return await obs.next()
        except TimeoutError:
            raise Timeout(self.device.id, obs.op, f"no notification for {self.silence:g} s") from None

    async def _poll(self, res: Resource, sink: ReadingSink, backoff: Backoff) -> None:
        while True:
            answer = await self.client.get(res.path)
            backoff.reset()
            self._mark(res.path, up=True)
            await self._deliver(res, answer, sink)
            await self.clock.sleep(res.poll_interval)

    def _mark(self, path: str, *, up: bool) -> None:
        if up:
            self._down.discard(path)
            self._up.add(path)
            self.health.success(self.clock.now_ns())
        else:
            self._down.add(path)
        self.health.connected = bool(self._up) and not self._down

    async def _deliver(self, res: Resource, answer: Response, sink: ReadingSink) -> None:
        readings = self.decode(res, answer)
        if readings:
            await sink(readings)

    # -- payloads --------------------------------------------------------------------------------

    def decode(self, res: Resource, answer: Response) -> list[Reading]:
        """The readings of ``res``'s points in one response or notification."""
        now = self.clock.now_ns()
        self.health.requests += 1
        where = f"{self.client.endpoint}{res.path}"
        payload = answer.payload
        if len(payload) > self.max_payload:
            why = f"payload of {len(payload)} bytes exceeds max_payload {self.max_payload}"
            self.book.problem("oversize", where, why, payload)
            return [self.book.bad(p.id, f"malformed payload from {where}: {why}", now) for p in res.points]
        out: list[Reading] = []
        parsed: dict[str, Any] = {}
        counted: set[str] = set()
        for point in res.points:
            a: CoapAddress = point.address
            try:
                for raw, ts in self._raw_values(point, a, answer, parsed, now):
                    value = to_engineering(codec.coerce(raw, point.type), point)
                    out.append(self.book.good(point, value, ts, now))
            except (PayloadError, SenmlError) as exc:
                if exc.kind not in counted:
                    counted.add(exc.kind)
                    self.book.problem(exc.kind, where, str(exc), payload)
                out.append(self.book.bad(point.id, f"malformed payload from {where}: {exc}", now))
        return out

    def _raw_values(
        self, point: PointConfig, a: CoapAddress, answer: Response, parsed: dict[str, Any], now: int
    ) -> list[tuple[Any, int]]:
        fmt = a.fmt
        if fmt == "number":
            return [(codec.decode_number(answer.payload), now)]
        if fmt == "json":
            if "json" not in parsed:
                parsed["json"] = codec.decode_json(answer.payload)
            path = self._paths.get(point.id)
            return [(path.evaluate(parsed["json"]) if path is not None else parsed["json"], now)]
        if "senml" not in parsed:
            cf = senml.CBOR if answer.content_format == senml.CBOR else senml.JSON
            parsed["senml"] = senml.resolve(senml.decode(answer.payload, cf), now)
        found = [(r.value, r.time_ns) for r in parsed["senml"] if r.name == a.name]
        if not found:
            raise PayloadError("missing_value", f"no record named {a.name!r} in the pack")
        return found
