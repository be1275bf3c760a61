"""The CoAP driver: observes (or polls) the resources of a constrained node, or listens for SenML packs
that nodes POST to the gateway. The connection's ``mode`` picks which (see ``drivers.coap.config``)."""

from __future__ import annotations

import asyncio
import logging

from avila_edge.config.model import DeviceConfig
from avila_edge.core import Backoff, Clock, DeviceRejected, DriverError, Value
from avila_edge.driver import Driver, ReadingSink
from drivers.coap import codec
from drivers.coap.codec import PayloadError, ValuePath
from drivers.coap.config import CoapAddress, CoapConnection, normal_path
from drivers.coap.ingest import PackIngest, forever
from drivers.coap.observe import NodeWatch
from drivers.coap.points import PointBook
from drivers.coap.transport import IngestServer, NodeClient

logger = logging.getLogger(__name__)


class CoapDriver(Driver):
    """One CoAP node (client mode) or one SenML ingest endpoint (server mode)."""

    def __init__(self, device: DeviceConfig, *, clock: Clock) -> None:
        super().__init__(device, clock=clock)
        self.conn: CoapConnection = device.connection
        self.book = PointBook(device.id, self._health)
        self.client: NodeClient | None = None
        self.watch: NodeWatch | None = None
        self.ingest: PackIngest | None = None
        if self.conn.mode == "client":
            assert self.conn.host is not None, "check_device requires a host in client mode"
            self.client = NodeClient(device.id, self.conn.host, self.conn.port, timeout=device.timing.timeout)
            self.watch = NodeWatch(device, self.client, self.book, self._health, clock)
        else:
            self.ingest = PackIngest(device, self.book, self._health, clock)

    @property
    def endpoint(self) -> str:
        if self.client is not None:
            return self.client.endpoint
        return f"coap://{self.conn.listen_host}:{self.conn.port}"

    async def start(self) -> None:
        if self.client is not None:
            await self.client.__aenter__()

    async def stop(self) -> None:
        self._health.connected = False
        if self.client is not None:
            await self.client.__aexit__(None, None, None)

    async def run(self, sink: ReadingSink) -> None:
        if self.watch is not None:
            await self.watch.run(sink)
        else:
            await self._serve(sink)

    async def _serve(self, sink: ReadingSink) -> None:
        ingest = self.ingest
        assert ingest is not None
        ingest.sink = sink
        t = self.device.timing
        backoff = Backoff(t.backoff_initial, max(t.backoff_max, t.backoff_initial))
        server = IngestServer(
            self.device.id,
            self.conn.listen_host,
            self.conn.port,
            self.conn.paths,
            ingest.handle,
            max_payload=int(self.conn.max_payload),
        )
        while True:
            try:
                async with server:
                    backoff.reset()
                    self._health.success(self.clock.now_ns())
                    logger.info("%s: accepting SenML packs on %s", self.device.id, server.endpoint)
                    async with asyncio.TaskGroup() as tg:
                        tg.create_task(ingest.watch_silence(sink), name=f"driver[coap:{self.device.id}].silence")
                        await forever()
            except DriverError as exc:
                self._health.failure(exc)
                self._health.connected = False
                readings = self.book.bad_all(self.device.points, f"{exc.operation}: {exc.detail}", self.clock.now_ns())
                if readings:
                    await sink(readings)
                delay = backoff.next_delay()
                logger.warning("%s; retrying in %.2f s", exc, delay)
                await self.clock.sleep(delay)

    async def write(self, point_id: str, value: Value) -> None:
        point = self.writable_point(point_id)
        op = f"write {point_id}"
        if self.client is None:
            raise DeviceRejected(self.device.id, op, "points of a SenML ingest (server mode) cannot be written")
        a: CoapAddress = point.address
        assert a.path is not None
        try:
            raw = codec.from_engineering(value, point)
            path = ValuePath.parse(a.value_path) if a.value_path is not None else None
            payload, content_format = codec.encode_write(raw, a.fmt, value_path=path, name=a.name)
        except (PayloadError, ValueError, TypeError) as exc:
            raise DeviceRejected(self.device.id, op, str(exc)) from exc
        try:
            await self.client.put(normal_path(a.path), payload, content_format)
        except DriverError as exc:
            raise type(exc)(self.device.id, op, f"{exc.operation}: {exc.detail}") from exc
        logger.info("%s: wrote %r to %s%s", self.device.id, raw, self.endpoint, normal_path(a.path))


__all__ = ["CoapDriver"]
