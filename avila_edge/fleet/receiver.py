"""Consumes gateway batches from a broker shared subscription, dedupes on (gateway, seq), writes new
readings to the time-series database, and only then acknowledges and counts them as received."""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar, cast

import msgspec

from avila_edge.audit import SOURCE as AUDIT_SOURCE
from avila_edge.config.fleet import FleetConfig
from avila_edge.core import Backoff, Clock, Event, check_cancelled
from avila_edge.core.cancel import CHECK_EVERY
from avila_edge.fleet.store import DedupeStore, GatewayStatus
from avila_edge.journal import EntryKind, decode_event, decode_reading
from avila_edge.sync.batch import Batch, BatchError, decode_batch
from avila_edge.sync.lineprotocol import to_line
from avila_edge.sync.mqtt_client import close_socket, no_delay, tls_context

if TYPE_CHECKING:
    import aiomqtt

logger = logging.getLogger(__name__)
T = TypeVar("T")
ACKS_IN_FLIGHT = 64
"""Acks published and not yet confirmed by the broker before the receiver waits for one."""


class ReceiverStats(msgspec.Struct, frozen=True):
    batches: int
    entries: int
    duplicates: int
    malformed: int
    tsdb_errors: int
    connected: bool


class FleetReceiver:
    def __init__(self, config: FleetConfig, *, clock: Clock, password: str | None = None, token: str = "") -> None:
        self.config = config
        self.clock = clock
        self._password = password
        self._token = token
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fleet-store")
        self._store: DedupeStore | None = None
        self._acking: set[asyncio.Task[None]] = set()
        self._batches = self._entries = self._duplicates = self._malformed = self._tsdb_errors = 0
        self.connected = False

    def stats(self) -> ReceiverStats:
        return ReceiverStats(
            self._batches, self._entries, self._duplicates, self._malformed, self._tsdb_errors, self.connected
        )

    async def gateways(self) -> list[GatewayStatus]:
        store = await self._open()
        result: list[GatewayStatus] = await self._run(store.gateways)
        return result

    async def _open(self) -> DedupeStore:
        if self._store is None:
            self._store = await self._run(
                DedupeStore,
                self.config.state_dir / "fleet.sqlite3",
                keys_dir=self.config.gateway_keys,
                trust_first_key=self.config.trust_first_key,
            )
        return self._store

    async def close(self) -> None:
        if self._store is not None:
            await self._run(self._store.close)
        self._pool.shutdown(wait=True)

    async def _run(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._pool, lambda: fn(*args, **kwargs))

    async def run(self) -> None:
        import aiomqtt  # noqa: PLC0415

        store = await self._open()
        backoff = Backoff(self.config.broker.reconnect_initial, self.config.broker.reconnect_max)
        topic = f"$share/{self.config.share_group}/{self.config.topic_prefix}/+/batch"
        writer = await self._tsdb()
        try:
            while True:
                failed = False
                client = self._client()
                try:
                    async with client:
                        no_delay(client)
                        await client.subscribe(topic, qos=1)
                        check_cancelled()  # aiomqtt may have swallowed a cancellation while connecting
                        self.connected = True
                        backoff.reset()
                        messages = aiter(client.messages)
                        while True:
                            check_cancelled()  # a cancellation swallowed while handling must still stop us
                            try:
                                async with asyncio.timeout(CHECK_EVERY):
                                    message = await anext(messages)
                            except TimeoutError:
                                continue  # nothing arrived: look for a swallowed cancellation again
                            payload = bytes(message.payload)  # type: ignore[arg-type,unused-ignore]
                            await self._handle(client, store, writer, payload, str(message.topic))
                except aiomqtt.MqttError as exc:
                    failed = True
                    close_socket(client)
                    logger.warning("fleet receiver: %s", str(exc))  # the text: a record must not keep the socket alive
                finally:
                    self.connected = False
                    for task in self._acking:  # their PUBACK can never come on another connection
                        task.cancel()
                    self._acking.clear()
                if failed:
                    await self.clock.sleep(backoff.next_delay())
        finally:
            if writer is not None:
                await writer[0].close()

    async def _tsdb(self) -> tuple[Any, Any] | None:
        if self.config.tsdb is None:
            return None
        from influxdb_client.client.influxdb_client_async import InfluxDBClientAsync  # noqa: PLC0415

        t = self.config.tsdb
        client = InfluxDBClientAsync(url=t.url, token=self._token, org=t.org, timeout=int(t.timeout * 1000))
        return client, client.write_api()

    def _client(self) -> aiomqtt.Client:
        import aiomqtt as m  # noqa: PLC0415

        b = self.config.broker
        return m.Client(
            b.host,
            b.port,
            identifier=b.client_id,
            username=b.username,
            password=self._password,
            protocol=m.ProtocolVersion.V5,
            tls_context=tls_context(b.tls, plaintext=b.plaintext),
        )

    async def _handle(
        self, client: aiomqtt.Client, store: DedupeStore, writer: tuple[Any, Any] | None, payload: bytes, topic: str
    ) -> None:
        try:
            batch = decode_batch(payload)
        except BatchError as exc:
            self._malformed += 1
            logger.warning("fleet receiver: malformed batch on %s (%d bytes): %s", topic, len(payload), exc)
            return
        expected = topic.split("/")[-2] if topic.count("/") >= 2 else ""
        if batch.gateway != expected:
            self._malformed += 1
            logger.warning("fleet receiver: batch from %s arrived on %s; ignored", batch.gateway, topic)
            return
        seqs = [s for s, _, _ in batch.entries]
        new = await self._run(store.unseen, batch.gateway, seqs)
        if writer is not None and not await self._write_tsdb(writer, batch, new):
            return  # not acknowledged: the gateway sends it again
        gaps = dropped = 0
        checkpoint: str | None = None
        audit: list[Event] = []
        for seq, kind, body in batch.entries:
            if kind == EntryKind.EVENT and seq in new:
                event = decode_event(body)
                if event.kind == "gap":
                    gaps += 1
                    dropped += int(event.attrs.get("count", 0))
                elif event.source == AUDIT_SOURCE and event.kind in ("checkpoint", "audit_key"):
                    audit.append(event)
                    if event.kind == "checkpoint":
                        checkpoint = str(event.attrs.get("note", ""))
        added = await self._run(
            store.record, batch.gateway, batch.entries, now_ns=self.clock.now_ns(), gaps=gaps, dropped=dropped,
            checkpoint=checkpoint, audit_events=audit,
        )  # fmt: skip
        self._batches += 1
        self._entries += added
        self._duplicates += len(batch.entries) - added
        if self.config.ack:
            lane = batch.lane or ("events" if all(k == EntryKind.EVENT for _, k, _ in batch.entries) else "readings")
            ack = msgspec.json.encode({"lane": lane, "first": batch.first, "last": batch.last})
            await self._send_ack(client, f"{self.config.topic_prefix}/{batch.gateway}/ack", ack)

    async def _send_ack(self, client: aiomqtt.Client, topic: str, ack: bytes) -> None:
        """Publish an ack without waiting for the broker's PUBACK, so the next batch is handled
        meanwhile: the batch is stored already, and a lost ack only means the gateway sends it again
        (deduped). Each ack names its batch (lane, first, last) and confirms only that batch, so acks
        may overtake each other."""
        while len(self._acking) >= ACKS_IN_FLIGHT:
            await asyncio.wait(self._acking, return_when=asyncio.FIRST_COMPLETED)
        task = asyncio.create_task(client.publish(topic, ack, qos=1), name="fleet.ack")
        self._acking.add(task)
        task.add_done_callback(self._acked)

    def _acked(self, task: asyncio.Task[None]) -> None:
        self._acking.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            logger.info("fleet receiver: an ack was not confirmed by the broker (%s); the batch will come again", exc)

    async def _write_tsdb(self, writer: tuple[Any, Any], batch: Batch, new: set[int]) -> bool:
        from influxdb_client.domain.write_precision import WritePrecision  # noqa: PLC0415

        tsdb = self.config.tsdb
        assert tsdb is not None
        lines = [
            to_line(decode_reading(body), site=batch.gateway, measurements={})
            for seq, kind, body in batch.entries
            if kind == EntryKind.READING and seq in new
        ]
        if not lines:
            return True
        try:
            await writer[1].write(
                bucket=tsdb.bucket, org=tsdb.org, record=lines, write_precision=cast(Any, WritePrecision.NS)
            )
        except Exception as exc:  # any failure: do not acknowledge
            self._tsdb_errors += 1
            logger.warning("fleet receiver: TSDB write of %d readings failed: %s", len(lines), exc)
            return False
        return True
