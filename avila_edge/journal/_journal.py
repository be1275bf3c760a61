"""The async face of the journal: group commits on one writer thread, cursors, streams, retention."""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal, TypeVar

import msgspec

from avila_edge.config.model import JournalConfig
from avila_edge.core import Clock, Event, JournalError, JournalFull, Reading
from avila_edge.core.reading import committed
from avila_edge.journal._encoding import Entry, EntryKind
from avila_edge.journal._store import Batch, CommitHook, Counters, ReaderStore, RemovalHook, WriterStore

logger = logging.getLogger(__name__)

T = TypeVar("T")

TAIL_ENTRIES = 4096
TAIL_BYTES = 1 << 20
"""Bounds of the tail cache: the most recently committed entries, at most this many and this many body
bytes (about 1.4 MB resident at most), so that cursors at the tail read without a SQLite round trip."""

RETENTION_INTERVAL = 5.0
"""Seconds between retention passes (a pass also runs as soon as a commit crosses the byte cap)."""


class Bucket(msgspec.Struct, frozen=True):
    """One downsampled slice of a point's history: readings in ``[start_ns, start_ns + width)``."""

    start_ns: int
    count: int
    min: float
    max: float
    mean: float


class JournalStats(msgspec.Struct, frozen=True):
    first_seq: int
    next_seq: int
    entries: int
    bytes: int
    retired: int
    dropped: int
    gaps: int
    appended: int
    commits: int
    last_commit_seconds: float


class Cursor:
    """A named consumer's position: ``position`` is the next seq it has not yet processed."""

    def __init__(self, journal: Journal, name: str, position: int) -> None:
        self._journal = journal
        self.name = name
        self._position = position

    @property
    def position(self) -> int:
        return self._position

    @property
    def lag(self) -> int:
        return max(0, self._journal.next_seq - self._position)

    async def commit(self, position: int) -> None:
        """Persist that every entry below ``position`` has been processed."""
        if position < self._position:
            raise ValueError(f"cursor {self.name}: position {position} is behind {self._position}")
        if position > self._journal.next_seq:
            raise ValueError(f"cursor {self.name}: position {position} is past the journal end")
        if position == self._position:
            return
        await self._journal._run_writer(self._journal._writer_store().set_cursor, self.name, position)
        self._position = position


class _Pending:
    __slots__ = ("batch", "future")

    def __init__(self, batch: Batch, future: asyncio.Future[list[Entry]]) -> None:
        self.batch = batch
        self.future = future


