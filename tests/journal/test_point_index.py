"""The per-point index is kept in batches below a watermark (``point_index``, ``meta.indexed_seq``);
history, buckets and the newest readings must be exactly what the old per-commit index
``entry_by_point`` gave, at every watermark position, after retention, after kill -9 and after
migrating a journal written with the old schema. Compared against the old queries run as full scans
(or, for the migration, against the old index itself) and against plain Python over every row."""

from __future__ import annotations

import asyncio
import itertools
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from avila_edge.config.model import JournalConfig
from avila_edge.core import Event, ManualClock, Quality, Reading, SystemClock
from avila_edge.journal import Entry, Journal, encode_event, encode_reading
from avila_edge.journal._store import INDEX_BATCH, ReaderStore

S = 1_000_000_000
CHILD = Path(__file__).with_name("index_child.py")

OLD_SCHEMA = """
CREATE TABLE IF NOT EXISTS entry (
    seq INTEGER PRIMARY KEY,
    kind INTEGER NOT NULL,
    point_id INTEGER,
    ts INTEGER NOT NULL,
    body BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS entry_by_point ON entry(point_id, seq) WHERE point_id IS NOT NULL;
CREATE TABLE IF NOT EXISTS point (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS cursor (name TEXT PRIMARY KEY, position INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO meta(key, value) VALUES ('next_seq', 0), ('retired', 0), ('dropped', 0), ('gaps', 0);
"""
"""The schema of journals written before ``point_index`` (verbatim)."""

OLD_LATEST = """
SELECT e.seq, e.kind, e.point_id, e.ts, e.body FROM entry e
JOIN (SELECT point_id, MAX(seq) AS seq FROM entry WHERE point_id IS NOT NULL GROUP BY point_id) m ON e.seq = m.seq
ORDER BY e.seq
"""
OLD_HISTORY = (
    "SELECT seq, kind, point_id, ts, body FROM entry WHERE point_id=? AND seq >= ? AND seq < ? "
    "AND ts >= ? AND ts < ? ORDER BY seq LIMIT ?"
)
OLD_BUCKETS = (
    "SELECT (ts - ?) / ? AS b, COUNT(v), MIN(v), MAX(v), AVG(v) FROM ("
    " SELECT ts, json_extract(CAST(body AS TEXT), '$.value') AS v,"
    " json_extract(CAST(body AS TEXT), '$.quality') AS q FROM entry"
    " WHERE point_id=? AND seq >= ? AND seq < ? AND ts >= ? AND ts < ?)"
    " WHERE q != 'bad' AND typeof(v) IN ('integer', 'real') GROUP BY b ORDER BY b"
)
"""The old ``ReaderStore`` queries, verbatim: on a journal without ``entry_by_point`` they scan
``entry`` by seq, so they are the brute-force answer."""

Row = tuple[int, int, int | None, int, bytes]
Query = tuple[str, int, int, int, int]


class Old:
    """The old reader, on its own read-only connection to the same file."""

    def __init__(self, path: Path) -> None:
        self.store = ReaderStore(path)  # for seq_at, unchanged
        self.conn = self.store.conn

    def close(self) -> None:
        self.store.close()

    def _pid(self, point: str) -> int | None:
        row = self.conn.execute("SELECT id FROM point WHERE name=?", (point,)).fetchone()
        return None if row is None else int(row[0])

    def history(self, point: str, start_ns: int, end_ns: int, limit: int) -> list[Row]:
        pid = self._pid(point)
        if pid is None:
            return []
        first, last = self.store.seq_at(start_ns), self.store.seq_at(end_ns)
        return [
            (s, k, p, t, bytes(b))
            for s, k, p, t, b in self.conn.execute(OLD_HISTORY, (pid, first, last, start_ns, end_ns, limit))
        ]

    def buckets(self, point: str, start_ns: int, end_ns: int, width: int) -> list[tuple[int, int, float, float, float]]:
        pid = self._pid(point)
        if pid is None:
            return []
        first, last = self.store.seq_at(start_ns), self.store.seq_at(end_ns)
        rows = self.conn.execute(OLD_BUCKETS, (start_ns, width, pid, first, last, start_ns, end_ns)).fetchall()
        return [(start_ns + int(b) * width, int(n), float(lo), float(hi), float(m)) for b, n, lo, hi, m in rows]

    def latest(self) -> list[Row]:
        return [(s, k, p, t, bytes(b)) for s, k, p, t, b in self.conn.execute(OLD_LATEST)]


