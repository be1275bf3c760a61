"""Journal behaviour on a real SQLite file: commits, cursors, streams, retention."""

from __future__ import annotations

import asyncio
import os
import stat
from pathlib import Path

import pytest

from avila_edge.config.model import JournalConfig
from avila_edge.core import Event, JournalError, ManualClock, Reading, SystemClock
from avila_edge.journal import EntryKind, Journal


def readings(n: int, *, start: int = 0, ts: int = 1, point: str = "pump1/flow") -> list[Reading]:
    return [Reading(point=point, value=float(start + i), ts_source=ts, ts_gateway=ts) for i in range(n)]


async def test_append_assigns_dense_seqs_from_zero_and_survives_reopen(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite3"
    async with Journal.open(path, JournalConfig(), clock=SystemClock()) as j:
        first = await j.append(readings(3))
        second = await j.append(readings(2, start=3))
        assert [r.seq for r in first + second] == [0, 1, 2, 3, 4]
        assert j.next_seq == 5
    async with Journal.open(path, JournalConfig(), clock=SystemClock()) as j:
        assert j.next_seq == 5
        again = await j.append(readings(1, start=5))
        assert again[0].seq == 5
        entries = await j.read(0, 100)
        assert [e.reading().value for e in entries] == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]


async def test_database_file_is_private_to_the_gateway_user(tmp_path: Path) -> None:
    path = tmp_path / "state" / "j.sqlite3"
    async with Journal.open(path, JournalConfig(), clock=SystemClock()) as j:
        await j.append(readings(1))
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


async def test_by_default_each_commit_is_synced_to_disk_so_a_power_cut_loses_nothing_accepted(tmp_path: Path) -> None:
    def mode(j: Journal) -> int:
        row = j._writer_store().conn.execute("PRAGMA synchronous").fetchone()
        return int(row[0])

    async with Journal.open(tmp_path / "j.sqlite3", JournalConfig(), clock=SystemClock()) as j:
        assert await j._run_writer(mode, j) == 2  # FULL: the WAL is synced at every commit


async def test_concurrent_appends_share_group_commits(tmp_path: Path) -> None:
    async with Journal.open(tmp_path / "j.sqlite3", JournalConfig(), clock=SystemClock()) as j:
        results = await asyncio.gather(*(j.append(readings(10, start=i * 10)) for i in range(200)))
        seqs = sorted(r.seq for batch in results for r in batch if r.seq is not None)
        assert seqs == list(range(2000))
        assert j.stats().commits < 200


async def test_stream_yields_history_then_new_commits(tmp_path: Path) -> None:
    async with Journal.open(tmp_path / "j.sqlite3", JournalConfig(), clock=SystemClock()) as j:
        await j.append(readings(5))
        seen: list[int] = []

        async def consume() -> None:
            async for batch in j.stream(2, batch=2):
                seen.extend(e.seq for e in batch)
                if len(seen) >= 6:
                    return

        task = asyncio.create_task(consume())
        await asyncio.sleep(0.05)
        await j.append(readings(3, start=5))
        async with asyncio.timeout(5):
            await task
        assert seen == [2, 3, 4, 5, 6, 7]


