"""The OPC UA driver: monitors the points' nodes through subscriptions, turns data changes into
Readings, writes setpoints, and reconnects (and re-subscribes) with backoff when the link breaks."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from avila_edge.config.model import DeviceConfig, PointConfig
from avila_edge.core import (
    Backoff,
    Clock,
    DeviceRejected,
    DriverError,
    LinkDown,
    Quality,
    Reading,
    Value,
    check_cancelled,
)
from avila_edge.driver import Driver, ReadingSink
from drivers.opcua.codec import (
    CodecError,
    NodeRef,
    Sample,
    decode_value,
    encode_write,
    parse_node_id,
    quality_of,
    source_time,
)
from drivers.opcua.config import OpcUaAddress, OpcUaConnection
from drivers.opcua.transport import Link, MonitoredPoint, SubscriptionPlan, Transport, UaTransport

logger = logging.getLogger(__name__)

TransportFactory = Callable[[DeviceConfig], Transport]


def ua_transport(device: DeviceConfig) -> Transport:
    return UaTransport(device.id, device.connection, timeout=device.timing.timeout)


class OpcUaDriver(Driver):
    """Reads (by subscription) and writes the points of one OPC UA server."""

    def __init__(self, device: DeviceConfig, *, clock: Clock, transport: TransportFactory = ua_transport) -> None:
        super().__init__(device, clock=clock)
        self.plans = plan(device)
        self._transport = transport(device)
        self._backoff = Backoff(device.timing.backoff_initial, device.timing.backoff_max)
        self._by_handle = list(device.points)
        self._nodes = {p.id: _node_of(p) for p in device.points}
        self._last_good: dict[str, Value] = {}
        self._bad_reason: dict[str, str] = {}
        self._types: dict[str, str] = {}
        self._link: Link | None = None

    async def stop(self) -> None:
        self._link = None
        self._health.connected = False
        self._transport.close()

    # -- the session loop ------------------------------------------------------------------------

    async def run(self, sink: ReadingSink) -> None:
        while True:
            try:
                async with self._transport.connect() as link:
                    await self._session(link, sink)
            except DriverError as exc:
                await self._link_lost(exc, sink)

    async def _session(self, link: Link, sink: ReadingSink) -> None:
        self._health.requests += 1
        refused = await link.subscribe(self.plans)
        check_cancelled()  # connecting and subscribing may have swallowed a cancellation
        self._link = link
        self._backoff.reset()
        self._health.success(self.clock.now_ns())
        logger.info(
            "%s: %s %s, %d point(s) in %d subscription(s)",
            self.device.id,
            "resumed the session at" if link.resumed else "connected to",
            self._transport.endpoint,
            len(self._by_handle) - len(refused),
            len(self.plans),
        )
        if refused:
            await sink(self._refused(refused))
        try:
            while True:
                check_cancelled()
                samples = await link.receive()
                started = time.perf_counter()
                now = self.clock.now_ns()
                self._health.requests += 1
                self._health.success(now)
                readings = self._readings(samples, now)
                self._health.last_poll_seconds = time.perf_counter() - started
                if readings:
                    await sink(readings)
        finally:
            self._link = None

    async def _link_lost(self, exc: DriverError, sink: ReadingSink) -> None:
        self._link = None
        self._health.failure(exc)
        self._health.connected = False
        reason = _reason(exc)
        now = self.clock.now_ns()
        readings = [self._bad(p.id, reason, now) for p in self.device.points if self._bad_reason.get(p.id) != reason]
        if readings:
            await sink(readings)
        delay = self._backoff.next_delay()
        logger.warning("%s; retrying in %.1f s", exc, delay)
        await self.clock.sleep(delay)

    # -- notifications → readings ---------------------------------------------------------------

    def _readings(self, samples: list[Sample], now: int) -> list[Reading]:
        out: list[Reading] = []
        for sample in samples:
            if not 0 <= sample.handle < len(self._by_handle):
                self._health.count("protocol_violation")
                continue
            point = self._by_handle[sample.handle]
            out.append(self._reading(point, sample, now))
        return out

    def _reading(self, point: PointConfig, sample: Sample, now: int) -> Reading:
        quality = quality_of(sample.status)
        ts = source_time(sample, now)
        if quality is Quality.BAD:
            return self._bad(point.id, sample.status_name, now, ts_source=ts)
        try:
            value = decode_value(sample.value, sample.variant, point)
        except CodecError as exc:
            self._health.count("protocol_violation")
            return self._bad(point.id, f"cannot use the value: {exc}", now, ts_source=ts)
        if quality is Quality.GOOD:
            self._last_good[point.id] = value
            self._bad_reason.pop(point.id, None)
            return Reading(point=point.id, value=value, ts_source=ts, ts_gateway=now)
        self._bad_reason.pop(point.id, None)
        return Reading(
            point=point.id, value=value, quality=quality, reason=sample.status_name, ts_source=ts, ts_gateway=now
        )

    def _refused(self, refused: dict[int, str]) -> list[Reading]:
        now = self.clock.now_ns()
        out: list[Reading] = []
        for handle, status in sorted(refused.items()):
            point = self._by_handle[handle]
            self._health.count("device_rejected")
            reason = f"{status}: cannot monitor {self._nodes[point.id]}"
            logger.warning("%s: %s: %s", self.device.id, point.id, reason)
            out.append(self._bad(point.id, reason, now))
        return out

    def _bad(self, point: str, reason: str, now: int, *, ts_source: int | None = None) -> Reading:
        self._bad_reason[point] = reason
        return Reading(
            point=point,
            value=self._last_good.get(point),
            quality=Quality.BAD,
            reason=reason,
            ts_source=ts_source if ts_source is not None else now,
            ts_gateway=now,
        )

    # -- writes ------------------------------------------------------------------------------------

    async def write(self, point_id: str, value: Value) -> None:
        point = self.writable_point(point_id)
        op = f"write {point_id}"
        node = self._nodes[point_id]
        op = f"write {point_id} ({node})"
        link = self._link
        if link is None:
            raise LinkDown(self.device.id, op, f"not connected to {self._transport.endpoint}")
        try:
            builtin = self._types.get(point_id)
            if builtin is None:
                self._health.requests += 1
                builtin = await link.builtin_type(node)
                self._types[point_id] = builtin
            try:
                raw = encode_write(value, point, builtin)
            except CodecError as exc:
                raise DeviceRejected(self.device.id, op, str(exc)) from exc
            self._health.requests += 1
            await link.write(node, raw, builtin)
        except DriverError as exc:
            self._health.failure(exc)
            if "BadTypeMismatch" in exc.detail:
                self._types.pop(point_id, None)  # the node changed type: read it again next time
            if exc.operation == op:
                raise
            raise type(exc)(self.device.id, op, exc.detail) from exc


def _node_of(point: PointConfig) -> NodeRef:
    address: OpcUaAddress = point.address
    try:
        return parse_node_id(address.node)
    except CodecError as exc:
        raise ValueError(f"{point.id}: {exc}") from None


def plan(device: DeviceConfig) -> list[SubscriptionPlan]:
    """The device's points as monitored items, one subscription per publishing interval."""
    conn: OpcUaConnection = device.connection
    sub = conn.subscription
    groups: dict[float, list[MonitoredPoint]] = {}
    for handle, point in enumerate(device.points):
        address: OpcUaAddress = point.address
        interval = point.poll_interval or sub.publishing_interval or device.timing.poll_interval
        own_deadband = address.deadband_abs is not None or address.deadband_percent is not None
        item = MonitoredPoint(
            handle=handle,
            node=_node_of(point),
            sampling_interval=address.sampling_interval
            if address.sampling_interval is not None
            else sub.sampling_interval,
            queue_size=address.queue_size if address.queue_size is not None else sub.queue_size,
            deadband_abs=address.deadband_abs if own_deadband else sub.deadband_abs,
            deadband_percent=address.deadband_percent if own_deadband else sub.deadband_percent,
        )
        groups.setdefault(interval, []).append(item)
    return [SubscriptionPlan(interval, tuple(items)) for interval, items in sorted(groups.items())]


def _reason(error: DriverError) -> str:
    if isinstance(error, LinkDown):
        return f"link down: {error.detail}"
    if isinstance(error, DeviceRejected):
        return f"refused: {error.detail}"
    return f"{error.kind.replace('_', ' ')}: {error.detail}"


__all__ = ["OpcUaDriver", "plan", "ua_transport"]