def rows_of(entries: Sequence[Entry], names: dict[str, int]) -> list[Row]:
    return [(e.seq, int(e.kind), None if e.point is None else names[e.point], e.ts, e.body) for e in entries]


def check_index(path: Path) -> int:
    """``point_index`` holds exactly the stored readings below the watermark, each in a batch that
    starts at or below its seq, batches not overlapping. Returns the watermark."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        (indexed,) = conn.execute("SELECT value FROM meta WHERE key='indexed_seq'").fetchone()
        (next_seq,) = conn.execute("SELECT value FROM meta WHERE key='next_seq'").fetchone()
        assert 0 <= indexed <= next_seq
        index = conn.execute("SELECT batch, point_id, seq FROM point_index").fetchall()
        wanted = set(conn.execute("SELECT point_id, seq FROM entry WHERE point_id IS NOT NULL AND seq < ?", (indexed,)))
        assert {(p, s) for _, p, s in index} == wanted
        assert len(index) == len(wanted)
        assert all(b <= s for b, _, s in index)
        spans: dict[int, tuple[int, int]] = {}
        for b, _, s in index:
            lo, hi = spans.get(b, (s, s))
            spans[b] = (min(lo, s), max(hi, s))
        ordered = sorted(spans.items())
        for (_, (_, hi)), (b2, _) in itertools.pairwise(ordered):
            assert hi < b2, "index batches overlap"
        assert conn.execute("SELECT 1 FROM sqlite_master WHERE name='entry_by_point'").fetchone() is None
        return int(indexed)
    finally:
        conn.close()


def point_ids(path: Path) -> dict[str, int]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return {name: int(pid) for pid, name in conn.execute("SELECT id, name FROM point")}
    finally:
        conn.close()


def python_latest(path: Path) -> list[Row]:
    """The newest stored reading per point, by plain Python over every row."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        newest: dict[int, Row] = {}
        for s, k, p, t, b in conn.execute("SELECT seq, kind, point_id, ts, body FROM entry ORDER BY seq"):
            if p is not None:
                newest[p] = (s, k, p, t, bytes(b))
        return sorted(newest.values())
    finally:
        conn.close()


def random_queries(rng: random.Random, points: Sequence[str], t0: int, t1: int, n: int) -> list[Query]:
    out = []
    t0, t1 = min(t0, t1), max(t0, t1)
    for _ in range(n):
        a, b = sorted(rng.randint(t0 - 5 * S, t1 + 5 * S) for _ in range(2))
        out.append((rng.choice([*points, "no/such"]), a, b + 1, rng.choice([1, 3, 50, 10_000]), rng.choice([S, 7 * S])))
    return out


async def compare(j: Journal, queries: Sequence[Query]) -> int:
    """Every query answered by the journal equals the old queries' full-scan answer; returns how many
    history rows were compared (so a test can see it compared something)."""
    path = j.path
    old = Old(path)
    compared = 0
    try:
        names = point_ids(path)
        for point, start, end, limit, width in queries:
            got = await j.history(point, start, end, limit=limit)
            want = old.history(point, start, end, limit)
            assert [(r.seq, r.point, r.ts_gateway) for r in got] == [(s, point, t) for s, _, _, t, _ in want]
            assert [encode_reading(r, r.seq or 0) for r in got] == [b for *_, b in want]
            compared += len(want)
            buckets = await j.history_buckets(point, start, end, width)
            assert [(b.start_ns, b.count, b.min, b.max, b.mean) for b in buckets] == old.buckets(
                point, start, end, width
            )
        latest = await j.latest_readings()
        want_latest = old.latest()
        assert want_latest == python_latest(path)
        assert [(r.seq, names[r.point], r.ts_gateway) for r in latest] == [(s, p, t) for s, _, p, t, _ in want_latest]
        reader = j._reader
        assert reader is not None
        assert rows_of(await j._run_reader(reader.latest), names) == want_latest
    finally:
        old.close()
    return compared


