"""Ships the journal to a cloud MQTT broker. Each lane is a journal cursor that moves only after the
remote side confirmed the batch (broker PUBACK at QoS 1, or the fleet receiver's ack); a lane that
has caught up writes its confirmed position when the uplink is idle for a moment, at least every
``PERSIST_OVERDUE`` (see ``_Lane.skipped``).

Two lanes share one connection: events (alarms, checkpoints, gaps, write outcomes) always go before
bulk telemetry, so an alarm is not stuck behind hours of backlog. After any crash or disconnect a
lane resumes from its last written confirmed seq; the fleet dedupes on (gateway, seq), so delivery is
at-least-once on the wire and exactly-once in effect.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import msgspec

from avila_edge.config.sync import AckMode, MqttUplinkConfig
from avila_edge.core import Backoff, Clock, check_cancelled
from avila_edge.core.cancel import CHECK_EVERY
from avila_edge.journal import Cursor, Entry, EntryKind, Journal
from avila_edge.sync.batch import encode_batch
from avila_edge.sync.mqtt_client import close_socket, tls_context

if TYPE_CHECKING:
    import aiomqtt

logger = logging.getLogger(__name__)

GATHER_STEP = 0.05
"""Seconds between looks at the journal while a batch gathers for up to ``batch_age``."""
IDLE_PERSIST = 0.05
"""Seconds without a new commit after which a lane's position is written to its cursor."""
PERSIST_OVERDUE = 1.0
"""Seconds a lane's position may stay unwritten when the uplink is never idle that long."""


class UplinkStats(msgspec.Struct, frozen=True):
    name: str
    connected: bool
    batches: int
    entries: int
    bytes: int
    lag: dict[str, int]
    last_ack_ns: int | None
    errors: int


@dataclass
class _Lane:
    name: str
    kinds: tuple[EntryKind, ...]
    cursor: Cursor
    wait_for_full: bool
    end: Cursor | None = None
    """For the backfill while live data goes first: the lane stops below ``end.position``."""
    skipped: int = 0
    """Below this the journal holds nothing of the lane's kinds left to send (the lane found none of
    its entries there, or the remote side confirmed them): kept in memory until it is written to
    ``cursor``, after ``IDLE_PERSIST`` without a commit or once ``PERSIST_OVERDUE`` old, so that no
    cursor write (a transaction and an fsync on the journal's single writer thread) sits between a
    commit and the publish of its readings, or in front of the next commit on that thread. A lane
    draining a backlog writes its cursor after each confirmed full batch as before. What a crash
    loses is at most ``PERSIST_OVERDUE`` of confirmed live batches, sent again (the fleet dedupes on
    seq), and skipped positions, looked at again."""
    persisted_at: float = -math.inf

    @property
    def position(self) -> int:
        """Where the lane reads next: its cursor, or beyond it where it found nothing to send."""
        return max(self.cursor.position, self.skipped)


def _lag(lane: _Lane, next_seq: int) -> int:
    end = next_seq if lane.end is None else lane.end.position
    return max(0, end - lane.position)


class Ack(msgspec.Struct, frozen=True):
    """What the fleet receiver publishes on ``<prefix>/<gateway>/ack`` once a batch is durable."""

    lane: str
    last: int


class _TokenBucket:
    def __init__(self, rate: int, clock: Clock) -> None:
        self.rate = rate
        self.clock = clock
        self.tokens = float(rate)
        self.at = clock.monotonic()

    async def take(self, n: int) -> None:
        while True:
            now = self.clock.monotonic()
            self.tokens = min(float(self.rate), self.tokens + (now - self.at) * self.rate)
            self.at = now
            if self.tokens >= n or self.tokens >= self.rate:
                self.tokens -= n
                return
            await self.clock.sleep((n - self.tokens) / self.rate)


