"""The gateway as a Sparkplug B edge node: one Sparkplug device per asset.

Topics (``G`` group id, ``N`` edge node id, ``D`` asset id)::

    spBv1.0/G/NBIRTH/N      bdSeq, Node Control/Rebirth              after every connect and rebirth request
    spBv1.0/G/NDEATH/N      bdSeq                                    the will (the broker sends it)
    spBv1.0/G/DBIRTH/N/D    every point and derived value of D      names, aliases, types, values
    spBv1.0/G/DDATA/N/D     the values that changed                  by alias only
    spBv1.0/G/NCMD/N        Node Control/Rebirth = true              births again
    spBv1.0/G/DCMD/N/D      metrics by name or alias                 desired values, only with commands: true

``seq`` counts 0..255 over every NBIRTH/DBIRTH/DDATA of a session (NBIRTH is 0); ``bdSeq`` counts
sessions (0..255) and pairs each NBIRTH with the NDEATH the broker will send for it. A Bad value is
sent as a null metric. Encoding is the codec of the MQTT driver (``drivers/mqtt/sparkplug.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from avila_edge.config.model import DataType as PointType
from avila_edge.config.model import GatewayConfig
from avila_edge.config.north import MqttPublisherConfig, SparkplugConfig
from avila_edge.core import Backoff, Clock, Event, GatewayError, Value, check_cancelled
from avila_edge.north._changes import next_changes
from avila_edge.north.counters import NorthStats
from avila_edge.north.mqtt_publisher import broker_client
from avila_edge.twins.service import TwinService
from drivers.mqtt import sparkplug as sp

if TYPE_CHECKING:
    import aiomqtt

logger = logging.getLogger(__name__)

Recorder = Callable[[Sequence[Event]], Awaitable[None]]
EXCERPT = 80


class SparkplugNode:
    """``await node.run()`` is the edge node until cancelled, reconnecting with backoff."""

    def __init__(
        self,
        config: MqttPublisherConfig,
        sparkplug: SparkplugConfig,
        gateway: GatewayConfig,
        *,
        twins: TwinService,
        record: Recorder,
        clock: Clock,
        password: str | None = None,
    ) -> None:
        self.config = config
        self.group = sparkplug.group_id
        self.node = sparkplug.edge_node or gateway.site.id
        self.twins = twins
        self.record = record
        self.clock = clock
        self._password = password
        self._types = {p.id: _metric_type(p.type) for d in gateway.devices for p in d.points}
        self._aliases: dict[tuple[str, str], int] = {}
        self._by_alias: dict[int, tuple[str, str]] = {}
        self._sent: dict[tuple[str, str], tuple[object, ...]] = {}
        self._born: dict[str, set[str]] = {}
        self.bd_seq = 0
        self.seq = 0
        self.births = 0
        self.refused_commands = 0
        self.connected = False
        self.connects = self.published = self.commands = self.failed_commands = self.errors = 0

    def counters(self) -> NorthStats:
        return NorthStats(self.connected, int(self.connected), self.connects, self.published, self.commands,
                          self.refused_commands, self.failed_commands, self.errors)  # fmt: skip

    def topic(self, kind: str, device: str | None = None) -> str:
        return str(sp.Topic(self.group, kind, self.node, device))

    async def run(self) -> None:
        import aiomqtt  # noqa: PLC0415

        queue = self.twins.subscribe()
        backoff = Backoff(self.config.reconnect_initial, self.config.reconnect_max)
        try:
            while True:
                delay = backoff.next_delay()
                death = sp.encode_payload(timestamp=self._now_ms(), metrics=[self._bd_seq_metric()])
                will = aiomqtt.Will(self.topic("NDEATH"), death, qos=1, retain=False)
                identifier = f"{self.config.client_id or f'avila-edge-{self.node}'}-sparkplug"
                try:
                    async with broker_client(self.config, identifier=identifier, password=self._password,
                                             will=will) as client:  # fmt: skip
                        self.connected = True
                        self.connects += 1
                        backoff.reset()
                        try:
                            await self._session(client, queue)
                        except asyncio.CancelledError:  # a clean stop: the death certificate ourselves
                            with contextlib.suppress(Exception):
                                async with asyncio.timeout(1.0):
                                    await client.publish(self.topic("NDEATH"), death, qos=1)
                            raise
                except* aiomqtt.MqttError as group:
                    self.errors += 1
                    logger.warning("Sparkplug node %s/%s: %s; retrying in %.1f s", self.group, self.node,
                                   group.exceptions[0], delay)  # fmt: skip
                finally:
                    if self.connected:
                        self.bd_seq = (self.bd_seq + 1) % 256  # the next session has its own death certificate
                    self.connected = False
                await self.clock.sleep(delay)
        finally:
            self.twins.unsubscribe(queue)

    async def _session(self, client: aiomqtt.Client, queue: asyncio.Queue[Any]) -> None:
        await client.subscribe(self.topic("NCMD"), qos=1)  # rebirth requests: they change no device
        if self.config.commands:
            await client.subscribe(f"{self.topic('DCMD')}/+", qos=1)
        rebirth = asyncio.Event()
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._receive(client, rebirth), name="north.sparkplug.receive")
            await self._birth(client)
            while True:
                assets = await next_changes(queue, wake=rebirth)
                if rebirth.is_set():
                    rebirth.clear()
                    await self._birth(client)
                for asset in assets:
                    await self._data(client, asset)

    # -- births and data --------------------------------------------------------------------------

    async def _birth(self, client: aiomqtt.Client) -> None:
        self.seq = 0
        self.births += 1
        now = self._now_ms()
        metrics = [
            self._bd_seq_metric(),
            sp.encode_metric(name=sp.REBIRTH_METRIC, timestamp=now, datatype=sp.DataType.BOOLEAN, value=False),
        ]
        await client.publish(self.topic("NBIRTH"), sp.encode_payload(timestamp=now, metrics=metrics, seq=0), qos=0)
        self.published += 1
        self._sent.clear()
        for asset in self.twins.assets():
            await self._device_birth(client, asset)

    async def _device_birth(self, client: aiomqtt.Client, asset: str) -> None:
        values = self._values(asset)
        metrics = []
        for name, (value, ts) in values.items():
            key = (asset, name)
            alias = self._alias(key)
            kind = self._types.get(f"{asset}/{name}", sp.DataType.DOUBLE)
            metrics.append(sp.encode_metric(name=name, alias=alias, timestamp=ts, datatype=kind,
                                            value=_fit(value, kind)))  # fmt: skip
            self._sent[key] = (value, ts)
        self._born[asset] = set(values)
        payload = sp.encode_payload(timestamp=self._now_ms(), metrics=metrics, seq=self._next_seq())
        await client.publish(self.topic("DBIRTH", asset), payload, qos=0)
        self.published += 1

    async def _data(self, client: aiomqtt.Client, asset: str) -> None:
        values = self._values(asset)
        if not set(values) <= self._born.get(asset, set()):
            await self._device_birth(client, asset)  # a value the birth did not declare: born again
            return
        metrics = []
        for name, (value, ts) in values.items():
            key = (asset, name)
            if self._sent.get(key) == (value, ts):
                continue
            self._sent[key] = (value, ts)
            kind = self._types.get(f"{asset}/{name}", sp.DataType.DOUBLE)
            metrics.append(sp.encode_metric(alias=self._aliases[key], timestamp=ts, datatype=kind,
                                            value=_fit(value, kind)))  # fmt: skip
        if metrics:
            payload = sp.encode_payload(timestamp=self._now_ms(), metrics=metrics, seq=self._next_seq())
            await client.publish(self.topic("DDATA", asset), payload, qos=0)
            self.published += 1

    def _values(self, asset: str) -> dict[str, tuple[object, int]]:
        """Every point of the asset (configured ones even before a first reading) and derived value."""
        snapshot = self.twins.snapshot(asset)
        found: dict[str, tuple[object, int]] = {}
        for point in self._types:
            owner, _, name = point.partition("/")
            if owner == asset:
                found[name] = (None, self._now_ms())
        for section in ("reported", "derived"):
            part = snapshot[section]
            for name, v in part.items() if isinstance(part, dict) else ():
                value = v["value"] if v["quality"] != "bad" else None
                found[name] = (value, int(v["ts_source"]) // 1_000_000)
        return found

    def _alias(self, key: tuple[str, str]) -> int:
        alias = self._aliases.get(key)
        if alias is None:
            alias = len(self._aliases) + 1
            self._aliases[key] = alias
            self._by_alias[alias] = key
        return alias

    def _next_seq(self) -> int:
        self.seq = (self.seq + 1) % 256
        return self.seq

    def _bd_seq_metric(self) -> bytes:
        return sp.encode_metric(name=sp.BDSEQ_METRIC, timestamp=self._now_ms(), datatype=sp.DataType.UINT64,
                                value=self.bd_seq)  # fmt: skip

    def _now_ms(self) -> int:
        return self.clock.now_ns() // 1_000_000

    # -- commands ---------------------------------------------------------------------------------

    async def _receive(self, client: aiomqtt.Client, rebirth: asyncio.Event) -> None:
        async for message in client.messages:
            topic = str(message.topic)
            payload = bytes(message.payload)
            try:
                decoded = sp.decode_payload(payload)
            except sp.SparkplugError as exc:
                self.commands += 1
                self._refuse(topic, payload, f"not a Sparkplug B payload ({exc})")
                continue
            parsed = sp.parse_topic(topic)
            if parsed is None:
                continue
            if parsed.message_type in ("NCMD", "DCMD"):
                self.commands += len(decoded.metrics) if parsed.message_type == "DCMD" else 1
            if parsed.message_type == "NCMD":
                metric = decoded.metric(sp.REBIRTH_METRIC)
                if metric is not None and metric.value() is True:
                    logger.info("Sparkplug node %s/%s: rebirth requested", self.group, self.node)
                    rebirth.set()
                else:
                    self._refuse(topic, payload, "the only node command is Node Control/Rebirth = true")
            elif parsed.message_type == "DCMD" and parsed.device is not None:
                await self._device_command(parsed.device, topic, payload, decoded)
                check_cancelled()

    async def _device_command(self, asset: str, topic: str, payload: bytes, decoded: sp.Payload) -> None:
        for metric in decoded.metrics:
            key = (asset, metric.name) if metric.name else self._by_alias.get(metric.alias or -1)
            if key is None or key[0] != asset:
                self._refuse(topic, payload, f"unknown metric (name {metric.name!r}, alias {metric.alias})")
                continue
            try:
                value = metric.value(self._types.get(f"{asset}/{key[1]}"))
            except sp.SparkplugError as exc:
                self._refuse(topic, payload, str(exc))
                continue
            if value is None or isinstance(value, bytes):
                self._refuse(topic, payload, f"metric {key[1]} has no usable value")
                continue
            desired_value: Value = value
            try:
                desired, events = await self.twins.set_desired(asset, key[1], desired_value, expected_version=None,
                                                                by="sparkplug")  # fmt: skip
            except GatewayError as exc:
                self._refuse(topic, payload, str(exc))
                continue
            await self.record(events)
            self.failed_commands += desired.status.value == "failed"

    def _refuse(self, topic: str, payload: bytes, why: str) -> None:
        self.refused_commands += 1
        logger.warning("Sparkplug command on %s refused: %s (payload %s)", topic, why, payload[:EXCERPT].hex())


def _metric_type(kind: PointType) -> sp.DataType:
    if kind is PointType.BOOL:
        return sp.DataType.BOOLEAN
    if kind is PointType.STRING:
        return sp.DataType.STRING
    return sp.DataType.DOUBLE


def _fit(value: object, kind: sp.DataType) -> bool | float | str | None:
    if value is None:
        return None
    if kind is sp.DataType.BOOLEAN:
        return value if isinstance(value, bool) else None
    if kind is sp.DataType.STRING:
        return str(value)
    return float(value) if isinstance(value, int | float) else None


__all__ = ["SparkplugNode"]