async def test_cursor_position_persists_and_only_moves_forward(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite3"
    async with Journal.open(path, JournalConfig(), clock=SystemClock()) as j:
        await j.append(readings(10))
        c = await j.cursor("uplink")
        assert c.position == 0 and c.lag == 10
        await c.commit(7)
        with pytest.raises(ValueError, match="behind"):
            await c.commit(3)
        with pytest.raises(ValueError, match="past the journal end"):
            await c.commit(11)
    async with Journal.open(path, JournalConfig(), clock=SystemClock()) as j:
        c = await j.cursor("uplink")
        assert c.position == 7 and c.lag == 3
        latest = await j.cursor("new", start="latest")
        assert latest.position == 10


async def test_commit_hook_runs_inside_the_transaction_and_a_failure_rolls_back(tmp_path: Path) -> None:
    seen: list[int] = []
    fail = {"now": False}

    def hook(conn: object, entries: object) -> None:
        if fail["now"]:
            raise RuntimeError("hook refused")
        seen.extend(e.seq for e in entries)  # type: ignore[attr-defined]

    async with Journal.open(tmp_path / "j.sqlite3", JournalConfig(), clock=SystemClock()) as j:
        j.add_commit_hook(hook)
        await j.append(readings(2))
        fail["now"] = True
        with pytest.raises(JournalError):
            await j.append(readings(2))
        fail["now"] = False
        again = await j.append(readings(1))
        assert again[0].seq == 2
        assert seen == [0, 1, 2]
        assert [e.seq for e in await j.read(0)] == [0, 1, 2]


async def test_retention_by_bytes_retires_consumed_entries_silently(tmp_path: Path) -> None:
    cfg = JournalConfig(max_bytes=1 << 20)
    async with Journal.open(tmp_path / "j.sqlite3", cfg, clock=SystemClock()) as j:
        for i in range(20):
            await j.append(readings(1000, start=i * 1000))
        await j.retain()
        s = j.stats()
        assert s.bytes <= cfg.max_bytes
        assert s.retired > 0 and s.dropped == 0 and s.gaps == 0
        assert s.first_seq > 0 and s.next_seq == 20_000


async def test_retention_drops_unsynced_readings_oldest_first_records_a_gap_and_keeps_events(tmp_path: Path) -> None:
    cfg = JournalConfig(max_bytes=1 << 20)
    async with Journal.open(tmp_path / "j.sqlite3", cfg, clock=SystemClock()) as j:
        cursor = await j.cursor("cloud")
        alarm = await j.append_events([Event(kind="alarm", source="pump1", ts=1, attrs={"level": "high"})])
        for i in range(20):
            await j.append(readings(1000, start=i * 1000))
        await j.retain()
        s = j.stats()
        assert s.bytes <= cfg.max_bytes
        assert s.dropped > 0 and s.gaps >= 1 and s.retired == 0
        events = [e.event() for e in await j.read(0, 100_000, kinds=[EntryKind.EVENT])]
        assert events[0] == alarm[0]
        gaps = [e for e in events if e.kind == "gap"]
        dropped = sum(g.attrs["count"] for g in gaps)
        assert dropped == s.dropped
        assert gaps[0].attrs["first_seq"] == 1 and gaps[0].attrs["cursors"] == ["cloud"]
        remaining = [e.seq for e in await j.read(0, 100_000, kinds=[EntryKind.READING])]
        covered = {s for g in gaps for s in range(g.attrs["first_seq"], g.attrs["last_seq"] + 1)}
        assert set(range(1, 20_001)) == covered | set(remaining)
        assert cursor.position == 0


async def test_the_entry_count_stays_equal_to_the_file_through_retirement_drops_gaps_and_reopen(
    tmp_path: Path,
) -> None:
    """The count is kept as entries come and go (no table scan per retention pass), so it must match
    a COUNT(*) of the file after retiring by age, retiring by bytes, dropping unsynced readings with
    their gap events, and reopening."""
    import sqlite3

    def counted(path: Path) -> int:
        with sqlite3.connect(path) as conn:
            return int(conn.execute("SELECT COUNT(*) FROM entry").fetchone()[0])

    clock = ManualClock()
    path = tmp_path / "j.sqlite3"
    cfg = JournalConfig(max_bytes=1 << 20, max_age=3600)
    async with Journal.open(path, cfg, clock=clock) as j:
        await j.append(readings(500, ts=clock.now_ns()))
        clock.advance(7200)
        await j.retain()  # age: 500 retired
        assert j.stats().retired == 500 and j.stats().entries == counted(path) == 0
        now = clock.now_ns()
        for i in range(10):
            await j.append(readings(1000, start=i * 1000, ts=now))
        await j.retain()  # bytes, nothing behind a cursor: retired silently
        assert j.stats().retired > 500 and j.stats().entries == counted(path)
        cloud = await j.cursor("cloud", start="latest")
        for i in range(20):
            await j.append(readings(1000, start=i * 1000, ts=now))
            await j.append_events([Event(kind="note", source="t", ts=now, attrs={"i": i})])
        await j.retain()  # bytes, all ahead of the cursor: readings dropped, gap events written
        s = j.stats()
        assert s.dropped > 0 and s.gaps >= 1 and cloud.position > 0
        assert s.entries == counted(path)
        entries = s.entries
    async with Journal.open(path, cfg, clock=clock) as j:
        assert j.stats().entries == entries == counted(path)


async def test_retention_by_age_retires_only_old_entries(tmp_path: Path) -> None:
    clock = ManualClock()
    old = clock.now_ns()
    async with Journal.open(tmp_path / "j.sqlite3", JournalConfig(max_age=3600), clock=clock) as j:
        await j.append(readings(5, ts=old))
        clock.advance(7200)
        await j.append(readings(3, ts=clock.now_ns()))
        await j.retain()
        assert [e.seq for e in await j.read(0)] == [5, 6, 7]
        assert j.stats().retired == 5


async def test_journal_full_when_only_events_remain(tmp_path: Path) -> None:
    cfg = JournalConfig(max_bytes=1 << 20)
    async with Journal.open(tmp_path / "j.sqlite3", cfg, clock=SystemClock()) as j:
        await j.cursor("cloud")
        big = "x" * 2000
        for _ in range(80):
            await j.append_events([Event(kind="note", source="t", ts=1, attrs={"text": big}) for _ in range(10)])
        await j.retain()
        from avila_edge.core import JournalFull

        with pytest.raises(JournalFull):
            await j.append(readings(1))


async def test_age_retention_retires_a_prefix_even_when_the_clock_stepped_back(tmp_path: Path) -> None:
    clock = ManualClock()
    t = clock.now_ns()
    async with Journal.open(tmp_path / "j.sqlite3", JournalConfig(max_age=3600), clock=clock) as j:
        await j.append(readings(2, ts=t))
        await j.append(readings(1, ts=t + 7200 * 10**9))  # a clock that was ahead ...
        await j.append(readings(2, ts=t))  # ... then stepped back
        clock.advance(3700)
        await j.retain()
        assert [e.seq for e in await j.read(0)] == [2, 3, 4]  # seqs 0-1 retired; no hole above first_seq


async def test_a_failed_retention_commit_does_not_skip_seqs(tmp_path: Path) -> None:
    cfg = JournalConfig(max_bytes=1 << 20)
    async with Journal.open(tmp_path / "j.sqlite3", cfg, clock=SystemClock()) as j:
        await j.cursor("cloud")
        for i in range(20):
            await j.append(readings(1000, start=i * 1000))
        before = j.next_seq

        def refuse(conn: object, entries: object) -> None:
            raise RuntimeError("disk full")

        j._writer_store().hooks.append(refuse)
        await j.retain()  # the gap event cannot commit: nothing may change
        j._writer_store().hooks.clear()
        assert j.next_seq == before
        assert j.stats().dropped == 0
        (after,) = await j.append(readings(1))
        assert after.seq == before