class MqttUplink:
    def __init__(
        self,
        config: MqttUplinkConfig,
        *,
        gateway: str,
        journal: Journal,
        clock: Clock,
        password: str | None = None,
        on_command: Callable[[bytes], Awaitable[None]] | None = None,
    ) -> None:
        self.config = config
        self.gateway = gateway
        self.journal = journal
        self.clock = clock
        self._password = password
        self.topic = f"{config.topic_prefix}/{gateway}/batch"
        self.ack_topic = f"{config.topic_prefix}/{gateway}/ack"
        self.command_topic = f"{config.topic_prefix}/{gateway}/command"
        self._on_command = on_command
        self._lanes: list[_Lane] = []
        self._bucket = _TokenBucket(config.bandwidth, clock) if config.bandwidth else None
        self._acks: dict[str, int] = {}
        self._ack_signal = asyncio.Event()
        self.connected = False
        self._batches = self._entries = self._bytes = self._errors = 0
        self._last_ack_ns: int | None = None

    def stats(self) -> UplinkStats:
        return UplinkStats(
            name=self.config.name,
            connected=self.connected,
            batches=self._batches,
            entries=self._entries,
            bytes=self._bytes,
            lag={lane.name: _lag(lane, self.journal.next_seq) for lane in self._lanes},
            last_ack_ns=self._last_ack_ns,
            errors=self._errors,
        )

    async def run(self) -> None:
        """Ship forever (until cancelled), reconnecting with backoff."""
        import aiomqtt  # noqa: PLC0415 - loaded only when an uplink is configured

        name = self.config.name
        self._lanes = [
            _Lane("events", (EntryKind.EVENT,), await self.journal.cursor(f"uplink:{name}:events"), False),
            _Lane("readings", (EntryKind.READING,), await self.journal.cursor(f"uplink:{name}:readings"), True),
        ]
        until = self.journal.cursors().get(f"uplink:{name}:backfill-until")
        if until is not None:  # a split from before a restart: resume it
            self._lanes[1].end = until
            self._lanes.insert(1, _Lane("live", (EntryKind.READING,), await self.journal.cursor(f"uplink:{name}:live"),
                                        True))  # fmt: skip
        backoff = Backoff(self.config.reconnect_initial, self.config.reconnect_max)
        while True:
            delay = backoff.next_delay()
            client = self._client()
            try:
                async with client:
                    self.connected = True
                    backoff.reset()
                    logger.info("uplink %s connected to %s:%d", name, self.config.host, self.config.port)
                    async with asyncio.TaskGroup() as tg:
                        if self.config.ack is AckMode.FLEET:
                            await client.subscribe(self.ack_topic, qos=1)
                        if self._on_command is not None:
                            await client.subscribe(self.command_topic, qos=1)
                        if self.config.ack is AckMode.FLEET or self._on_command is not None:
                            tg.create_task(self._receive(client), name=f"uplink[{name}].receive")
                        await self._pump(client)
            except* aiomqtt.MqttError as group:
                self._errors += 1
                close_socket(client)
                first: BaseException = group
                while isinstance(first, BaseExceptionGroup):  # the error itself, not the groups around it
                    first = first.exceptions[0]
                logger.warning("uplink %s: %s; retrying in %.1f s", name, str(first), delay)
            finally:
                self.connected = False
            await self.clock.sleep(delay)

    def _client(self) -> aiomqtt.Client:
        import aiomqtt as m  # noqa: PLC0415

        c = self.config
        properties: Any = None
        clean: dict[str, Any] = {}
        if c.protocol == 5:
            from paho.mqtt.packettypes import PacketTypes  # noqa: PLC0415
            from paho.mqtt.properties import Properties  # noqa: PLC0415

            properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            properties.SessionExpiryInterval = round(c.session_expiry)
            clean["clean_start"] = False
        else:
            clean["clean_session"] = False
        return m.Client(
            c.host,
            c.port,
            identifier=c.client_id or f"avila-edge-{self.gateway}-{c.name}",
            username=c.username,
            password=self._password,
            protocol=m.ProtocolVersion.V5 if c.protocol == 5 else m.ProtocolVersion.V311,
            keepalive=round(c.keepalive),
            tls_context=tls_context(c.tls, plaintext=c.plaintext),
            properties=properties,
            timeout=c.ack_timeout,
            **clean,
        )

    async def _pump(self, client: aiomqtt.Client) -> None:
        check_cancelled()  # connecting may have swallowed a cancellation
        await self._split_if_behind()
        while True:
            check_cancelled()
            sent = False
            for lane in list(self._lanes):  # events first, then live (when split), then readings
                if await self._send_lane(client, lane):
                    sent = True
                    break
            if sent:  # the batch has left: now write what a busy uplink skipped long ago
                for lane in self._lanes:
                    if self.clock.monotonic() - lane.persisted_at >= PERSIST_OVERDUE:
                        await self._persist(lane)
                continue
            # every lane is at the end it read; anything committed since is beyond the lowest of them
            await self._wait_beyond(min(lane.position for lane in self._lanes) - 1)
            if self.config.batch_age > 0:
                await self._gather()

    async def _gather(self) -> None:
        """Give the next batch up to ``batch_age`` to fill: go at once when ``batch_max`` readings are
        waiting or when an event (alarm, checkpoint, gap) is, since events never wait for telemetry."""
        c = self.config
        deadline = self.clock.monotonic() + c.batch_age
        events = self._lanes[0]
        readings_from = min(lane.position for lane in self._lanes[1:])
        while (left := deadline - self.clock.monotonic()) > 0:
            check_cancelled()
            if self.journal.next_seq - readings_from >= c.batch_max:
                return
            if await self.journal.read(events.cursor.position, 1, kinds=events.kinds):
                return
            await self.clock.sleep(min(GATHER_STEP, left))

    async def _wait_beyond(self, seq: int) -> None:
        """``journal.wait_beyond``, checking now and then for a cancellation aiomqtt swallowed; after
        ``IDLE_PERSIST`` without a commit, the lanes' skipped positions are written to their cursors."""
        wait = IDLE_PERSIST
        while True:
            check_cancelled()
            try:
                async with asyncio.timeout(wait):
                    await self.journal.wait_beyond(seq)
            except TimeoutError:
                if wait == IDLE_PERSIST:
                    for lane in self._lanes:
                        await self._persist(lane)
                wait = CHECK_EVERY
                continue
            return

    async def _persist(self, lane: _Lane) -> None:
        """Write the lane's in-memory position to its cursor (nothing below it is left to send)."""
        if lane.skipped > lane.cursor.position:
            await lane.cursor.commit(lane.skipped)
        lane.persisted_at = self.clock.monotonic()

    async def _split_if_behind(self) -> None:
        """With ``live_first``, a readings lane far behind becomes a backfill up to the journal's end
        now, and new readings go first on a ``live`` lane from there."""
        readings = self._lanes[-1]
        if not self.config.live_first or readings.end is not None:
            return
        if readings.cursor.lag <= self.config.live_first_after:
            return
        name = self.config.name
        readings.end = await self.journal.cursor(f"uplink:{name}:backfill-until", start="latest")
        live = await self.journal.cursor(f"uplink:{name}:live", start="latest")
        self._lanes.insert(1, _Lane("live", (EntryKind.READING,), live, True))
        logger.info(
            "uplink %s: %d readings behind; live readings from seq %d go first, the backlog follows",
            name,
            readings.cursor.lag,
            live.position,
        )

    async def _merge(self, backfill: _Lane) -> None:
        """The backfill reached where live began: one readings lane again, from where live is."""
        live = self._lanes[1]
        await backfill.cursor.commit(max(backfill.position, live.position))
        name = self.config.name
        await self.journal.remove_cursor(f"uplink:{name}:live")
        await self.journal.remove_cursor(f"uplink:{name}:backfill-until")
        backfill.end = None
        self._lanes.remove(live)
        logger.info("uplink %s: backlog sent; one readings lane again from seq %d", name, backfill.cursor.position)

    async def _send_lane(self, client: aiomqtt.Client, lane: _Lane) -> bool:
        """Send up to ``max_in_flight`` batches of the lane; return whether anything was sent."""
        c = self.config
        position = lane.position
        end = self.journal.next_seq if lane.end is None else lane.end.position
        payloads: list[tuple[bytes, list[Entry]]] = []
        for _ in range(c.max_in_flight):
            entries = [e for e in await self.journal.read(position, c.batch_max, kinds=lane.kinds) if e.seq < end]
            if not entries:
                break
            payloads.append((encode_batch(self.gateway, entries, lane=lane.name), entries))
            position = entries[-1].seq + 1
            if len(entries) < c.batch_max:
                break
        if not payloads:
            lane.skipped = max(lane.skipped, end)  # nothing of this kind up to the end
            if lane.end is not None:
                await self._persist(lane)
                await self._merge(lane)
            return False
        async with asyncio.TaskGroup() as tg:
            publishing = []
            for payload, _ in payloads:
                if self._bucket is not None:
                    await self._bucket.take(len(payload))
                publishing.append(tg.create_task(self._publish(client, payload), name=f"uplink[{c.name}].publish"))
            # wait here, not in the group's exit: Python 3.11's TaskGroup takes back the cancellation a
            # failed publish sends this task only while the body runs; from the exit it would stay
            # pending and stop the uplink at its next check_cancelled()
            await asyncio.wait(publishing)
        last = payloads[-1][1][-1].seq
        if c.ack is AckMode.FLEET:
            await self._wait_ack(lane.name, last)
        if lane.end is not None or len(payloads[-1][1]) == c.batch_max:
            await lane.cursor.commit(last + 1)  # a backlog: more follows at once, the write costs it nothing
            lane.persisted_at = self.clock.monotonic()
        else:  # caught up: written at the next idle moment, not before the next reading's commit
            lane.skipped = last + 1
        self._last_ack_ns = self.clock.now_ns()
        self._batches += len(payloads)
        self._entries += sum(len(es) for _, es in payloads)
        self._bytes += sum(len(p) for p, _ in payloads)
        return True

    async def _publish(self, client: aiomqtt.Client, payload: bytes) -> None:
        await client.publish(self.topic, payload, qos=1)

    async def _wait_ack(self, lane: str, last: int) -> None:
        import aiomqtt  # noqa: PLC0415

        try:
            async with asyncio.timeout(self.config.ack_timeout):
                while self._acks.get(lane, -1) < last:
                    check_cancelled()
                    self._ack_signal.clear()
                    await self._ack_signal.wait()
        except TimeoutError:
            raise aiomqtt.MqttError(
                f"no fleet ack for {lane} up to seq {last} within {self.config.ack_timeout:g} s"
            ) from None

    async def _receive(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            if self._on_command is not None and str(message.topic) == self.command_topic:
                await self._on_command(bytes(message.payload))
                continue
            try:
                ack = msgspec.json.decode(bytes(message.payload), type=Ack)
            except (msgspec.DecodeError, TypeError):
                logger.warning("uplink %s: ignored malformed ack on %s", self.config.name, message.topic)
                continue
            self._acks[ack.lane] = max(self._acks.get(ack.lane, -1), ack.last)
            self._ack_signal.set()
