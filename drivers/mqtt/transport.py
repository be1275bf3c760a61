"""The only module that speaks aiomqtt: one broker session at a time, library errors translated.

``BrokerTransport.connect()`` is an async context manager yielding a connected ``Link``; leaving it
disconnects. Every failure leaves as ``LinkDown`` (connection lost, refused, unreachable, TLS or
password file unreadable) or ``DeviceRejected`` (the broker refused the login or a subscription),
naming the device, the broker and the operation. Passwords never appear in messages or logs.

Acknowledgements wait for the journal: paho runs with ``manual_ack`` and the driver calls
``Link.ack(batch)`` once the batch's readings are committed, so a QoS 1 message the gateway loses
before its commit (crash, link loss) is delivered again by the broker. paho sends a QoS 2 PUBREC on
receipt and the broker forgets the message at that point, so a QoS 2 subscription is requested as
QoS 1: at least once into the journal, instead of a lost message in that window.

Received messages wait in a bounded inbox (``max_queued``). QoS 1 messages are held back at the
broker by acknowledging late (MQTT 5 ``Receive Maximum``; 3.1.1 brokers apply their own in-flight
window); QoS 0 messages beyond the bound are dropped and counted (``queue_full``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import ssl
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol, cast

import aiomqtt
from aiomqtt.exceptions import MqttConnectError
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from avila_edge.config.secrets import SecretUnreadable, read_secret_file
from avila_edge.core import DeviceRejected, LinkDown
from avila_edge.sync.mqtt_client import no_delay
from drivers.mqtt.config import MqttConnection

logger = logging.getLogger(__name__)

MAX_BATCH: Final = 1000


@dataclass(frozen=True, slots=True)
class Inbound:
    """One message as received."""

    topic: str
    payload: bytes
    qos: int
    retain: bool
    mid: int = 0


class Link(Protocol):
    """A connected broker session."""

    async def subscribe(self, filters: Sequence[tuple[str, int]]) -> list[tuple[str, str]]:
        """Subscribe to every (filter, qos); returns (filter, reason) for each one the broker refused."""
        ...

    async def receive(self) -> list[Inbound]:
        """The next messages: waits for one, then takes what is already queued (up to a batch)."""
        ...

    async def publish(self, topic: str, payload: bytes, qos: int) -> None: ...

    def ack(self, batch: Sequence[Inbound]) -> None:
        """Acknowledge the QoS 1/2 messages of ``batch`` (their readings are committed)."""
        ...

    def take_dropped(self) -> int:
        """QoS 0 messages dropped because the inbox was full since the last call."""
        ...


class Transport(Protocol):
    endpoint: str

    def connect(self) -> contextlib.AbstractAsyncContextManager[Link]: ...


class BrokerTransport:
    """Sessions with one MQTT broker, as configured by ``MqttConnection``."""

    def __init__(self, device: str, conn: MqttConnection, *, timeout: float) -> None:
        self.device = device
        self.conn = conn
        self.timeout = timeout
        scheme = "mqtts" if conn.tls is not None else "mqtt"
        self.endpoint = f"{scheme}://{conn.host}:{conn.port}"
        self.client_id = conn.client_id or f"avila-edge-{device}"

    @contextlib.asynccontextmanager
    async def connect(self) -> AsyncIterator[Link]:
        what = f"connect {self.endpoint}"
        tls = await asyncio.to_thread(self._tls_context) if self.conn.tls is not None else None
        password = await asyncio.to_thread(self._password) if self.conn.password_file is not None else None
        client = self._client(tls, password)
        try:
            await _entered(client)
        except MqttConnectError as exc:
            raise DeviceRejected(self.device, what, f"the broker refused the login: {_reason(exc)}") from exc
        except aiomqtt.MqttError as exc:
            detail = _reason(exc) or "no answer"
            if "timed out" in detail:
                detail = f"no CONNACK within {self.timeout:g} s"
                if self.conn.tls is not None:
                    detail += " (was the TLS client certificate refused?)"
            raise LinkDown(self.device, what, detail) from exc
        except ssl.SSLError as exc:
            raise LinkDown(self.device, what, f"TLS handshake failed: {exc.reason or exc}") from exc
        except OSError as exc:
            raise LinkDown(self.device, what, str(exc)) from exc
        try:
            yield _AiomqttLink(self, client)
        finally:
            with contextlib.suppress(aiomqtt.MqttError, OSError):
                await client.__aexit__(None, None, None)

    def _client(self, tls: ssl.SSLContext | None, password: str | None) -> aiomqtt.Client:
        c = self.conn
        v5 = c.protocol == 5
        options: dict[str, Any] = {}
        if v5:
            options["clean_start"] = not c.persistent_session
            props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            props.ReceiveMaximum = min(c.max_queued, 0xFFFF)  # unacknowledged QoS 1 messages in flight
            if c.persistent_session:
                props.SessionExpiryInterval = min(int(c.session_expiry), 0xFFFFFFFF)
            options["properties"] = props
        else:
            options["clean_session"] = not c.persistent_session
        if tls is not None:
            options["tls_context"] = tls
            options["tls_insecure"] = not (c.tls is not None and c.tls.verify_hostname)
        client = aiomqtt.Client(
            c.host,
            c.port,
            identifier=self.client_id,
            protocol=aiomqtt.ProtocolVersion.V5 if v5 else aiomqtt.ProtocolVersion.V311,
            username=c.username,
            password=password,
            keepalive=max(1, math.ceil(c.keepalive)),
            timeout=self.timeout,
            logger=logging.getLogger(f"{__name__}.paho"),
            queue_type=cast("type[asyncio.Queue[aiomqtt.Message]]", functools.partial(_Inbox, limit=c.max_queued)),
            **options,
        )
        # paho waits 5 s for a TCP connection by default; aiomqtt exposes neither that nor manual_ack.
        client._client.connect_timeout = self.timeout
        client._client.manual_ack_set(True)
        return client

    def _tls_context(self) -> ssl.SSLContext:
        tls = self.conn.tls
        assert tls is not None
        what = f"connect {self.endpoint}"
        try:
            context = ssl.create_default_context(cafile=tls.ca_file)
            if tls.cert_file is not None:
                context.load_cert_chain(tls.cert_file, tls.key_file)
        except (OSError, ssl.SSLError) as exc:
            raise LinkDown(self.device, what, f"cannot load the TLS files: {exc}") from exc
        context.check_hostname = tls.verify_hostname
        return context

    def _password(self) -> str:
        path = self.conn.password_file
        assert path is not None
        try:
            return read_secret_file(path).rstrip("\r\n")
        except SecretUnreadable as exc:
            raise LinkDown(
                self.device, f"connect {self.endpoint}", f"cannot read password_file {path}: {exc.detail}"
            ) from exc


class _Inbox(asyncio.Queue["aiomqtt.Message"]):
    """aiomqtt's incoming queue, bounded for QoS 0 (dropped and counted beyond ``limit``); QoS 1
    messages are bounded by the broker's in-flight window, as they are acknowledged only later."""

    def __init__(self, maxsize: int = 0, *, limit: int) -> None:
        super().__init__()  # unbounded for asyncio: a full asyncio queue would drop QoS 1 messages too
        self.limit = limit
        self.dropped = 0

    def put_nowait(self, item: aiomqtt.Message) -> None:
        if item.qos == 0 and self.qsize() >= self.limit:
            self.dropped += 1
            return
        super().put_nowait(item)


