"""Publishes the twins and events to the site's MQTT broker, and takes set commands from it.

Topics (``P`` = ``<topic_prefix>/<site>``)::

    P/status                         online / offline       retained, QoS 1; offline is the will
    P/<asset>/state                  twin snapshot (JSON)   retained, QoS 1
    P/<asset>/points/<name>          one value (JSON)       retained, QoS 1: value, quality, reason, ts, unit
    P/events/<kind>                  event (JSON)           QoS 1, not retained: seq, kind, source, ts, attrs
    P/<asset>/set/<property>         command (JSON)         {"value": ..., "version": ..., "id": ...} (commands: true)
    P/<asset>/set/<property>/result  reply (JSON)           QoS 1: {"ok": true, ...} or {"ok": false, "error": ...}

After every (re)connect the retained topics are published again in full, so a broker that lost its
retained store (restart without persistence) is whole again. Events are followed from the journal
(from the newest entry when the publisher starts; an outage is caught up from where it stopped).
A malformed or refused command is counted, logged with its topic and a payload excerpt, and
answered with an error result; retained commands are never executed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

import msgspec

from avila_edge.config.model import GatewayConfig
from avila_edge.config.north import MqttPublisherConfig
from avila_edge.core import Backoff, Clock, Event, GatewayError, Value, check_cancelled
from avila_edge.core.cancel import CHECK_EVERY
from avila_edge.journal import EntryKind, Journal
from avila_edge.north import naming
from avila_edge.north._changes import next_changes
from avila_edge.north.counters import NorthStats
from avila_edge.sync.mqtt_client import no_delay
from avila_edge.twins.service import TwinService

if TYPE_CHECKING:
    import aiomqtt

logger = logging.getLogger(__name__)

Recorder = Callable[[Sequence[Event]], Awaitable[None]]

EXCERPT = 80
EVENT_BATCH = 1000


class SetCommand(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A command's payload: the desired value, optionally the version it expects and an id echoed back."""

    value: Value
    version: int | None = None
    id: str | int | None = None


class PublisherStats(msgspec.Struct, frozen=True):
    connected: bool
    connects: int
    published: int
    commands: int
    refused_commands: int
    errors: int


