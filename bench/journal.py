"""Journal: batched appends per second versus raw sqlite3 executemany of the same rows, bytes per reading."""

from __future__ import annotations

import sqlite3
import tempfile
import time
from pathlib import Path

from avila_edge.config.model import JournalConfig
from avila_edge.core import Reading, SystemClock
from avila_edge.journal import Journal, encode_reading
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
    return [
        Row("journal", f"appends, {BATCH} readings per append", n / elapsed, "readings/s", raw,
            "sqlite3 executemany, same rows"),
        Row("journal", "bytes per reading on disk", stats.bytes / max(stats.entries, 1), "B"),
    ]  # fmt: skip