class _AiomqttLink:
    def __init__(self, transport: BrokerTransport, client: aiomqtt.Client) -> None:
        self._t = transport
        self._client = client
        self._paho = client._client
        self._messages = client.messages
        inbox = client._queue
        assert isinstance(inbox, _Inbox)
        self._inbox = inbox
        self._dropped_seen = 0

    async def subscribe(self, filters: Sequence[tuple[str, int]]) -> list[tuple[str, str]]:
        if not filters:
            return []
        what = f"subscribe at {self._t.endpoint}"
        try:
            wire = [(f, min(qos, 1)) for f, qos in filters]  # QoS 2 as QoS 1: see the module docstring
            codes = await self._client.subscribe(wire, timeout=self._t.timeout)
        except aiomqtt.MqttError as exc:
            raise LinkDown(self._t.device, what, _reason(exc) or "no answer") from exc
        refused: list[tuple[str, str]] = []
        granted: list[int | ReasonCode] = list(codes)
        for (topic_filter, _), code in zip(filters, granted, strict=False):
            value = code.value if isinstance(code, ReasonCode) else int(code)
            if value >= 0x80:
                refused.append((topic_filter, code.getName() if isinstance(code, ReasonCode) else f"code {value}"))
        return refused

    async def receive(self) -> list[Inbound]:
        inbox = self._inbox
        try:
            batch = [inbox.get_nowait()] if inbox.qsize() else [await anext(self._messages)]
        except aiomqtt.MqttError as exc:
            raise LinkDown(self._t.device, f"receive from {self._t.endpoint}", "connection lost") from exc
        # What is queued already arrived: take it without a wake-up per message.
        for _ in range(min(inbox.qsize(), MAX_BATCH - 1)):
            batch.append(inbox.get_nowait())
        return [
            Inbound(
                m.topic.value,
                m.payload if isinstance(m.payload, bytes) else str(m.payload).encode(),
                m.qos,
                m.retain,
                m.mid,
            )
            for m in batch
        ]

    def ack(self, batch: Sequence[Inbound]) -> None:
        paho = self._paho
        for m in batch:
            if m.qos:
                paho.ack(m.mid, m.qos)  # on a lost link this does nothing: the broker sends it again

    def take_dropped(self) -> int:
        dropped = self._inbox.dropped - self._dropped_seen
        self._dropped_seen = self._inbox.dropped
        return dropped

    async def publish(self, topic: str, payload: bytes, qos: int) -> None:
        try:
            await self._client.publish(topic, payload, qos=qos, timeout=self._t.timeout)
        except aiomqtt.MqttError as exc:
            raise LinkDown(self._t.device, f"publish {topic} at {self._t.endpoint}", _reason(exc)) from exc


async def _entered(client: aiomqtt.Client) -> None:
    """Connect; on any failure (or cancellation) close the half-open socket aiomqtt leaves behind."""
    try:
        await client.__aenter__()
        no_delay(client)
    except BaseException:
        paho = client._client
        with contextlib.suppress(Exception):
            paho._sock_close()  # paho's own close: unregisters the reader
        raise


def _reason(exc: BaseException) -> str:
    text = str(exc)
    cause = exc.__cause__ or exc.__context__
    if cause is not None and str(cause) and str(cause) not in text:
        text = f"{text}: {cause}" if text else str(cause)
    return text