class MqttPublisher:
    """``await publisher.run()`` publishes until cancelled, reconnecting with backoff."""

    def __init__(
        self,
        config: MqttPublisherConfig,
        gateway: GatewayConfig,
        *,
        twins: TwinService,
        journal: Journal,
        record: Recorder,
        clock: Clock,
        password: str | None = None,
    ) -> None:
        self.config = config
        self.site = gateway.site.id
        self.twins = twins
        self.journal = journal
        self.record = record
        self.clock = clock
        self._password = password
        self.prefix = naming.topic_prefix(config.topic_prefix, self.site)
        self.status_topic = f"{self.prefix}/status"
        self.connected = False
        self.connects = self.published = self.commands = self.refused_commands = self.errors = 0
        self.failed_commands = 0
        self._sent: dict[str, bytes] = {}
        self._event_position: int | None = None

    def stats(self) -> PublisherStats:
        return PublisherStats(self.connected, self.connects, self.published, self.commands, self.refused_commands,
                              self.errors)  # fmt: skip

    def counters(self) -> NorthStats:
        return NorthStats(self.connected, int(self.connected), self.connects, self.published, self.commands,
                          self.refused_commands, self.failed_commands, self.errors)  # fmt: skip

    async def run(self) -> None:
        import aiomqtt  # noqa: PLC0415 - loaded only when the publisher is configured

        if self.config.commands and self.config.username is None:
            logger.warning("MQTT commands are on over an anonymous connection to %s: any client of that broker "
                           "can set values; restrict %s/+/set/+ in the broker's ACL", self.config.host,
                           self.prefix)  # fmt: skip
        queue = self.twins.subscribe()
        if self._event_position is None:
            self._event_position = self.journal.next_seq
        backoff = Backoff(self.config.reconnect_initial, self.config.reconnect_max)
        where = f"{self.config.host}:{self.config.port}"
        try:
            while True:
                delay = backoff.next_delay()
                try:
                    async with self._client() as client:
                        no_delay(client)
                        self.connected = True
                        self.connects += 1
                        backoff.reset()
                        logger.info("MQTT publisher connected to %s as %s", where, self.prefix)
                        try:
                            await self._session(client, queue)
                        except asyncio.CancelledError:
                            with contextlib.suppress(Exception):
                                async with asyncio.timeout(1.0):
                                    await client.publish(self.status_topic, b"offline", qos=1, retain=True)
                            raise
                except* aiomqtt.MqttError as group:
                    self.errors += 1
                    logger.warning("MQTT publisher (%s): %s; retrying in %.1f s", where, group.exceptions[0], delay)
                finally:
                    self.connected = False
                await self.clock.sleep(delay)
        finally:
            self.twins.unsubscribe(queue)

    def _client(self) -> aiomqtt.Client:
        import aiomqtt  # noqa: PLC0415

        will = aiomqtt.Will(self.status_topic, b"offline", qos=1, retain=True)
        identifier = self.config.client_id or f"avila-edge-{self.site}-north"
        return broker_client(self.config, identifier=identifier, password=self._password, will=will)

    async def _session(self, client: aiomqtt.Client, queue: asyncio.Queue[Any]) -> None:
        await client.publish(self.status_topic, b"online", qos=1, retain=True)
        self._sent.clear()  # the broker may have lost its retained store: everything again
        async with asyncio.TaskGroup() as tg:
            if self.config.commands:
                from paho.mqtt.subscribeoptions import SubscribeOptions  # noqa: PLC0415

                # retained commands are never run: not sent at subscribe, and flagged when they arrive live
                options = SubscribeOptions(qos=1, retainAsPublished=True,
                                           retainHandling=SubscribeOptions.RETAIN_DO_NOT_SEND)  # fmt: skip
                await client.subscribe(f"{self.prefix}/+/set/+", options=options)
                tg.create_task(self._receive(client), name="north.mqtt.receive")
            tg.create_task(self._events(client), name="north.mqtt.events")
            for asset in self.twins.assets():
                await self._publish_asset(client, asset)
            while True:
                for asset in await next_changes(queue):
                    await self._publish_asset(client, asset)

    # -- twins ----------------------------------------------------------------------------------

    async def _publish_asset(self, client: aiomqtt.Client, asset: str) -> None:
        snapshot = self.twins.snapshot(asset)
        changed: list[tuple[str, bytes]] = []
        for section in ("reported", "derived"):
            values = snapshot[section]
            for name, v in values.items() if isinstance(values, dict) else ():
                body = {"value": v["value"], "quality": v["quality"], "reason": v["reason"], "ts": v["ts_source"],
                        "unit": v["unit"]}  # fmt: skip
                changed.append((f"{self.prefix}/{asset}/points/{name}", msgspec.json.encode(body)))
        changed.append((f"{self.prefix}/{asset}/state", msgspec.json.encode(snapshot)))
        changed = [(topic, payload) for topic, payload in changed if self._sent.get(topic) != payload]
        if not changed:
            return
        if len(changed) == 1:
            await self._retain(client, *changed[0])
            return
        # sent one after the other in this order without waiting for each PUBACK in turn (a point's
        # topic no longer waits for the round trips of the asset's state and of the points before it);
        # each is still QoS 1 and counts as sent once the broker acknowledged it
        async with asyncio.TaskGroup() as tg:
            for topic, payload in changed:
                tg.create_task(self._retain(client, topic, payload), name="north.mqtt.publish")

    async def _retain(self, client: aiomqtt.Client, topic: str, payload: bytes) -> None:
        await client.publish(topic, payload, qos=1, retain=True)
        self._sent[topic] = payload
        self.published += 1

    # -- events ---------------------------------------------------------------------------------

    async def _events(self, client: aiomqtt.Client) -> None:
        kinds = set(self.config.events)
        while True:
            position = self._event_position or 0
            end = self.journal.next_seq
            entries = await self.journal.read(position, EVENT_BATCH, kinds=[EntryKind.EVENT])
            for entry in entries:
                event = entry.event()
                if event.kind in kinds and event.source:
                    body = {"seq": entry.seq, "kind": event.kind, "source": event.source, "ts": event.ts,
                            "attrs": event.attrs}  # fmt: skip
                    await client.publish(f"{self.prefix}/events/{event.kind}", msgspec.json.encode(body), qos=1)
                    self.published += 1
                self._event_position = entry.seq + 1
            if len(entries) == EVENT_BATCH:
                continue
            self._event_position = max(self._event_position or 0, end)
            check_cancelled()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(CHECK_EVERY):
                    await self.journal.wait_beyond(self._event_position - 1)

    # -- commands -------------------------------------------------------------------------------

    async def _receive(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            await self._command(client, str(message.topic), bytes(message.payload), retained=bool(message.retain))
            check_cancelled()

    async def _command(self, client: aiomqtt.Client, topic: str, payload: bytes, *, retained: bool) -> None:
        if retained and not payload:
            return  # someone deleted a retained message there: not a command
        self.commands += 1
        reply_to = f"{topic}/result"
        command_id: str | int | None = None
        try:
            command = _parse(payload, retained=retained)
            command_id = command.id
            asset, _, name = topic.removeprefix(self.prefix + "/").partition("/set/")
            desired, events = await self.twins.set_desired(
                asset, name, command.value, expected_version=command.version, by="mqtt"
            )
        except (_Refused, GatewayError) as exc:
            self.refused_commands += 1
            excerpt = payload[:EXCERPT].decode("utf-8", "replace")
            logger.warning("MQTT command on %s refused: %s (payload %r)", topic, exc, excerpt)
            await self._reply(client, reply_to, {"ok": False, "error": str(exc), "id": command_id})
            return
        await self.record(events)
        ok = desired.status.value != "failed"
        self.failed_commands += not ok
        await self._reply(client, reply_to, {"ok": ok, "value": desired.value, "version": desired.version,
                                             "status": desired.status.value, "reason": desired.reason,
                                             "id": command_id})  # fmt: skip

    async def _reply(self, client: aiomqtt.Client, topic: str, body: dict[str, object]) -> None:
        await client.publish(topic, msgspec.json.encode(body), qos=1)
        self.published += 1


def broker_client(
    config: MqttPublisherConfig, *, identifier: str, password: str | None, will: aiomqtt.Will
) -> aiomqtt.Client:
    """An MQTT 5 client for the site broker as ``config`` says (TLS, credentials, keepalive)."""
    import aiomqtt  # noqa: PLC0415

    tls_context: ssl.SSLContext | None = None
    if config.tls is not None:
        tls_context = ssl.create_default_context(cafile=str(config.tls.ca_file))
        if config.tls.cert_file is not None:
            key = str(config.tls.key_file) if config.tls.key_file else None
            tls_context.load_cert_chain(str(config.tls.cert_file), key)
    return aiomqtt.Client(
        config.host,
        config.port,
        identifier=identifier,
        username=config.username,
        password=password,
        protocol=aiomqtt.ProtocolVersion.V5,
        keepalive=round(config.keepalive),
        tls_context=tls_context,
        will=will,
        timeout=10.0,
    )


class _Refused(Exception):
    """A command that is not executed; the message says why, in plain words."""


def _parse(payload: bytes, *, retained: bool) -> SetCommand:
    if retained:
        raise _Refused("retained commands are not executed (publish commands without the retain flag)")
    try:
        return msgspec.json.decode(payload, type=SetCommand)
    except msgspec.ValidationError as exc:
        raise _Refused(f"payload: {exc}") from None
    except msgspec.DecodeError:
        raise _Refused('payload is not JSON; send {"value": ..., "version": ...}') from None


__all__ = ["MqttPublisher", "PublisherStats", "SetCommand", "broker_client"]
