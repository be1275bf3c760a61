"""The tail cache: reads of the most recently committed entries are served from memory, and are
exactly what SQLite returns (same seqs, kinds, bodies, filtering and limit); nothing uncommitted is
cached; retention invalidates it. Every comparison reads the same journal both ways in the same test."""

from __future__ import annotations

import asyncio
import contextlib
import random
import threading
from collections.abc import AsyncIterator, Collection
from pathlib import Path

from avila_edge.config.model import JournalConfig
from avila_edge.core import Event, JournalError, ManualClock, Reading, SystemClock
from avila_edge.journal import Entry, EntryKind, Journal
from avila_edge.journal._journal import TAIL_BYTES, TAIL_ENTRIES

KINDS: list[Collection[EntryKind] | None] = [
    None,
    [EntryKind.READING],
    [EntryKind.EVENT],
    [EntryKind.READING, EntryKind.EVENT],
    [],
    [EntryKind.EVENT, EntryKind.EVENT],  # ReaderStore.read takes two kinds as "all": so does the cache
    (EntryKind.READING, EntryKind.READING, EntryKind.READING),
    {EntryKind.EVENT},
]


def readings(n: int, start: int, *, pad: int = 0, ts: int = 1) -> list[Reading]:
    return [
        Reading(point=f"pump{i % 3}/p{i % 5}", value=f"{start + i}" + "x" * pad if pad else float(start + i),
                ts_source=ts, ts_gateway=ts)
        for i in range(n)
    ]  # fmt: skip


async def sqlite_read(j: Journal, start: int, limit: int, kinds: Collection[EntryKind] | None) -> list[Entry]:
    reader = j._reader
    assert reader is not None
    entries: list[Entry] = await j._run_reader(reader.read, start, limit, kinds)
    return entries


async def compare_reads(j: Journal, rng: random.Random, n: int) -> int:
    """``n`` random reads near the tail: cached and SQLite answers equal; returns how many came from the cache."""
    served = 0
    for _ in range(n):
        start = rng.randint(max(0, j.next_seq - 2 * TAIL_ENTRIES), j.next_seq + 2)
        limit = rng.choice([0, 1, 7, 100, 1000, 100_000, -1])
        kinds = rng.choice(KINDS)
        if j._cached(start, limit, kinds) is not None:
            served += 1
        got = await j.read(start, limit, kinds=kinds)
        want = await sqlite_read(j, start, limit, kinds)
        assert got == want, (start, limit, kinds)
        assert [type(e.body) for e in got] == [bytes] * len(got)
    return served


async def test_cached_reads_equal_sqlite_reads(tmp_path: Path) -> None:
    rng = random.Random(4)
    async with Journal.open(tmp_path / "j.sqlite3", JournalConfig(), clock=SystemClock()) as j:
        served = 0
        for step in range(60):
            roll = rng.random()
            if roll < 0.6:
                await j.append(readings(rng.randint(1, 700), j.next_seq))
            elif roll < 0.8:
                await j.append_events([Event(kind="note", source="t", ts=1, attrs={"i": i}) for i in range(3)])
            elif roll < 0.9:  # big bodies: the byte cap, not the count, bounds the cache
                await j.append(readings(rng.randint(1, 40), j.next_seq, pad=rng.randint(1000, 60_000)))
            elif step % 2:  # one commit larger than the cache
                await j.append(readings(TAIL_ENTRIES + 123, j.next_seq))
            assert len(j._tail) <= TAIL_ENTRIES
            assert sum(len(e.body) for e in j._tail) == j._tail_bytes <= TAIL_BYTES
            assert j._tail_start + len(j._tail) == j.next_seq
            served += await compare_reads(j, rng, 10)
        assert served > 200  # most reads at the tail never went to SQLite


async def test_a_tail_read_does_not_wait_for_the_reader_thread(tmp_path: Path) -> None:
    async with Journal.open(tmp_path / "j.sqlite3", JournalConfig(), clock=SystemClock()) as j:
        await j.append(readings(50, 0))
        expected = await sqlite_read(j, 30, 1000, None)
        blocked = threading.Event()
        busy = asyncio.ensure_future(j._run_reader(blocked.wait, 10))  # the reader thread is stuck
        try:
            async with asyncio.timeout(2):
                assert await j.read(30) == expected
                assert await j.read(45, kinds=[EntryKind.READING]) == expected[15:]
                assert await j.read(50) == []
        finally:
            blocked.set()
            await busy


async def test_nothing_uncommitted_is_cached(tmp_path: Path) -> None:
    gate = threading.Event()
    inside = threading.Event()
    fail = {"now": False}

    def hook(conn: object, entries: object) -> None:
        if fail["now"]:
            raise RuntimeError("refused")
        if not gate.is_set():
            inside.set()
            gate.wait(10)

    async with Journal.open(tmp_path / "j.sqlite3", JournalConfig(), clock=SystemClock()) as j:
        j.add_commit_hook(hook)
        gate.set()
        await j.append(readings(10, 0))
        gate.clear()
        pending = asyncio.ensure_future(j.append(readings(10, 10)))
        while not inside.is_set():  # the commit is inside its transaction, not yet committed
            await asyncio.sleep(0.005)
        assert [e.seq for e in j._tail] == list(range(10))
        assert await j.read(10) == [] == await sqlite_read(j, 10, 1000, None)
        gate.set()
        await pending
        assert [e.seq for e in await j.read(0)] == list(range(20))
        fail["now"] = True
        with contextlib.suppress(JournalError):
            await j.append(readings(5, 20))
        fail["now"] = False
        assert [e.seq for e in j._tail] == list(range(20))
        (after,) = await j.append(readings(1, 20))
        assert after.seq == 20
        assert await j.read(0) == await sqlite_read(j, 0, 1000, None)