def value(rng: random.Random, i: int) -> tuple[float | int | bool | str | None, Quality]:
    roll = rng.random()
    if roll < 0.05:
        return None, Quality.BAD
    if roll < 0.08:
        return "text", Quality.GOOD
    if roll < 0.12:
        return rng.randint(-(10**12), 10**12), Quality.UNCERTAIN
    if roll < 0.14:
        return rng.random() < 0.5, Quality.GOOD
    return rng.uniform(-1e6, 1e6) * 10 ** rng.randint(-8, 8), Quality.GOOD  # sums depend on their order


def batch(rng: random.Random, points: Sequence[str], n: int, ts: int, start: int) -> list[Reading]:
    out = []
    for i in range(n):
        v, q = value(rng, start + i)
        reason = "" if q is Quality.GOOD else "timeout"
        point = rng.choice(points)
        out.append(Reading(point=point, value=v, quality=q, reason=reason, ts_source=ts, ts_gateway=ts + i))
    return out


POINTS = [f"pump{a}/p{p}" for a in range(3) for p in range(5)]


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_queries_match_a_full_scan_at_every_watermark(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    clock = ManualClock()
    t0 = clock.now_ns()
    ts, compared = t0, 0
    async with Journal.open(tmp_path / "j.sqlite3", JournalConfig(), clock=clock) as j:
        writer = j._writer_store()
        writer.index_every = 10**9  # the test moves the watermark itself
        for step in range(30):
            for _ in range(rng.randint(1, 4)):
                n = rng.randint(1, 60)
                await j.append(batch(rng, POINTS[: rng.randint(2, len(POINTS))], n, ts, j.next_seq))
                ts += rng.randint(0, 3) * S if rng.random() > 0.1 else -rng.randint(1, 20) * S  # clock steps back
                if rng.random() < 0.3:
                    await j.append_events([Event(kind="note", source="test", ts=ts)])
            if step % 3:  # the watermark anywhere between where it is and the last commit
                upto = rng.randint(writer.indexed_seq, j.next_seq)
                assert await j._run_writer(writer.index, upto) == upto
            assert check_index(j.path) == writer.indexed_seq
            compared += await compare(j, random_queries(rng, POINTS, t0, ts, 12))
        assert 0 < writer.indexed_seq < j.next_seq or writer.indexed_seq == j.next_seq
        await j._run_writer(writer.index)
        assert check_index(j.path) == j.next_seq
        compared += await compare(j, random_queries(rng, POINTS, t0, ts, 20))
    assert compared > 500


async def test_appends_keep_the_tail_short_and_never_run_the_commit_hook_for_index_batches(tmp_path: Path) -> None:
    seen: list[int] = []
    async with Journal.open(tmp_path / "j.sqlite3", JournalConfig(), clock=SystemClock()) as j:
        j.add_commit_hook(lambda conn, entries: seen.extend(e.seq for e in entries))
        writer = j._writer_store()
        writer.index_every = 500
        for i in range(40):
            await j.append(
                [Reading(point=f"a/p{k % 9}", value=float(i), ts_source=1, ts_gateway=1) for k in range(100)]
            )
            assert writer.tail() < 500 + 100
        assert writer.indexed_seq > 3000
        assert seen == list(range(4000))  # every entry exactly once, in its own commit: nothing else
        await j._run_writer(lambda: None)  # after the index batch the last commit started, if any
        assert check_index(j.path) == writer.indexed_seq
        got = await j.history("a/p3", 0, 10)
        assert [r.seq for r in got] == [s for s in range(4000) if s % 100 % 9 == 3]


async def test_retention_keeps_the_index_exact(tmp_path: Path) -> None:
    rng = random.Random(7)
    clock = ManualClock()
    t0 = clock.now_ns()
    cfg = JournalConfig(max_bytes=1 << 20, max_age=600)
    async with Journal.open(tmp_path / "j.sqlite3", cfg, clock=clock) as j:
        writer = j._writer_store()
        writer.index_every = 10**9
        cloud = await j.cursor("cloud")
        ts = t0
        for round_ in range(12):
            for _ in range(6):
                await j.append(batch(rng, POINTS, 400, ts, j.next_seq))
                ts += 20 * S if rng.random() > 0.1 else -100 * S
                clock.advance(20)
            await j.append_events([Event(kind="note", source="test", ts=ts, attrs={"round": round_})])
            await j._run_writer(writer.index, rng.randint(writer.indexed_seq, j.next_seq))
            if round_ % 3 == 0:  # the cursor moves on: retention retires some, drops the rest
                await cloud.commit(rng.randint(cloud.position, j.next_seq))
            await j.retain()
            assert check_index(j.path) == writer.indexed_seq
            await compare(j, random_queries(rng, POINTS, t0, ts, 8))
        s = j.stats()
        assert s.retired > 0 and s.dropped > 0, s  # both kinds of removal happened
        assert j.first_seq > 0
        await j._run_writer(writer.index)
        await j.retain()
        assert check_index(j.path) == j.next_seq
        await compare(j, random_queries(rng, POINTS, t0, ts, 12))


@pytest.mark.slow
def test_kill_9_leaves_the_index_exactly_at_its_watermark(tmp_path: Path) -> None:
    db = tmp_path / "journal.sqlite3"
    rng = random.Random(20261202)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    watermarks = set()
    for _ in range(15):
        child = subprocess.Popen([sys.executable, str(CHILD), str(db)], stdout=subprocess.PIPE, text=True, env=env)
        assert child.stdout is not None
        assert child.stdout.readline(), "child did not start ingesting"
        time.sleep(rng.uniform(0.0, 0.4))
        child.send_signal(signal.SIGKILL)
        child.communicate(timeout=30)
        watermarks.add(check_index(db))
    assert len(watermarks) > 5  # killed at many different watermarks, each time exactly consistent

    async def reopen() -> None:
        rng2 = random.Random(3)
        async with Journal.open(db, JournalConfig(), clock=SystemClock()) as j:
            assert check_index(db) < j.next_seq or j._writer_store().tail() == 0
            first = (await j.read(0, 1))[0].ts
            points = [f"pump1/p{k}" for k in range(7)]
            await compare(j, random_queries(rng2, points, first, time.time_ns(), 15))
            await j._run_writer(j._writer_store().index)
            assert check_index(db) == j.next_seq
            await compare(j, random_queries(rng2, points, first, time.time_ns(), 15))

    asyncio.run(reopen())


def write_old_journal(path: Path, rng: random.Random, n: int) -> None:
    """A journal as the old schema wrote it: readings and events, a cursor, a retired prefix."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.executescript(OLD_SCHEMA)
    names: dict[str, int] = {}
    ts = 1_760_000_000 * S
    conn.execute("BEGIN")
    for seq in range(n):
        ts += rng.randint(0, 2) * S
        if seq % 97 == 5:
            conn.execute(
                "INSERT INTO entry VALUES (?,?,?,?,?)",
                (seq, 1, None, ts, encode_event(Event(kind="note", source="t", ts=ts), seq)),
            )
            continue
        point = rng.choice(POINTS)
        if point not in names:
            names[point] = int(conn.execute("INSERT INTO point(name) VALUES (?)", (point,)).lastrowid or 0)
        v, q = value(rng, seq)
        r = Reading(
            point=point, value=v, quality=q, reason="" if q is Quality.GOOD else "x", ts_source=ts, ts_gateway=ts
        )
        conn.execute("INSERT INTO entry VALUES (?,?,?,?,?)", (seq, 0, names[point], ts, encode_reading(r, seq)))
    conn.execute("UPDATE meta SET value=? WHERE key='next_seq'", (n,))
    conn.execute("INSERT INTO cursor VALUES ('cloud', ?)", (n // 2,))
    conn.execute("DELETE FROM entry WHERE seq < 300")
    conn.execute("UPDATE meta SET value=300 WHERE key='retired'")
    conn.execute("COMMIT")
    conn.close()


async def test_a_journal_with_the_old_schema_is_migrated_and_answers_as_before(tmp_path: Path) -> None:
    rng = random.Random(11)
    path = tmp_path / "journal.sqlite3"
    n = INDEX_BATCH * 2 + 1234  # the migration cuts its catch-up into several batches
    write_old_journal(path, rng, n)
    before = tmp_path / "before.sqlite3"
    shutil.copy(path, before)  # keeps entry_by_point: the old queries run on the old index itself
    t0, t1 = 1_760_000_000 * S, 1_760_000_000 * S + 2 * n * S
    queries = random_queries(rng, POINTS, t0, t1, 30)
    old = Old(before)
    plans = old.conn.execute("EXPLAIN QUERY PLAN " + OLD_HISTORY, (1, 0, 1, 0, 1, 1)).fetchall()
    assert "entry_by_point" in str(plans)
    want = [(q, old.history(q[0], q[1], q[2], q[3]), old.buckets(q[0], q[1], q[2], q[4])) for q in queries]
    want_latest = old.latest()
    old.close()
    async with Journal.open(path, JournalConfig(), clock=ManualClock()) as j:
        assert check_index(path) == n == j.next_seq
        assert (await j.cursor("cloud")).position == n // 2 and j.first_seq == 300
        names = point_ids(path)
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        (batches,) = conn.execute("SELECT COUNT(DISTINCT batch) FROM point_index").fetchone()
        conn.close()
        assert batches == 3
        for (point, start, end, limit, width), history, buckets in want:
            got = await j.history(point, start, end, limit=limit)
            assert [(r.seq, names[r.point], r.ts_gateway) for r in got] == [(s, p, t) for s, _, p, t, _ in history]
            got_buckets = await j.history_buckets(point, start, end, width)
            assert [(b.start_ns, b.count, b.min, b.max, b.mean) for b in got_buckets] == buckets
        reader = j._reader
        assert reader is not None
        assert rows_of(await j._run_reader(reader.latest), names) == want_latest
        more = await j.append(batch(rng, POINTS, 50, t1, n))
        assert [r.seq for r in more] == list(range(n, n + 50))
        await compare(j, queries)
    async with Journal.open(path, JournalConfig(), clock=ManualClock()) as j:  # a second open migrates nothing
        assert check_index(path) == j._writer_store().indexed_seq >= n  # (a retention pass may have indexed more)
        await compare(j, queries)


async def test_a_journal_an_older_version_wrote_to_again_is_indexed_afresh(tmp_path: Path) -> None:
    """Opened by an older version after this one (it adds entry_by_point, appends and retires
    without touching point_index), then by this one again: the index is rebuilt, not trusted."""
    rng = random.Random(5)
    path = tmp_path / "journal.sqlite3"
    async with Journal.open(path, JournalConfig(), clock=ManualClock()) as j:
        await j.append(batch(rng, POINTS, 500, 1, 0))
        await j._run_writer(j._writer_store().index)
    names = point_ids(path)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.executescript(OLD_SCHEMA)  # what the older version runs on open
    conn.execute("BEGIN")
    conn.execute("DELETE FROM entry WHERE seq < 100")
    for seq in range(500, 600):
        point = sorted(names)[seq % 4]
        r = Reading(point=point, value=float(seq), ts_source=2, ts_gateway=2)
        conn.execute("INSERT INTO entry VALUES (?,?,?,?,?)", (seq, 0, names[point], 2, encode_reading(r, seq)))
    conn.execute("UPDATE meta SET value=600 WHERE key='next_seq'")
    conn.execute("COMMIT")
    conn.close()
    async with Journal.open(path, JournalConfig(), clock=ManualClock()) as j:
        assert check_index(path) == 600 == j.next_seq
        await compare(j, random_queries(rng, POINTS, 0, 3, 20))
