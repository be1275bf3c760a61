"""Ships the journal to a cloud MQTT broker. Each lane is a journal cursor that moves only after the
remote side confirmed the batch (broker PUBACK at QoS 1, or the fleet receiver's ack).

Two lanes share one connection: events (alarms, checkpoints, gaps, write outcomes) always go before
bulk telemetry, so an alarm is not stuck behind hours of backlog. The lanes share a sliding window
of ``max_in_flight`` published and unconfirmed batches: whenever a slot frees, the highest lane with
something to send takes it, from batches read and encoded ahead while the window was full. A lane's
confirmed position is the end of its oldest batches confirmed without a hole; a background task
writes it to the lane's cursor (see ``MqttUplink._write_cursors``), so neither the wire nor the
next read waits for a cursor's fsync. After a disconnect a lane resumes from its confirmed position,
after a crash from its written cursor (never beyond a batch that was not confirmed); the fleet
dedupes on (gateway, seq), so delivery is at-least-once on the wire and exactly-once in effect.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import msgspec

from avila_edge.config.sync import AckMode, MqttUplinkConfig
from avila_edge.core import Backoff, Clock, check_cancelled
from avila_edge.core.cancel import CHECK_EVERY
from avila_edge.journal import Cursor, EntryKind, Journal
from avila_edge.sync.batch import encode_batch
from avila_edge.sync.mqtt_client import close_socket, no_delay, tls_context

if TYPE_CHECKING:
    import aiomqtt

logger = logging.getLogger(__name__)

GATHER_STEP = 0.05
"""Seconds between looks at the journal while a batch gathers for up to ``batch_age``."""
IDLE_PERSIST = 0.05
"""Seconds without a new commit after which a lane's confirmed position is written to its cursor."""
PERSIST_OVERDUE = 1.0
"""Seconds a lane's confirmed position may stay unwritten when the journal is never idle that long."""
AHEAD = 8
"""Batches per lane read and encoded ahead while the window is full (at most ``max_in_flight``)."""


class UplinkStats(msgspec.Struct, frozen=True):
    name: str
    connected: bool
    batches: int
    entries: int
    bytes: int
    lag: dict[str, int]
    last_ack_ns: int | None
    errors: int


@dataclass(eq=False)
class _Batch:
    """Read and encoded: waiting ahead of the window, then in flight until confirmed."""

    payload: bytes
    first: int
    last: int
    count: int
    full: bool
    """``batch_max`` entries: the lane is behind, more follows at once."""
    sent: bool = False
    """Handed to the MQTT client: from here on an ack of the fleet may be this batch's."""
    published: bool = False
    """The broker's PUBACK came."""
    acked: bool = False
    """With ``ack: fleet``, the fleet's ack of this batch (its lane and ``last``) came."""
    deadline: float = math.inf
    """With ``ack: fleet``, when the fleet's ack is overdue (``ack_timeout`` after the PUBACK)."""


@dataclass(eq=False)
class _Lane:
    name: str
    kinds: tuple[EntryKind, ...]
    cursor: Cursor
    wait_for_full: bool
    end: Cursor | None = None
    """For the backfill while live data goes first: the lane stops below ``end.position``."""
    skipped: int = 0
    """The confirmed position: below this the journal holds nothing of the lane's kinds left to send
    (the lane found none of its entries there, or the remote side confirmed them). Kept in memory
    until ``_write_cursors`` writes it to ``cursor``: after ``IDLE_PERSIST`` without a commit, once
    ``PERSIST_OVERDUE`` old, or, draining a backlog, once ``max_in_flight`` more full batches are
    confirmed, so that no cursor write (a transaction and an fsync on the journal's single writer
    thread) sits in front of the next commit on that thread while readings come in. What a crash
    loses is confirmed batches not written yet, sent again (the fleet dedupes on seq), and skipped
    positions, looked at again; never a batch that was not confirmed."""
    persisted_at: float = -math.inf
    unwritten: int = 0
    """Full batches (backlog) confirmed since the cursor was last written."""
    read_to: int = 0
    """Where the lane reads next: the end of what it has read ahead, sent or found nothing in."""
    ahead: deque[_Batch] = field(default_factory=deque)
    """Read and encoded, waiting for a slot in the window."""
    flights: deque[_Batch] = field(default_factory=deque)
    """Taken into the window and not yet confirmed, oldest first."""

    @property
    def position(self) -> int:
        """Everything below is confirmed or not the lane's: its cursor, or its confirmed position."""
        return max(self.cursor.position, self.skipped)

    def advance(self) -> None:
        """Move the confirmed position up to the first batch not confirmed yet."""
        first = self.flights[0].first if self.flights else self.ahead[0].first if self.ahead else self.read_to
        self.skipped = max(self.skipped, first)