class Journal:
    """Append-only, seq-numbered store of readings and events. Open with ``Journal.open``."""

    def __init__(self, path: Path, config: JournalConfig, *, clock: Clock) -> None:
        self.path = path
        self.config = config
        self.clock = clock
        self._schema: list[str] = []
        self._hooks: list[CommitHook] = []
        self._writer_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="journal-writer")
        self._reader_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="journal-reader")
        self._writer: WriterStore | None = None
        self._reader: ReaderStore | None = None
        self._pending: list[_Pending] = []
        self._committing: list[_Pending] = []
        self._pending_count = 0
        self._wake = asyncio.Event()
        self._committed = asyncio.Event()
        self._counters = Counters()
        self._cursors: dict[str, Cursor] = {}
        self._appended = 0
        self._commits = 0
        self._last_commit_seconds = 0.0
        self._full = False
        self._closing = False
        self._started = False
        self._retention_due = asyncio.Event()
        self._index_failed = False
        self._tail: list[Entry] = []
        """The tail cache: committed entries with the dense seqs ``[_tail_start, _tail_start + len)``,
        exactly the stored entries of that range as of the last commit the loop has seen."""
        self._tail_events: list[int] = []
        """The seqs of the events in the tail cache, ascending."""
        self._tail_start = 0
        self._tail_bytes = 0
        self._tail_removals = 0

    # -- lifecycle --------------------------------------------------------------------------------

    @classmethod
    @contextlib.asynccontextmanager
    async def open(cls, path: Path, config: JournalConfig, *, clock: Clock) -> AsyncIterator[Journal]:
        """Open (creating if needed) the journal at ``path`` for the duration of the block."""
        journal = cls(path, config, clock=clock)
        try:
            await journal._open()
            async with asyncio.TaskGroup() as tg:
                tg.create_task(journal._commit_loop(), name="journal.commit")
                tg.create_task(journal._retention_loop(), name="journal.retention")
                try:
                    yield journal
                finally:
                    await journal._drain()
                    journal._closing = True
                    journal._wake.set()
                    journal._retention_due.set()
        finally:
            await journal._close()

    async def _open(self) -> None:
        self._writer = await self._run_writer(
            WriterStore,
            self.path,
            synchronous=self.config.synchronous.value,
            extra_schema=[],
            max_bytes=self.config.max_bytes,
        )
        self._counters = self._writer.refresh_counters()
        self._tail_start = self._counters.next_seq
        self._tail_removals = self._writer.removals
        self._reader = await self._run_reader(ReaderStore, self.path)
        positions = await self._run_writer(self._writer.cursors)
        for name, pos in positions.items():
            self._cursors[name] = Cursor(self, name, pos)

    async def _close(self) -> None:
        if self._writer is not None:
            await self._run_writer(self._writer.close)
        if self._reader is not None:
            await self._run_reader(self._reader.close)
        self._writer_pool.shutdown(wait=True)
        self._reader_pool.shutdown(wait=True)

    def add_schema(self, sql: str) -> None:
        """Extra DDL (idempotent) for a component that keeps its own tables in the journal database.

        Runs immediately on the writer thread, so it must be called right after ``open`` and before
        the first append."""
        if self._started:
            raise JournalError("add_schema must be called before the first append")
        self._schema.append(sql)
        writer = self._writer_store()
        self._writer_pool.submit(writer.conn.executescript, sql).result()

    def add_commit_hook(self, hook: CommitHook) -> None:
        """Run ``hook(conn, entries)`` on the writer thread inside every write transaction."""
        if self._started:
            raise JournalError("add_commit_hook must be called before the first append")
        self._writer_store().hooks.append(hook)

    def add_removal_hook(self, hook: RemovalHook) -> None:
        """Run ``hook(conn, lowest, highest)`` on the writer thread inside every retention transaction
        that removed entries (``lowest..highest`` bounds the seqs it may have removed)."""
        if self._started:
            raise JournalError("add_removal_hook must be called before the first append")
        self._writer_store().removal_hooks.append(hook)

    # -- appending --------------------------------------------------------------------------------

    async def append(self, readings: Sequence[Reading]) -> list[Reading]:
        """Commit ``readings``; return them with their seq once the commit is durable."""
        if not readings:
            return []
        if self._full:
            raise JournalFull(
                f"journal {self.path} is at its cap of {self.config.max_bytes} bytes and nothing can be dropped"
            )
        entries = await self._submit(Batch(readings=readings))
        return committed(readings, [e.seq for e in entries])

    async def append_events(self, events: Sequence[Event]) -> list[Event]:
        """Commit ``events``; return them with their seq. Events are never dropped by retention."""
        if not events:
            return []
        entries = await self._submit(Batch(events=events))
        return [ev.with_seq(e.seq) for ev, e in zip(events, entries, strict=True)]

    async def _submit(self, batch: Batch) -> list[Entry]:
        if self._closing:
            raise JournalError(f"journal {self.path} is closed")
        self._started = True
        future: asyncio.Future[list[Entry]] = asyncio.get_running_loop().create_future()
        self._pending.append(_Pending(batch, future))
        self._pending_count += len(batch)
        self._wake.set()
        return await asyncio.shield(future)

    async def flush(self) -> None:
        """Wait until everything appended so far is committed. Commits end in order, so waiting for the
        newest append is enough; holding every pending future would keep every pending commit's entries
        alive until the last one ends."""
        newest = self._pending[-1] if self._pending else self._committing[-1] if self._committing else None
        if newest is not None:
            await asyncio.wait([newest.future])

    async def _drain(self) -> None:
        while self._pending:
            await self.flush()

    async def _commit_loop(self) -> None:
        while True:
            await self._wake.wait()
            if self.config.commit_interval > 0 and self._pending_count < self.config.batch_max:
                await self.clock.sleep(self.config.commit_interval)
            self._wake.clear()
            if not self._pending:
                if self._closing:
                    return
                continue
            group: list[_Pending] = []
            count = 0
            while self._pending and (not group or count + len(self._pending[0].batch) <= self.config.batch_max):
                p = self._pending.pop(0)
                group.append(p)
                count += len(p.batch)
            self._pending_count -= count
            if self._pending:
                self._wake.set()
            await self._commit(group)
            del group  # nothing of a commit stays alive while the loop waits for the next one
            writer = self._writer_store()
            if writer.tail() >= writer.index_every and not self._index_failed:
                await self._index()

    async def _commit(self, group: list[_Pending]) -> None:
        """Write one group of appends in one transaction and answer each of them."""
        started = time.perf_counter()
        self._committing = group
        batches = [p.batch for p in group]
        try:
            entries, removals = await self._run_writer(self._writer_store().commit, batches)
        except Exception as exc:
            self._committing = []
            count = sum(len(b) for b in batches)
            logger.error("journal commit of %d entries failed: %s", count, exc)  # noqa: TRY400
            error = exc if isinstance(exc, JournalError) else JournalError(f"journal commit failed: {exc}")
            for p in group:
                if not p.future.done():
                    p.future.set_exception(error)
            return
        self._committing = []
        self._last_commit_seconds = time.perf_counter() - started
        self._commits += 1
        self._appended += len(entries)
        self._counters.next_seq = entries[-1].seq + 1
        self._counters.entries += len(entries)
        self._cache(entries, removals)
        offset = 0
        for p in group:
            n = len(p.batch)
            if not p.future.done():
                p.future.set_result(entries[offset : offset + n])
            offset += n
        self._signal_commit()
        if self._commits % 64 == 0:
            self._retention_due.set()

    def _cache(self, entries: list[Entry], removals: int) -> None:
        """Keep a commit's entries (after it returned: nothing uncommitted is ever cached). The cache
        starts afresh when entries were removed since it was filled, or when something it has not
        seen was committed before them (a retention pass's gap event)."""
        tail = self._tail
        if removals != self._tail_removals or entries[0].seq != self._tail_start + len(tail):
            self._reset_tail(entries[0].seq, removals)
        tail += entries
        size, events, event = self._tail_bytes, self._tail_events, EntryKind.EVENT
        for e in entries:
            size += len(e.body)
            if e.kind is event:
                events.append(e.seq)
        drop = max(0, len(tail) - TAIL_ENTRIES)
        for i in range(drop):
            size -= len(tail[i].body)
        while size > TAIL_BYTES and drop < len(tail):
            size -= len(tail[drop].body)
            drop += 1
        if drop:
            del tail[:drop]
            self._tail_start += drop
            del events[: bisect.bisect_left(events, self._tail_start)]
        self._tail_bytes = size

    def _reset_tail(self, start: int, removals: int) -> None:
        self._tail.clear()
        self._tail_events.clear()
        self._tail_start, self._tail_bytes, self._tail_removals = start, 0, removals

    def _cached(self, start: int, limit: int, kinds: Collection[EntryKind] | None) -> list[Entry] | None:
        """What ``ReaderStore.read`` would return, from the tail cache, or None when the cache does not
        hold every stored entry from ``start`` to the last commit."""
        tail, first = self._tail, self._tail_start
        if start < first or first + len(tail) != self._counters.next_seq:
            return None
        i = start - first
        if limit < 0:  # SQLite: no limit
            limit = len(tail)
        if kinds is None or len(kinds) == len(EntryKind):  # as ReaderStore.read decides it
            return tail[i : i + limit]
        wanted = {int(k) for k in kinds}
        if len(wanted) == len(EntryKind):
            return tail[i : i + limit]
        if not wanted or limit == 0:
            return []
        events = self._tail_events
        j = bisect.bisect_left(events, start)
        if EntryKind.EVENT in wanted:  # events only: found through their seqs
            return [tail[seq - first] for seq in events[j : j + limit]]
        out: list[Entry] = []  # readings only: the runs between events, sliced
        for seq in events[j:]:
            out += tail[i : min(seq - first, i + limit - len(out))]
            if len(out) >= limit:
                return out
            i = seq - first + 1
        out += tail[i : i + limit - len(out)]
        return out

    def _signal_commit(self) -> None:
        signal, self._committed = self._committed, asyncio.Event()
        signal.set()

    # -- retention --------------------------------------------------------------------------------

    async def _retention_loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(RETENTION_INTERVAL):
                    await self._retention_due.wait()
            self._retention_due.clear()
            if self._closing:
                return
            await self._index()
            await self.retain()

    async def _index(self) -> None:
        """Bring the per-point index up to the last commit, in a transaction of its own (after the
        commit answered its appends). A failure only leaves a longer tail for readers to scan: it is
        retried with the next retention pass, not after every commit."""
        writer = self._writer_store()
        if writer.tail() == 0:
            return
        try:
            await self._run_writer(writer.index)
        except Exception as exc:
            if not self._index_failed:
                logger.warning("journal per-point index not updated (retried in %.0f s): %s", RETENTION_INTERVAL, exc)
            self._index_failed = True
            return
        self._index_failed = False

    async def retain(self) -> None:
        """Apply the retention policy now (it also runs by itself every few seconds)."""
        now = self.clock.now_ns()
        cutoff = now - int(self.config.max_age * 1e9) if self.config.max_age else None
        writer = self._writer_store()
        try:
            gaps = await self._run_writer(writer.retain, max_bytes=self.config.max_bytes, cutoff_ns=cutoff, now_ns=now)
            self._counters = await self._run_writer(writer.take_counters)
        except Exception as exc:  # a failed pass changes nothing; the next one tries again
            logger.error("journal retention failed: %s", exc)  # noqa: TRY400
            return
        finally:
            if writer.removals != self._tail_removals:  # what the cache holds may be gone
                self._reset_tail(-1, writer.removals)  # empty until the next commit
        self._full = self._counters.bytes > self.config.max_bytes * 1.05
        if self._full:
            logger.error("journal is full (%d bytes) and holds nothing it may drop", self._counters.bytes)
        if gaps:
            self._signal_commit()

    # -- reading ----------------------------------------------------------------------------------

    @property
    def next_seq(self) -> int:
        return self._counters.next_seq

    @property
    def first_seq(self) -> int:
        return self._counters.first_seq

    async def read(self, start: int, limit: int = 1000, *, kinds: Collection[EntryKind] | None = None) -> list[Entry]:
        """Stored entries with ``seq >= start``, ascending, at most ``limit``. A cursor at the tail is
        served from the tail cache (the same entries, without a reader-thread round trip)."""
        reader = self._reader
        if reader is None:
            raise JournalError("journal is not open")
        cached = self._cached(start, limit, kinds)
        if cached is not None:
            await asyncio.sleep(0)  # still a point where other tasks run, as the reader thread's hop was
            return cached
        entries: list[Entry] = await self._run_reader(reader.read, start, limit, kinds)
        return entries

    async def history(self, point: str, start_ns: int, end_ns: int, *, limit: int = 10_000) -> list[Reading]:
        """Stored readings of ``point`` with gateway time in ``[start_ns, end_ns)``, oldest first."""
        reader = self._reader
        if reader is None:
            raise JournalError("journal is not open")
        entries: list[Entry] = await self._run_reader(reader.history, point, start_ns, end_ns, limit)
        return [e.reading() for e in entries]

    async def history_buckets(self, point: str, start_ns: int, end_ns: int, width_ns: int) -> list[Bucket]:
        """Downsampled history: count/min/max/mean of the numeric, not-Bad readings per bucket."""
        if width_ns <= 0:
            raise ValueError("bucket width must be positive")
        reader = self._reader
        if reader is None:
            raise JournalError("journal is not open")
        rows: list[tuple[int, int, float, float, float]] = await self._run_reader(
            reader.buckets, point, start_ns, end_ns, width_ns
        )
        return [Bucket(start_ns=b, count=n, min=lo, max=hi, mean=mean) for b, n, lo, hi, mean in rows]

    async def wait_beyond(self, seq: int) -> None:
        """Return once an entry with a seq above ``seq`` has been committed."""
        while self.next_seq <= seq + 1:
            await self._committed.wait()

    async def latest_readings(self) -> list[Reading]:
        """The newest stored reading of every point (to rebuild live state after a restart)."""
        reader = self._reader
        if reader is None:
            raise JournalError("journal is not open")
        entries: list[Entry] = await self._run_reader(reader.latest)
        return [e.reading() for e in entries]

    async def stream(self, start: int, *, batch: int = 1000) -> AsyncIterator[list[Entry]]:
        """Yield entries from ``start`` on, then each new commit as it happens. Never ends by itself."""
        position = start
        while True:
            signal = self._committed
            if position < self.next_seq:
                entries = await self.read(position, batch)
                if entries:
                    position = entries[-1].seq + 1
                    yield entries
                    continue
                position = self.next_seq
            await signal.wait()

    async def cursor(self, name: str, *, start: Literal["oldest", "latest"] = "oldest") -> Cursor:
        """The named cursor (created on first use at the oldest stored entry or the end)."""
        existing = self._cursors.get(name)
        if existing is not None:
            return existing
        position = self.first_seq if start == "oldest" else self.next_seq
        await self._run_writer(self._writer_store().set_cursor, name, position)
        cursor = Cursor(self, name, position)
        self._cursors[name] = cursor
        return cursor

    def cursors(self) -> dict[str, Cursor]:
        return dict(self._cursors)

    async def remove_cursor(self, name: str) -> None:
        """Forget a cursor (its consumer is gone): retention no longer waits for it."""
        await self._run_writer(self._writer_store().remove_cursor, name)
        self._cursors.pop(name, None)

    def stats(self) -> JournalStats:
        c = self._counters
        return JournalStats(
            first_seq=c.first_seq,
            next_seq=c.next_seq,
            entries=c.entries,
            bytes=c.bytes,
            retired=c.retired,
            dropped=c.dropped,
            gaps=c.gaps,
            appended=self._appended,
            commits=self._commits,
            last_commit_seconds=self._last_commit_seconds,
        )

    # -- threads ----------------------------------------------------------------------------------

    def _writer_store(self) -> WriterStore:
        if self._writer is None:
            raise JournalError("journal is not open")
        return self._writer

    async def _run_writer(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._writer_pool, lambda: fn(*args, **kwargs))

    async def _run_reader(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._reader_pool, lambda: fn(*args, **kwargs))
