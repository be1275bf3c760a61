"""Journal: batched appends per second versus raw sqlite3 executemany of the same rows, bytes per reading;
a cursor's read at the tail (served from the tail cache) versus the same read on the reader thread."""

from __future__ import annotations

import sqlite3
import tempfile
import time
from pathlib import Path

from avila_edge.config.model import JournalConfig
from avila_edge.core import Reading, SystemClock
from avila_edge.journal import EntryKind, Journal, encode_reading
from bench._table import Row

BATCH = 1000


def _readings(start: int) -> list[Reading]:
    now = time.time_ns()
    return [
        Reading(point=f"pump{i % 10}/p{i % 50}", value=float(start + i), ts_source=now, ts_gateway=now)
        for i in range(BATCH)
    ]


def _raw(path: Path, seconds: float) -> float:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={JournalConfig().synchronous.value}")  # as the journal under test
    conn.execute("CREATE TABLE entry(seq INTEGER PRIMARY KEY, kind INTEGER, point_id INTEGER, ts INTEGER, body BLOB)")
    n, seq, started = 0, 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        rows = []
        for r in _readings(seq):
            rows.append((seq, 0, hash(r.point) & 0xFFFF, r.ts_gateway, encode_reading(r, seq)))
            seq += 1
        conn.execute("BEGIN")
        conn.executemany("INSERT INTO entry VALUES (?,?,?,?,?)", rows)
        conn.execute("COMMIT")
        n += BATCH
    elapsed = time.perf_counter() - started
    conn.close()
    return n / elapsed


async def _tail_reads(journal: Journal, seconds: float) -> tuple[float, float, float, float]:
    """A cursor at the tail reading each commit's readings: µs CPU per entry and µs wall per read,
    through ``Journal.read`` (the tail cache) and on the reader thread (SQLite), alternately."""
    reader = journal._reader
    assert reader is not None
    kinds = (EntryKind.READING,)
    cpu, wall, n = [0.0, 0.0], [0.0, 0.0], 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        position = journal.next_seq
        await journal.append(_readings(position))
        await journal._run_writer(lambda: None)  # the writer idle (an index batch may follow a commit)
        for i in (0, 1):
            c, w = time.process_time(), time.perf_counter()
            if i == 0:
                entries = await journal.read(position, BATCH, kinds=kinds)
            else:
                entries = await journal._run_reader(reader.read, position, BATCH, kinds)
            cpu[i] += time.process_time() - c
            wall[i] += time.perf_counter() - w
            assert len(entries) == BATCH
        n += 1
    return cpu[0] / n / BATCH * 1e6, cpu[1] / n / BATCH * 1e6, wall[0] / n * 1e6, wall[1] / n * 1e6


async def run(seconds: float) -> list[Row]:
    with tempfile.TemporaryDirectory() as tmp:
        raw = _raw(Path(tmp) / "raw.sqlite3", seconds)
        async with Journal.open(Path(tmp) / "j.sqlite3", JournalConfig(), clock=SystemClock()) as journal:
            n, started = 0, time.perf_counter()
            while time.perf_counter() - started < seconds:
                await journal.append(_readings(n))
                n += BATCH
            elapsed = time.perf_counter() - started
            stats = journal.stats()
            cached_cpu, sqlite_cpu, cached_wall, sqlite_wall = await _tail_reads(journal, seconds)
    return [
        Row("journal", f"appends, {BATCH} readings per append", n / elapsed, "readings/s", raw,
            "sqlite3 executemany, same rows"),
        Row("journal", "bytes per reading on disk", stats.bytes / max(stats.entries, 1), "B"),
        Row("journal", f"read at the tail, {BATCH} per read, per entry", cached_cpu, "µs CPU", sqlite_cpu,
            "the same read on the reader thread"),
        Row("journal", f"read at the tail, {BATCH} per read, latency", cached_wall, "µs", sqlite_wall,
            "the same read on the reader thread"),
    ]  # fmt: skip