async def test_retention_invalidates_the_cache(tmp_path: Path) -> None:
    clock = ManualClock()
    cfg = JournalConfig(max_bytes=1 << 20, max_age=3600)
    async with Journal.open(tmp_path / "j.sqlite3", cfg, clock=clock) as j:
        cloud = await j.cursor("cloud")
        for i in range(12):
            await j.append(readings(1000, i * 1000, ts=clock.now_ns()))
        tail_before = list(j._tail)
        assert tail_before and j._cached(j.next_seq - 10, 10, None) is not None
        await j.retain()  # over the cap with a cursor behind: readings dropped, a gap event written
        assert j.stats().dropped > 0
        gap = (await sqlite_read(j, 0, 100_000, [EntryKind.EVENT]))[-1]
        assert gap.event().kind == "gap"
        for start in (tail_before[0].seq, gap.seq - 5, gap.seq):
            for kinds in KINDS:
                assert await j.read(start, 100_000, kinds=kinds) == await sqlite_read(j, start, 100_000, kinds)
        await j.append(readings(10, 50_000, ts=clock.now_ns()))
        assert j._tail[0].seq == gap.seq + 1  # cached again from the first commit after the pass
        seen = [e.seq async for e in _take(j.stream(cloud.position), j.next_seq)]
        assert seen == [e.seq for e in await sqlite_read(j, cloud.position, 100_000, None)]
        assert gap.seq in seen
        await j.append(readings(10, 60_000, ts=clock.now_ns()))
        await cloud.commit(j.next_seq)
        start = j._tail_start
        assert j._cached(start, 100, None)
        clock.advance(7200)  # every entry too old and passed by the cursor: retired, no gap event
        next_seq = j.next_seq
        await j.retain()
        assert j.next_seq == next_seq and j.stats().entries == 0
        assert await j.read(start, 100) == [] == await sqlite_read(j, start, 100, None)
        await j.append(readings(5, 70_000, ts=clock.now_ns()))
        assert await j.read(0, 100_000) == await sqlite_read(j, 0, 100_000, None)
        assert [e.seq for e in j._tail] == list(range(next_seq, next_seq + 5))


async def _take(stream: AsyncIterator[list[Entry]], end: int) -> AsyncIterator[Entry]:
    """The entries of ``stream`` up to seq ``end``."""
    async for batch in stream:
        for e in batch:
            yield e
        if batch[-1].seq + 1 >= end:
            return


async def test_a_stream_at_the_tail_with_retention_running_skips_no_stored_entry(tmp_path: Path) -> None:
    """Appends, retention passes that drop and retire, and a consumer at the tail, all at once: the
    consumer sees every entry still stored at the end, in order, each with SQLite's exact bytes."""
    rng = random.Random(9)
    cfg = JournalConfig(max_bytes=2 << 20)
    async with Journal.open(tmp_path / "j.sqlite3", cfg, clock=SystemClock()) as j:
        cloud = await j.cursor("cloud")
        seen: list[Entry] = []
        done = asyncio.Event()

        async def consume() -> None:
            async for batch in j.stream(0, batch=rng.choice([50, 500, 5000])):
                seen.extend(batch)
                last = batch[-1]
                if last.kind is EntryKind.EVENT and last.event().kind == "last":
                    return

        async def retain() -> None:
            rounds = 0
            while not done.is_set():
                rounds += 1
                if rounds % 4 == 0:  # mostly behind: retention drops readings it has not passed
                    await cloud.commit(rng.randint(cloud.position, j.next_seq))
                await j.retain()
                await asyncio.sleep(rng.uniform(0, 0.02))

        async with asyncio.TaskGroup() as tg:
            consumer = tg.create_task(consume())
            tg.create_task(retain())
            for i in range(150):
                await j.append(readings(rng.randint(100, 800), i * 1000))
                if i % 50 == 49:  # the cursor catches up: the next pass retires
                    await cloud.commit(j.next_seq)
                if i % 10 == 9:  # a pass of our own too, so both kinds of removal happen on any machine
                    await j.retain()
                if i % 7 == 0:
                    await j.append_events([Event(kind="note", source="t", ts=1)])
            done.set()  # the retention task stops moving the cursor (it may finish the pass it is in)
            await asyncio.sleep(0.05)
            for i in range(150, 175):  # ~2.9 MB the cursor has not passed: this pass must drop, on any machine
                await j.append(readings(800, i * 1000))
            await j.retain()
            await j.append_events([Event(kind="last", source="t", ts=1)])
            async with asyncio.timeout(30):
                await consumer
        assert j.stats().dropped > 0 and j.stats().retired > 0
        seqs = [e.seq for e in seen]
        assert seqs == sorted(set(seqs))
        by_seq = {e.seq: e for e in seen}
        last = seen[-1].seq  # a retention pass may journal a gap event after the consumer stopped
        stored = [e for e in await sqlite_read(j, 0, 1_000_000, None) if e.seq <= last]
        assert all(by_seq.get(e.seq) == e for e in stored), "a stored entry was skipped or differs"
