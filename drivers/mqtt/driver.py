"""The MQTT driver: subscribes to a broker, turns JSON, plain-number and Sparkplug B messages into
Readings of the configured points, and reconnects with backoff when the broker goes away.

A batch of messages is acknowledged only after the sink has taken its readings (the pipeline returns
once they are committed to the journal): QoS 1/2 ingest is at least once into the journal."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any, Final

from avila_edge.config.model import DataType, DeviceConfig, PointConfig
from avila_edge.core import (
    Backoff,
    Clock,
    DeviceRejected,
    DriverError,
    LinkDown,
    Quality,
    Reading,
    Value,
    bad,
    check_cancelled,
)
from avila_edge.driver import Driver, ReadingSink
from avila_edge.driver.scaling import to_engineering
from drivers.mqtt import codec, sparkplug
from drivers.mqtt.codec import PayloadError
from drivers.mqtt.config import DEFAULT_QOS, MqttAddress, MqttConnection
from drivers.mqtt.edge_nodes import EdgeNodes, Outcome, is_protocol_metric
from drivers.mqtt.routing import MetricKey, Routes
from drivers.mqtt.transport import BrokerTransport, Inbound, Link, Transport

logger = logging.getLogger(__name__)

TransportFactory = Callable[[DeviceConfig], Transport]

REBIRTH_INTERVAL: Final = 5.0
"""Seconds between two rebirth requests to the same edge node."""
LOG_FIRST: Final = 20
LOG_EVERY: Final = 1000
_MAX_TS_MS: Final = 253_402_300_799_000

_SPARKPLUG_TYPES: Final = {
    DataType.BOOL: sparkplug.DataType.BOOLEAN,
    DataType.INT16: sparkplug.DataType.INT16,
    DataType.UINT16: sparkplug.DataType.UINT16,
    DataType.INT32: sparkplug.DataType.INT32,
    DataType.UINT32: sparkplug.DataType.UINT32,
    DataType.INT64: sparkplug.DataType.INT64,
    DataType.UINT64: sparkplug.DataType.UINT64,
    DataType.FLOAT32: sparkplug.DataType.FLOAT,
    DataType.FLOAT64: sparkplug.DataType.DOUBLE,
    DataType.STRING: sparkplug.DataType.STRING,
}


def broker_transport(device: DeviceConfig) -> Transport:
    return BrokerTransport(device.id, device.connection, timeout=device.timing.timeout)


class MqttDriver(Driver):
    """Receives the points of one broker connection; writes publish commands (JSON/number or NCMD/DCMD)."""

    def __init__(self, device: DeviceConfig, *, clock: Clock, transport: TransportFactory = broker_transport) -> None:
        super().__init__(device, clock=clock)
        conn: MqttConnection = device.connection
        self.routes = Routes(device)
        self._transport = transport(device)
        self._backoff = Backoff(device.timing.backoff_initial, device.timing.backoff_max)
        self._max_payload = int(conn.max_payload)
        self._nodes = EdgeNodes()
        self._last_value: dict[str, Value] = {}
        self._bad_reason: dict[str, str] = {}
        self._link: Link | None = None
        self._rebirth_due: set[tuple[str, str]] = set()
        self._rebirth_sent: dict[tuple[str, str], float] = {}
        self._logged: dict[str, int] = {}

    async def stop(self) -> None:
        self._link = None
        self._health.connected = False

    # -- the session loop ------------------------------------------------------------------------

    async def run(self, sink: ReadingSink) -> None:
        while True:
            try:
                async with self._transport.connect() as link:
                    await self._session(link, sink)
            except DriverError as exc:
                await self._link_lost(exc, sink)

    async def _session(self, link: Link, sink: ReadingSink) -> None:
        """Subscribe and receive side by side: a persistent session's backlog arrives right after the
        CONNACK, ahead of the SUBACK, and is taken (and acknowledged) while the subscription is made."""
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._subscribe(link, sink), name=f"driver[mqtt:{self.device.id}].subscribe")
                await self._receive(link, sink)
        except BaseExceptionGroup as group:
            errors = group.exceptions
            if all(isinstance(e, DriverError) for e in errors):  # the link failed under both tasks
                raise errors[0] from None
            raise
        finally:
            self._link = None

    async def _subscribe(self, link: Link, sink: ReadingSink) -> None:
        refused = await link.subscribe(self.routes.subscriptions)
        check_cancelled()  # connecting and subscribing may have swallowed a cancellation
        self._link = link
        self._backoff.reset()
        self._health.success(self.clock.now_ns())
        logger.info(
            "%s: connected to %s, %d subscription(s)",
            self.device.id,
            self._transport.endpoint,
            len(self.routes.subscriptions),
        )
        if refused:
            await sink(self._refused(refused))

    async def _receive(self, link: Link, sink: ReadingSink) -> None:
        while True:
            check_cancelled()
            batch = await link.receive()
            started = time.perf_counter()
            readings = self._handle(batch)
            self._health.last_poll_seconds = time.perf_counter() - started
            if readings:
                await sink(readings)  # returns once they are committed (or filtered as repeats)
            link.ack(batch)
            if dropped := link.take_dropped():
                self._queue_full(dropped)
            if self._rebirth_due:
                await self._request_rebirths(link)

    async def _link_lost(self, exc: DriverError, sink: ReadingSink) -> None:
        self._link = None
        self._health.failure(exc)
        self._health.connected = False
        self._nodes.reset()
        self._rebirth_due.clear()
        kind = "broker refused" if isinstance(exc, DeviceRejected) else "link down"
        reason = f"{kind}: {exc.detail}"
        now = self.clock.now_ns()
        readings = [self._bad(p.id, reason, now) for p in self.device.points if self._bad_reason.get(p.id) != reason]
        if readings:
            await sink(readings)
        delay = self._backoff.next_delay()
        logger.warning("%s; retrying in %.1f s", exc, delay)
        await self.clock.sleep(delay)

    def _refused(self, refused: list[tuple[str, str]]) -> list[Reading]:
        now = self.clock.now_ns()
        out: list[Reading] = []
        for topic_filter, why in refused:
            error = DeviceRejected(self.device.id, f"subscribe {topic_filter}", f"the broker refused: {why}")
            self._health.failure(error)
            logger.warning("%s", error)
            out.extend(
                self._bad(p, f"subscription {topic_filter} refused: {why}", now)
                for p in self.routes.points_of(topic_filter)
            )
        return out

    def _queue_full(self, dropped: int) -> None:
        self._health.errors["queue_full"] = self._health.errors.get("queue_full", 0) + dropped
        seen = self._logged.get("queue_full", 0) + 1
        self._logged["queue_full"] = seen
        if seen <= LOG_FIRST or seen % LOG_EVERY == 0:
            logger.warning(
                "%s: %d QoS 0 message(s) dropped: more than max_queued %d waiting for the journal",
                self.device.id,
                dropped,
                self.device.connection.max_queued,
            )

    async def _request_rebirths(self, link: Link) -> None:
        now = self.clock.monotonic()
        for group, node in sorted(self._rebirth_due):
            last = self._rebirth_sent.get((group, node))
            if last is not None and now - last < REBIRTH_INTERVAL:
                continue
            self._rebirth_sent[(group, node)] = now
            topic = str(sparkplug.Topic(group, "NCMD", node))
            logger.info("%s: asking edge node %s/%s for a rebirth", self.device.id, group, node)
            await link.publish(topic, sparkplug.rebirth_request(self.clock.now_ns() // 1_000_000), 0)
        self._rebirth_due.clear()

    # -- messages --------------------------------------------------------------------------------

    def _handle(self, batch: list[Inbound]) -> list[Reading]:
        now = self.clock.now_ns()
        self._health.requests += len(batch)
        self._health.success(now)
        out: list[Reading] = []
        for msg in batch:
            if self.routes.is_sparkplug(msg.topic):
                self._sparkplug(msg, now, out)
            else:
                self._plain(msg, now, out)
        return out

    def _plain(self, msg: Inbound, now: int, out: list[Reading]) -> None:
        routes = self.routes.for_topic(msg.topic)
        if not routes:
            self._problem("unknown_point", msg, "no configured point takes this topic", log=False)
            return
        if len(msg.payload) > self._max_payload:
            why = f"payload of {len(msg.payload)} bytes exceeds max_payload {self._max_payload}"
            self._problem("oversize", msg, why)
            out.extend(self._bad(r.point.id, f"malformed payload on {msg.topic}: {why}", now) for r in routes)
            return
        counted: set[str] = set()
        doc: Any = None
        doc_error: PayloadError | None = None
        if any(r.format == "json" for r in routes):
            try:
                doc = codec.decode_json(msg.payload)
            except PayloadError as exc:
                doc_error = exc
        for route in routes:
            try:
                if route.format == "number":
                    raw: Any = codec.decode_number(msg.payload)
                else:
                    if doc_error is not None:
                        raise doc_error
                    raw = route.value_path.evaluate(doc) if route.value_path is not None else doc
                value = to_engineering(codec.coerce(raw, route.point.type), route.point)
            except PayloadError as exc:
                if exc.kind not in counted:
                    counted.add(exc.kind)
                    self._problem(exc.kind, msg, str(exc))
                out.append(self._bad(route.point.id, f"malformed payload on {msg.topic}: {exc}", now))
                continue
            ts, ts_problem = now, ""
            if route.timestamp_path is not None:
                try:
                    ts = codec.parse_timestamp(route.timestamp_path.evaluate(doc))
                except PayloadError as exc:
                    if exc.kind != "missing_value":  # no timestamp at all: the receive time stands
                        ts_problem = f"source timestamp unreadable: {exc}"
                        if "bad_timestamp" not in counted:
                            counted.add("bad_timestamp")
                            self._problem("bad_timestamp", msg, str(exc))
            out.append(self._value(route.point, value, ts, now, ts_problem))

    def _sparkplug(self, msg: Inbound, now: int, out: list[Reading]) -> None:
        topic = sparkplug.parse_topic(msg.topic)
        if topic is None:
            return  # STATE and other host messages: not data
        if len(msg.payload) > self._max_payload:
            self._problem(
                "oversize", msg, f"payload of {len(msg.payload)} bytes exceeds max_payload {self._max_payload}"
            )
            return
        try:
            payload = sparkplug.decode_payload(msg.payload)
        except sparkplug.SparkplugError as exc:
            self._problem(exc.kind, msg, str(exc))
            return
        result = self._nodes.handle(topic, payload)
        for kind, text in result.problems:
            self._problem(kind, msg, text, log=kind != "sparkplug_seq_gap")
            if kind == "sparkplug_seq_gap":
                logger.warning("%s: %s; asking for a rebirth", self.device.id, text)
        if result.rebirth:
            self._rebirth_due.add((topic.group, topic.node))
        self._sparkplug_values(topic, result, msg, now, out)

    def _sparkplug_values(
        self, topic: sparkplug.Topic, result: Outcome, msg: Inbound, now: int, out: list[Reading]
    ) -> None:
        for update in result.updates:
            route = self.routes.for_metric(MetricKey(topic.group, topic.node, update.device, update.name))
            if route is None:
                if not is_protocol_metric(update.name):
                    self._problem("unknown_point", msg, f"no configured point takes metric {update.name!r}", log=False)
                continue
            ts = now
            if update.timestamp_ms is not None and 0 < update.timestamp_ms <= _MAX_TS_MS:
                ts = update.timestamp_ms * 1_000_000
            if update.value is None:
                out.append(self._bad(route.point.id, f"sparkplug metric {update.name!r} is null", now))
                continue
            try:
                value = to_engineering(codec.coerce(update.value, route.point.type), route.point)
            except PayloadError as exc:
                self._problem(exc.kind, msg, f"metric {update.name!r}: {exc}")
                out.append(self._bad(route.point.id, f"malformed payload on {msg.topic}: {exc}", now))
                continue
            uncertain = "sparkplug seq gap: rebirth requested" if update.uncertain else ""
            out.append(self._value(route.point, value, ts, now, uncertain))
        for device, name in result.dead:
            route = self.routes.for_metric(MetricKey(topic.group, topic.node, device, name))
            if route is not None:
                out.append(self._bad(route.point.id, result.death_reason, now))

    # -- readings --------------------------------------------------------------------------------

    def _value(self, point: PointConfig, value: Value, ts: int, now: int, uncertain: str) -> Reading:
        self._last_value[point.id] = value
        self._bad_reason.pop(point.id, None)
        if uncertain:
            return Reading(
                point=point.id, value=value, quality=Quality.UNCERTAIN, reason=uncertain, ts_source=ts, ts_gateway=now
            )
        return Reading(point=point.id, value=value, ts_source=ts, ts_gateway=now)

    def _bad(self, point: str, reason: str, now: int) -> Reading:
        self._bad_reason[point] = reason
        return bad(point, reason, ts_source=now, ts_gateway=now, value=self._last_value.get(point))

    def _problem(self, kind: str, msg: Inbound, text: str, *, log: bool = True) -> None:
        self._health.count(kind)
        seen = self._logged.get(kind, 0) + 1
        self._logged[kind] = seen
        if log and (seen <= LOG_FIRST or seen % LOG_EVERY == 0):
            logger.warning(
                "%s: %s on %s (%s; payload %s)%s",
                self.device.id,
                kind.replace("_", " "),
                msg.topic,
                text,
                codec.excerpt(msg.payload),
                f" [{seen} so far]" if seen > LOG_FIRST else "",
            )
        else:
            logger.debug("%s: %s on %s: %s", self.device.id, kind, msg.topic, text)

    # -- writes ----------------------------------------------------------------------------------

    async def write(self, point_id: str, value: Value) -> None:
        point = self.writable_point(point_id)
        op = f"write {point_id}"
        link = self._link
        if link is None:
            raise LinkDown(self.device.id, op, f"not connected to {self._transport.endpoint}")
        try:
            raw = codec.from_engineering(value, point)
        except PayloadError as exc:
            raise DeviceRejected(self.device.id, op, str(exc)) from exc
        a: MqttAddress = point.address
        if a.is_sparkplug:
            assert a.group is not None
            assert a.node is not None
            assert a.metric is not None
            declared = self._nodes.datatype_of(a.group, a.node, a.device, a.metric)
            datatype = sparkplug.DataType(declared) if declared else _SPARKPLUG_TYPES[point.type]
            now_ms = self.clock.now_ns() // 1_000_000
            try:
                metric = sparkplug.encode_metric(name=a.metric, timestamp=now_ms, datatype=datatype, value=raw)
            except (TypeError, ValueError) as exc:
                raise DeviceRejected(self.device.id, op, f"cannot encode as {datatype.name}: {exc}") from exc
            topic = str(sparkplug.Topic(a.group, "DCMD" if a.device else "NCMD", a.node, a.device))
            await link.publish(topic, sparkplug.encode_payload(timestamp=now_ms, metrics=[metric]), 0)
            return
        assert a.command_topic is not None
        fmt, path = self.routes.command_format(point_id)
        await link.publish(
            a.command_topic, codec.encode_command(raw, fmt, path), a.qos if a.qos is not None else DEFAULT_QOS
        )