def _lag(lane: _Lane, next_seq: int) -> int:
    end = next_seq if lane.end is None else lane.end.position
    return max(0, end - lane.position)


class Ack(msgspec.Struct, frozen=True):
    """What the fleet receiver publishes on ``<prefix>/<gateway>/ack`` once a batch is durable."""

    lane: str
    last: int
    first: int | None = None
    """The batch's first seq (receivers before it was added send only ``last``)."""


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
        self._progress = asyncio.Event()
        """Set when a batch is confirmed: a slot in the window is free."""
        self._confirmed = asyncio.Event()
        """Set when a lane's confirmed position moved: something for ``_write_cursors``."""
        self._writing = asyncio.Lock()
        """Held while a cursor is written or the lanes merge, so that no two writes of one cursor overlap."""
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
        if until is None and f"uplink:{name}:live" in self.journal.cursors():
            await self.journal.remove_cursor(f"uplink:{name}:live")  # a merge cut short after its cursor write
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
                    no_delay(client)
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
                        await self._pump(client, tg)
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

    async def _pump(self, client: aiomqtt.Client, tg: asyncio.TaskGroup) -> None:
        """Keep the window full: publish the highest lane's next batch whenever a slot is free, read
        and encode ahead while none is, and wait for commits once everything is sent. Never returns:
        it is the body of the connection's TaskGroup until a task fails or the uplink stops (Python
        3.11's TaskGroup takes back the cancellation a failed publish sends this task only while the
        body runs; from the group's exit it would stay pending and stop the uplink at its next
        ``check_cancelled()``)."""
        check_cancelled()  # connecting may have swallowed a cancellation
        await self._split_if_behind()
        for lane in self._lanes:  # resend from the confirmed position: what was in flight is lost
            lane.ahead.clear()
            lane.flights.clear()
            lane.read_to = lane.position
        tg.create_task(self._write_cursors(), name=f"uplink[{self.config.name}].cursor")
        while True:
            check_cancelled()
            self._progress.clear()  # from here on, any confirmation wakes the waits below
            self._check_acks()
            if sum(len(lane.flights) for lane in self._lanes) >= self.config.max_in_flight:
                if not await self._read_ahead():
                    await self._wait_progress()
                continue
            sending = await self._next_to_send()
            if sending is not None:
                await self._send(client, tg, sending)
                continue
            if self._lanes[-1].end is not None:  # the backfill is all sent: merge once it is confirmed
                backfill, live = self._lanes[-1], self._lanes[1]
                if backfill.flights or live.flights:
                    await self._wait_progress()
                else:
                    await self._merge(backfill)
                continue
            # every lane has read up to the journal's end; anything committed since is beyond the lowest
            await self._wait_beyond(min(lane.read_to for lane in self._lanes) - 1)
            if self.config.batch_age > 0:
                await self._gather()

    def _sendable(self) -> list[_Lane]:
        """The lanes in priority order (events, live when split, readings); live pauses once the
        backfill is all read, until the lanes merge."""
        backfill = self._lanes[-1]
        if backfill.end is not None and not backfill.ahead and backfill.read_to >= backfill.end.position:
            return [lane for lane in self._lanes if lane is not self._lanes[1]]
        return list(self._lanes)

    async def _next_to_send(self) -> _Lane | None:
        """The first lane with a batch to send, read now when none was read ahead."""
        for lane in self._sendable():
            if lane.ahead or await self._read(lane):
                return lane
        return None

    async def _read_ahead(self) -> bool:
        """While the window is full: read and encode the next batch of the first lane that has room
        ahead; whether there was one."""
        room = min(AHEAD, self.config.max_in_flight)
        for lane in self._sendable():
            if len(lane.ahead) < room and await self._read(lane):
                return True
        return False

    async def _read(self, lane: _Lane) -> bool:
        """Read the lane's next batch into ``lane.ahead``; whether there was one before its end."""
        c = self.config
        end = self.journal.next_seq if lane.end is None else lane.end.position
        if lane.read_to >= end:
            return False
        entries = [e for e in await self.journal.read(lane.read_to, c.batch_max, kinds=lane.kinds) if e.seq < end]
        if not entries:
            lane.read_to = end  # nothing of this kind up to the end
            lane.advance()
            self._confirmed.set()
            return False
        payload = encode_batch(self.gateway, entries, lane=lane.name)
        first, last = entries[0].seq, entries[-1].seq
        lane.ahead.append(_Batch(payload, first, last, len(entries), full=len(entries) == c.batch_max))
        lane.read_to = last + 1
        return True

    async def _send(self, client: aiomqtt.Client, tg: asyncio.TaskGroup, lane: _Lane) -> None:
        batch = lane.ahead.popleft()
        lane.flights.append(batch)  # in the window from now on: the confirmed position stays below it
        if self._bucket is not None:
            await self._bucket.take(len(batch.payload))
        check_cancelled()  # a failed publish may have stopped the group meanwhile
        tg.create_task(self._publish(client, lane, batch), name=f"uplink[{self.config.name}].publish")

    async def _publish(self, client: aiomqtt.Client, lane: _Lane, batch: _Batch) -> None:
        batch.sent = True
        await client.publish(self.topic, batch.payload, qos=1)
        batch.published = True
        if self.config.ack is AckMode.FLEET:
            batch.deadline = self.clock.monotonic() + self.config.ack_timeout
        self._confirm(lane)

    def _confirm(self, lane: _Lane) -> None:
        """Take the lane's oldest batches out of the window while they are confirmed: PUBACKed and,
        with ``ack: fleet``, acknowledged each by its own ack."""
        fleet = self.config.ack is AckMode.FLEET
        confirmed = 0
        while lane.flights and lane.flights[0].published and (lane.flights[0].acked or not fleet):
            batch = lane.flights.popleft()
            confirmed += 1
            self._batches += 1
            self._entries += batch.count
            self._bytes += len(batch.payload)
            if batch.full or lane.end is not None:
                lane.unwritten += 1
        if confirmed:
            lane.advance()
            self._last_ack_ns = self.clock.now_ns()
            self._progress.set()
            self._confirmed.set()

    def _check_acks(self) -> None:
        """Raise ``MqttError`` when the fleet's ack of a lane's oldest batch is overdue."""
        import aiomqtt  # noqa: PLC0415

        now = self.clock.monotonic()
        for lane in self._lanes:
            if lane.flights and lane.flights[0].deadline <= now:
                raise aiomqtt.MqttError(
                    f"no fleet ack for {lane.name} up to seq {lane.flights[0].last}"
                    f" within {self.config.ack_timeout:g} s"
                )

    def _wait_at_most(self) -> float:
        """Seconds until the next look for a swallowed cancellation or an overdue ack."""
        wait = min(CHECK_EVERY, self.config.ack_timeout)
        for lane in self._lanes:
            if lane.flights:
                wait = min(wait, lane.flights[0].deadline - self.clock.monotonic())
        return max(0.0, wait)

    async def _wait_progress(self) -> None:
        """Until a batch is confirmed (``_progress``, cleared at the top of the pump's round)."""
        try:
            async with asyncio.timeout(self._wait_at_most()):
                await self._progress.wait()
        except TimeoutError:
            pass

    async def _gather(self) -> None:
        """Give the next batch up to ``batch_age`` to fill: go at once when ``batch_max`` readings are
        waiting or when an event (alarm, checkpoint, gap) is, since events never wait for telemetry."""
        c = self.config
        deadline = self.clock.monotonic() + c.batch_age
        events = self._lanes[0]
        readings_from = min(lane.read_to for lane in self._lanes[1:])
        while (left := deadline - self.clock.monotonic()) > 0:
            check_cancelled()
            self._check_acks()
            if self.journal.next_seq - readings_from >= c.batch_max:
                return
            if await self.journal.read(events.read_to, 1, kinds=events.kinds):
                return
            await self.clock.sleep(min(GATHER_STEP, left))

    async def _wait_beyond(self, seq: int) -> None:
        """``journal.wait_beyond``, checking now and then for a cancellation aiomqtt swallowed and for
        an overdue fleet ack of what is still in flight."""
        while True:
            check_cancelled()
            self._check_acks()
            try:
                async with asyncio.timeout(self._wait_at_most()):
                    await self.journal.wait_beyond(seq)
            except TimeoutError:
                continue
            return

    async def _write_cursors(self) -> None:
        """Write the lanes' confirmed positions to their cursors, beside the pump so that publishing
        never waits for it: after ``IDLE_PERSIST`` without a commit (and at most that often), once
        ``PERSIST_OVERDUE`` old, or once ``max_in_flight`` full batches of a backlog are confirmed
        since the last write (about one window, as often as a stop-and-wait round wrote it)."""
        seen, changed_at = self.journal.next_seq, self.clock.monotonic()
        while True:
            check_cancelled()
            self._confirmed.clear()  # from here on, any confirmation wakes the wait below
            now = self.clock.monotonic()
            if self.journal.next_seq != seen:
                seen, changed_at = self.journal.next_seq, now
            quiet = now - changed_at >= IDLE_PERSIST
            due = False
            for lane in list(self._lanes):
                if lane.skipped <= lane.cursor.position:
                    continue
                age = now - lane.persisted_at
                if (
                    (quiet and age >= IDLE_PERSIST)
                    or age >= PERSIST_OVERDUE
                    or lane.unwritten >= self.config.max_in_flight
                ):
                    await self._persist(lane)
                else:
                    due = True
            try:
                async with asyncio.timeout(IDLE_PERSIST if due else CHECK_EVERY):
                    await self._confirmed.wait()
            except TimeoutError:
                pass

    async def _persist(self, lane: _Lane) -> None:
        """Write the lane's confirmed position to its cursor (nothing below it is left to send)."""
        async with self._writing:
            position, unwritten = lane.skipped, lane.unwritten
            if position > lane.cursor.position and lane in self._lanes:
                await lane.cursor.commit(position)
                lane.unwritten -= unwritten
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
        name = self.config.name
        async with self._writing:
            await backfill.cursor.commit(max(backfill.position, live.position))
            # backfill-until first: a crash between the two leaves an orphan live cursor, which the next
            # start removes; the other order would resume a split whose live cursor starts at the oldest
            await self.journal.remove_cursor(f"uplink:{name}:backfill-until")
            await self.journal.remove_cursor(f"uplink:{name}:live")
            backfill.end = None
            self._lanes.remove(live)
        backfill.read_to = backfill.position  # what live read ahead is read again on this lane
        backfill.unwritten = 0
        logger.info("uplink %s: backlog sent; one readings lane again from seq %d", name, backfill.cursor.position)

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
            for lane in self._lanes:
                if lane.name == ack.lane:
                    self._acked(lane, ack)

    def _acked(self, lane: _Lane, ack: Ack) -> None:
        """The fleet stored the lane's batch ``ack.first``..``ack.last`` (from a receiver that sends
        no ``first``: the batch ending at ``ack.last``). It confirms that batch only, not the ones
        before it: a receiver may have missed those (it subscribed after they left, or it was one of
        several sharing the subscription and died before storing them), and they must come again. An
        ack that arrives before the broker's PUBACK counts once the PUBACK is there."""
        for batch in lane.flights:
            if batch.sent and batch.last == ack.last and ack.first in (None, batch.first):
                batch.acked = True
        self._confirm(lane)
