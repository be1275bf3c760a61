"""SQLite side of the journal. Every method runs on a worker thread that owns its connection."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import sqlite3
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from avila_edge.core import Event, JournalError, Reading
from avila_edge.journal._encoding import Entry, EntryKind, encode_event, encode_reading

logger = logging.getLogger(__name__)

CommitHook = Callable[[sqlite3.Connection, Sequence[Entry]], None]
RemovalHook = Callable[[sqlite3.Connection, int, int], None]
"""Called inside a retention transaction with the lowest and highest seq it removed."""

SCHEMA = """
CREATE TABLE IF NOT EXISTS entry (
    seq INTEGER PRIMARY KEY,
    kind INTEGER NOT NULL,
    point_id INTEGER,
    ts INTEGER NOT NULL,
    body BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS point_index (
    batch INTEGER NOT NULL,
    point_id INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    PRIMARY KEY (batch, point_id, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS point (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS cursor (name TEXT PRIMARY KEY, position INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO meta(key, value) VALUES
    ('next_seq', 0), ('retired', 0), ('dropped', 0), ('gaps', 0), ('indexed_seq', 0);
"""
"""The journal's tables. ``point_index`` is derived data, the per-point history index: every reading
with a seq below ``meta.indexed_seq`` (the watermark) has its row ``(batch, point_id, seq)``, no other
row is there, and both change in the same transaction. It is filled in batches, not per commit (see
``WriterStore.index``): ``batch`` is the first seq of the indexing batch the row was written by, so a
batch's rows are appended at the right edge of the tree, sorted by point within the batch, and a
point's readings are found with one seek per batch. Readings at or above the watermark (the tail, a
few thousand at most) are found by scanning ``entry`` by seq."""

OLD_INDEX = "entry_by_point"
"""The per-commit index ``ON entry(point_id, seq)`` of earlier journals: replaced by ``point_index``
when such a journal is opened (``WriterStore._migrate``)."""

INDEX_EVERY = 4096
"""Readings the tail may grow to before the writer indexes it (also every retention pass, ~5 s)."""

INDEX_BATCH = 16_384
"""Most seqs one ``batch`` of ``point_index`` spans (a long catch-up, such as a migration, is cut into
batches of this width, so that removing a few entries never scans more than two batches)."""


@dataclass(frozen=True, slots=True)
class Batch:
    """What one append hands the writer: its readings or its events, in order."""

    readings: Sequence[Reading] = ()
    events: Sequence[Event] = ()

    def __len__(self) -> int:
        return len(self.readings) + len(self.events)


BucketRow = tuple[int, int, float, float, float]


@dataclass(slots=True)
class Counters:
    next_seq: int = 0
    first_seq: int = 0
    entries: int = 0
    bytes: int = 0
    retired: int = 0
    dropped: int = 0
    gaps: int = 0


def connect(path: Path, *, synchronous: str, readonly: bool = False) -> sqlite3.Connection:
    """Open the journal database (WAL mode) for this thread."""
    if readonly:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None, check_same_thread=False)
    else:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={synchronous.upper()}")
    conn.execute("PRAGMA busy_timeout=10000")
    return conn


WAL_PAGES = (1000, 10_000)
"""Bounds of the WAL's checkpoint threshold in pages (SQLite's default is the lower one)."""


def wal_pages(max_bytes: int, page_size: int) -> int:
    """Pages the WAL may hold before it is copied back into the database: a twentieth of the
    journal's byte cap, within ``WAL_PAGES``. Every commit rewrites one index page per point it
    touches, so the longer the WAL runs, the fewer times a page is copied back (1 GiB cap: 10,000
    pages, a 40 MB WAL, a quarter less CPU per reading than 1,000); a small journal keeps SQLite's
    default, so the WAL never adds more than 5% to a cap above 80 MB, nor more than before below it."""
    return max(WAL_PAGES[0], min(WAL_PAGES[1], max_bytes // 20 // page_size))


class WriterStore:
    """The single writer: inserts entries, runs commit hooks, keeps cursors and retention."""

    def __init__(
        self, path: Path, *, synchronous: str, extra_schema: Sequence[str], max_bytes: int | None = None
    ) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        created = not path.exists()
        self.conn = connect(path, synchronous=synchronous)
        if created:
            os.chmod(path, 0o600)
        if max_bytes is not None:
            page_size = int(self.conn.execute("PRAGMA page_size").fetchone()[0])
            self.conn.execute(f"PRAGMA wal_autocheckpoint={wal_pages(max_bytes, page_size)}")
        self._create_schema()
        for ddl in extra_schema:
            self.conn.executescript(ddl)
        self.hooks: list[CommitHook] = []
        self.removal_hooks: list[RemovalHook] = []
        self._points: dict[str, int] = {name: pid for pid, name in self.conn.execute("SELECT id, name FROM point")}
        self._new_points: list[str] = []  # inserted by the open transaction: forgotten if it rolls back
        self.counters = Counters()
        self.removals = 0
        """Transactions that removed entries (counted when they start removing, even if they then roll
        back): a change tells the journal's tail cache that what it holds may be gone."""
        meta = dict(self.conn.execute("SELECT key, value FROM meta"))
        self.counters.next_seq = int(meta["next_seq"])
        self.counters.retired = int(meta["retired"])
        self.counters.dropped = int(meta["dropped"])
        self.counters.gaps = int(meta["gaps"])
        self.indexed_seq = int(meta["indexed_seq"])
        self.index_every = INDEX_EVERY
        self.refresh_counters()

    def _create_schema(self) -> None:
        """Create the tables; a journal with the old per-commit index is migrated in the same
        transaction (the new index built from its entries, the old one dropped)."""
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            old = conn.execute("SELECT 1 FROM sqlite_master WHERE type='index' AND name=?", (OLD_INDEX,)).fetchone()
            if old:
                self._migrate()
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def _migrate(self) -> None:
        """Inside the open transaction: build ``point_index`` for every stored reading and drop the
        old index. ``point_index`` is emptied first: a journal opened by an older version after this
        one may have added and removed entries without touching it."""
        conn = self.conn
        (next_seq,) = conn.execute("SELECT value FROM meta WHERE key='next_seq'").fetchone()
        conn.execute("DELETE FROM point_index")
        self._index_range(0, int(next_seq))
        conn.execute(f"DROP INDEX {OLD_INDEX}")
        logger.info("journal %s: per-point index built for seqs below %d, %s dropped", self.path, next_seq, OLD_INDEX)

    def close(self) -> None:
        self.conn.close()

    # -- counters ---------------------------------------------------------------------------------

    def used_bytes(self) -> int:
        page_size = self.conn.execute("PRAGMA page_size").fetchone()[0]
        pages = self.conn.execute("PRAGMA page_count").fetchone()[0]
        free = self.conn.execute("PRAGMA freelist_count").fetchone()[0]
        return int((pages - free) * page_size)

    def refresh_counters(self) -> Counters:
        """Count the entries (a scan of the whole table: on open only) and take ``counters``."""
        (self.counters.entries,) = self.conn.execute("SELECT COUNT(*) FROM entry").fetchone()
        return self.take_counters()

    def take_counters(self) -> Counters:
        """The counters now: the entry count is kept as entries are written and removed, the lowest
        seq and the bytes in use are read (an index lookup and three pragmas, whatever the size)."""
        c = self.counters
        (first,) = self.conn.execute("SELECT MIN(seq) FROM entry").fetchone()
        c.first_seq = int(first) if first is not None else c.next_seq
        c.bytes = self.used_bytes()
        return Counters(c.next_seq, c.first_seq, c.entries, c.bytes, c.retired, c.dropped, c.gaps)

    # -- writing ----------------------------------------------------------------------------------

    def _point_id(self, name: str) -> int:
        pid = self._points.get(name)
        if pid is None:
            cur = self.conn.execute("INSERT INTO point(name) VALUES (?)", (name,))
            pid = int(cur.lastrowid or 0)
            self._points[name] = pid
            self._new_points.append(name)
        return pid

    def _insert(self, batches: Sequence[Batch]) -> list[Entry]:
        """Insert ``batches`` at the next seqs inside the open transaction; return their entries."""
        seq = self.counters.next_seq
        entries: list[Entry] = []
        rows: list[tuple[int, int, int | None, int, bytes]] = []
        add_row, add_entry, points = rows.append, entries.append, self._points  # once per reading below
        reading_kind, event_kind = EntryKind.READING, EntryKind.EVENT
        for batch in batches:
            for r in batch.readings:
                body = encode_reading(r, seq)
                point_id = points.get(r.point)
                if point_id is None:
                    point_id = self._point_id(r.point)
                add_row((seq, 0, point_id, r.ts_gateway, body))
                add_entry(Entry(seq, reading_kind, r.point, r.ts_gateway, body))
                seq += 1
            for e in batch.events:
                body = encode_event(e, seq)
                add_row((seq, 1, None, e.ts, body))
                add_entry(Entry(seq, event_kind, None, e.ts, body))
                seq += 1
        self.conn.executemany("INSERT INTO entry(seq, kind, point_id, ts, body) VALUES (?,?,?,?,?)", rows)
        self.conn.execute("UPDATE meta SET value=? WHERE key='next_seq'", (seq,))
        for hook in self.hooks:
            hook(self.conn, entries)
        return entries

    def write(self, batches: Sequence[Batch]) -> list[Entry]:
        """Commit ``batches`` in one transaction. All or nothing."""
        self._new_points = []
        try:
            self.conn.execute("BEGIN IMMEDIATE")
            entries = self._insert(batches)
            self.conn.execute("COMMIT")
            self._new_points = []
        except BaseException as exc:
            self._rollback()
            if isinstance(exc, JournalError):
                raise
            if isinstance(exc, sqlite3.Error):
                raise JournalError(f"journal commit failed: {exc}") from exc
            raise
        self.counters.next_seq += len(entries)
        self.counters.entries += len(entries)
        return entries

    def commit(self, batches: Sequence[Batch]) -> tuple[list[Entry], int]:
        """``write``, and the count of removals at that commit (see ``removals``)."""
        return self.write(batches), self.removals

    def _rollback(self) -> None:
        if self.conn.in_transaction:
            self.conn.execute("ROLLBACK")
        for name in self._new_points:  # their rows are gone with the transaction
            self._points.pop(name, None)
        self._new_points = []

    # -- the per-point index ----------------------------------------------------------------------

    def tail(self) -> int:
        """Entries above the index watermark."""
        return self.counters.next_seq - self.indexed_seq

    def index(self, upto: int | None = None) -> int:
        """Index the readings from the watermark up to ``upto`` (default: everything committed) in
        one transaction with the new watermark; return the watermark. Each batch dirties the index
        pages at the right edge of ``point_index`` once, instead of one page per point per commit."""
        end = self.counters.next_seq if upto is None else min(upto, self.counters.next_seq)
        start = self.indexed_seq
        if end <= start:
            return start
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            self._index_range(start, end)
            self.conn.execute("COMMIT")
        except BaseException:
            self._rollback()
            raise
        self.indexed_seq = end
        return end

    def _index_range(self, start: int, end: int) -> None:
        """Inside the open transaction: rows for the readings in ``[start, end)``, watermark at ``end``."""
        self.conn.execute(
            "INSERT INTO point_index(batch, point_id, seq) "
            "SELECT ?1 + ((seq - ?1) / ?3) * ?3, point_id, seq FROM entry "
            "WHERE seq >= ?1 AND seq < ?2 AND point_id IS NOT NULL ORDER BY 1, 2, 3",
            (start, end, INDEX_BATCH),
        )
        self.conn.execute("UPDATE meta SET value=? WHERE key='indexed_seq'", (end,))

    def _unindex(self, lowest: int, highest: int) -> None:
        """Inside a removal transaction: forget the index rows of entries in ``lowest..highest`` that
        are gone (scans only the batches that can hold those seqs)."""
        if lowest >= self.indexed_seq:
            return
        (first_batch,) = self.conn.execute("SELECT MAX(batch) FROM point_index WHERE batch <= ?", (lowest,)).fetchone()
        self.conn.execute(
            "DELETE FROM point_index WHERE batch >= ? AND batch <= ? AND seq >= ? AND seq <= ? "
            "AND NOT EXISTS (SELECT 1 FROM entry WHERE entry.seq = point_index.seq)",
            (lowest if first_batch is None else int(first_batch), highest, lowest, highest),
        )

    # -- reading ----------------------------------------------------------------------------------

    def set_cursor(self, name: str, position: int) -> None:
        self.conn.execute(
            "INSERT INTO cursor(name, position) VALUES (?, ?) "
            "ON CONFLICT(name) DO UPDATE SET position=excluded.position",
            (name, position),
        )

    def cursors(self) -> dict[str, int]:
        return {name: int(pos) for name, pos in self.conn.execute("SELECT name, position FROM cursor")}

    def remove_cursor(self, name: str) -> None:
        self.conn.execute("DELETE FROM cursor WHERE name=?", (name,))

    # -- retention --------------------------------------------------------------------------------

    def retain(self, *, max_bytes: int, cutoff_ns: int | None, now_ns: int) -> list[Entry]:
        """Apply the retention policy; return the gap events it journaled (if any).

        1. Entries older than ``cutoff_ns``: retired if every cursor has passed them, otherwise
           readings among them are dropped (events stay).
        2. While over ``max_bytes``: retire the oldest entries every cursor has passed, then drop the
           oldest readings some cursor has not passed yet. Events are never dropped.
        Each drop is recorded in the same transaction as a gap event.
        """
        cursors = self.cursors()
        behind_at = min(cursors.values(), default=self.counters.next_seq)
        gap_events: list[Entry] = []
        if cutoff_ns is not None:
            gap_events += self._delete_old(cutoff_ns, behind_at, cursors, now_ns)
        used = self.used_bytes()
        if used > max_bytes:
            target = int(max_bytes * 0.9)
            for _ in range(64):  # bounded: each round frees a chunk
                used = self.used_bytes()
                if used <= target:
                    break
                count = self.counters.entries
                if count == 0:
                    break
                per_entry = max(1, used // count)
                chunk = max(1, min(count, (used - target) // per_entry + 1))
                freed, gaps = self._delete_oldest(chunk, behind_at, cursors, now_ns)
                gap_events += gaps
                if freed == 0:
                    break
        self.take_counters()
        return gap_events

    def _delete_old(self, cutoff_ns: int, behind_at: int, cursors: dict[str, int], now_ns: int) -> list[Entry]:
        saved = dataclasses.replace(self.counters)
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            # retire a prefix only: the oldest entries up to the first one young enough to keep, so the
            # stored seqs stay contiguous above first_seq (gateway clocks can step back)
            (first_young,) = self.conn.execute("SELECT MIN(seq) FROM entry WHERE ts >= ?", (cutoff_ns,)).fetchone()
            limit = behind_at if first_young is None else min(behind_at, int(first_young))
            lowest = self.counters.first_seq
            retired = self.conn.execute("DELETE FROM entry WHERE seq < ?", (limit,)).rowcount
            where = ("kind = 0 AND ts < ? AND seq >= ?", (cutoff_ns, behind_at))
            _, gaps = self._drop_readings(where, cursors, now_ns, reason="max_age")
            self._count(retired=retired)
            if retired:
                self._removed(lowest, limit - 1)
            self.conn.execute("COMMIT")
        except BaseException:
            self._rollback()
            self.counters = saved
            raise
        return gaps

    def _delete_oldest(
        self, chunk: int, behind_at: int, cursors: dict[str, int], now_ns: int
    ) -> tuple[int, list[Entry]]:
        saved = dataclasses.replace(self.counters)
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            lowest = self.counters.first_seq
            retired = self.conn.execute(
                "DELETE FROM entry WHERE seq IN (SELECT seq FROM entry WHERE seq < ? ORDER BY seq LIMIT ?)",
                (behind_at, chunk),
            ).rowcount
            dropped, gaps = 0, list[Entry]()
            if retired < chunk:
                row = self.conn.execute(
                    "SELECT MAX(seq) FROM (SELECT seq FROM entry WHERE seq >= ? AND kind = 0 ORDER BY seq LIMIT ?)",
                    (behind_at, chunk - retired),
                ).fetchone()
                if row[0] is not None:
                    where = ("kind = 0 AND seq >= ? AND seq <= ?", (behind_at, int(row[0])))
                    dropped, gaps = self._drop_readings(where, cursors, now_ns, reason="max_bytes")
            self._count(retired=retired)
            if retired:
                (now_first,) = self.conn.execute("SELECT MIN(seq) FROM entry").fetchone()
                self._removed(lowest, (self.counters.next_seq if now_first is None else int(now_first)) - 1)
            self.conn.execute("COMMIT")
        except BaseException:
            self._rollback()
            self.counters = saved
            raise
        return retired + dropped, gaps

    def _drop_readings(
        self, where: tuple[str, tuple[int, ...]], cursors: dict[str, int], now_ns: int, *, reason: str
    ) -> tuple[int, list[Entry]]:
        """Delete the readings matching ``where`` and journal one gap event naming their seq range."""
        clause, args = where
        first, last, count = self.conn.execute(
            f"SELECT MIN(seq), MAX(seq), COUNT(*) FROM entry WHERE {clause}",  # noqa: S608
            args,
        ).fetchone()
        if not count:
            return 0, []
        self.conn.execute(f"DELETE FROM entry WHERE {clause}", args)  # noqa: S608
        self._removed(int(first), int(last))
        behind = sorted(name for name, pos in cursors.items() if pos <= last)
        logger.warning(
            "journal dropped %d unsynced readings, seq %d..%d (%s); cursors behind: %s",
            count,
            first,
            last,
            reason,
            ", ".join(behind) or "none",
        )
        gap = Event(
            kind="gap",
            source="journal",
            ts=now_ns,
            attrs={
                "first_seq": first,
                "last_seq": last,
                "count": count,
                "reason": reason,
                "cursors": list(behind),
            },
        )
        entries = self._insert([Batch(events=[gap])])
        self.counters.next_seq += len(entries)
        self._count(dropped=count, gaps=1)
        return int(count), entries

    def _removed(self, lowest: int, highest: int) -> None:
        self.removals += 1
        self._unindex(lowest, highest)
        for hook in self.removal_hooks:
            hook(self.conn, lowest, highest)

    def _count(self, *, retired: int = 0, dropped: int = 0, gaps: int = 0) -> None:
        """Inside the removal's transaction: ``retired`` entries deleted behind every cursor,
        ``dropped`` readings deleted ahead of one, ``gaps`` gap events written for them."""
        c = self.counters
        c.entries += gaps - retired - dropped
        c.retired += retired
        c.dropped += dropped
        c.gaps += gaps
        if retired or dropped or gaps:
            self.conn.executemany(
                "UPDATE meta SET value=? WHERE key=?",
                [(c.retired, "retired"), (c.dropped, "dropped"), (c.gaps, "gaps")],
            )


BUCKETS_SQL = """
WITH RECURSIVE batches(start) AS (
    SELECT :first_batch
    UNION ALL
    SELECT (SELECT MIN(batch) FROM point_index WHERE batch > batches.start) FROM batches
    WHERE batches.start < :indexed_end
), rows(ts, body) AS (
    SELECT e.ts, e.body FROM batches CROSS JOIN point_index i ON i.batch = batches.start AND i.point_id = :pid
        AND i.seq >= :first AND i.seq < :indexed_end
    JOIN entry e ON e.seq = i.seq WHERE e.ts >= :start_ns AND e.ts < :end_ns
    UNION ALL
    SELECT ts, body FROM entry
    WHERE seq >= :tail_start AND seq < :last AND point_id = :pid AND ts >= :start_ns AND ts < :end_ns
)
SELECT (ts - :start_ns) / :width AS b, COUNT(v), MIN(v), MAX(v), AVG(v) FROM (
    SELECT ts, json_extract(CAST(body AS TEXT), '$.value') AS v, json_extract(CAST(body AS TEXT), '$.quality') AS q
    FROM rows)
WHERE q != 'bad' AND typeof(v) IN ('integer', 'real') GROUP BY b ORDER BY b
"""
"""Buckets of one point: its indexed readings batch by batch, then the tail, in seq order (the order
the old per-commit index gave, so ``AVG`` adds the same numbers in the same order)."""


NEXT_BATCHES_SQL = """
WITH RECURSIVE batches(start) AS (
    SELECT MIN(batch) FROM point_index WHERE batch > ?1
    UNION ALL
    SELECT (SELECT MIN(batch) FROM point_index WHERE batch > batches.start) FROM batches WHERE batches.start < ?2
)
SELECT start FROM batches WHERE start IS NOT NULL AND start < ?2
"""
"""The batch starts in ``(?1, ?2)``, ascending: one seek each, not a scan of their rows."""


class ReaderStore:
    """A read-only view used by readers (streams, history, verification)."""

    def __init__(self, path: Path) -> None:
        self.conn = connect(path, synchronous="normal", readonly=True)
        self._names: dict[int, str] = {}

    def close(self) -> None:
        self.conn.close()

    def _name(self, pid: int | None) -> str | None:
        if pid is None:
            return None
        name = self._names.get(pid)
        if name is None:
            row = self.conn.execute("SELECT name FROM point WHERE id=?", (pid,)).fetchone()
            name = row[0] if row else f"#{pid}"
            self._names[pid] = name
        return name

    @contextlib.contextmanager
    def _snapshot(self) -> Iterator[int]:
        """One read transaction (so the watermark and the rows agree); yields the watermark."""
        self.conn.execute("BEGIN")
        try:
            (indexed,) = self.conn.execute("SELECT value FROM meta WHERE key='indexed_seq'").fetchone()
            yield int(indexed)
        finally:
            self.conn.execute("COMMIT")

    def _batches(self, first: int, end: int) -> list[int]:
        """The ``point_index`` batches that can hold seqs in ``[first, end)``, ascending."""
        if end <= first:
            return []
        (below,) = self.conn.execute("SELECT MAX(batch) FROM point_index WHERE batch <= ?", (first,)).fetchone()
        batches = [] if below is None else [int(below)]
        batches += [int(b) for (b,) in self.conn.execute(NEXT_BATCHES_SQL, (first, end))]
        return batches

    def latest(self) -> list[Entry]:
        """The newest stored reading of every point: the tail's, then each index batch's newest first
        for the points not found yet (usually the last batch or two has every point)."""
        with self._snapshot() as indexed:
            newest: dict[int, int] = dict(
                self.conn.execute(
                    "SELECT point_id, MAX(seq) FROM entry WHERE seq >= ? AND point_id IS NOT NULL GROUP BY point_id",
                    (indexed,),
                )
            )
            (points,) = self.conn.execute("SELECT COUNT(*) FROM point").fetchone()
            batch: int | None = indexed
            while len(newest) < points:
                (batch,) = self.conn.execute("SELECT MAX(batch) FROM point_index WHERE batch < ?", (batch,)).fetchone()
                if batch is None:
                    break
                for pid, seq in self.conn.execute(
                    "SELECT point_id, MAX(seq) FROM point_index WHERE batch = ? GROUP BY point_id", (batch,)
                ):
                    newest.setdefault(pid, seq)
            rows = self.conn.execute(
                "SELECT seq, kind, point_id, ts, body FROM entry WHERE seq IN (SELECT value FROM json_each(?)) "
                "ORDER BY seq",
                (json.dumps(sorted(newest.values())),),
            ).fetchall()
        return self._entries(rows)

    def seq_at(self, ts_ns: int) -> int:
        """The first stored seq whose gateway time is at or after ``ts_ns`` (the end when none is).

        Gateway times grow with seq (one clock stamps entries as they arrive), so this bisects over
        the primary key; after a clock step backwards it is approximate, and callers still filter on
        ``ts`` exactly.
        """
        bounds = self.conn.execute("SELECT MIN(seq), MAX(seq) FROM entry").fetchone()
        if bounds[0] is None:
            return 0
        lo, hi = int(bounds[0]), int(bounds[1]) + 1
        probe = "SELECT seq, ts FROM entry WHERE seq >= ? ORDER BY seq LIMIT 1"
        while lo < hi:
            mid = (lo + hi) // 2
            row = self.conn.execute(probe, (mid,)).fetchone()
            if row is None or row[1] >= ts_ns:
                hi = mid
            else:
                lo = int(row[0]) + 1
        return lo

    def history(self, point: str, start_ns: int, end_ns: int, limit: int) -> list[Entry]:
        """Readings of ``point`` with ``start_ns <= ts < end_ns``, oldest first, at most ``limit``."""
        with self._snapshot() as indexed:
            row = self.conn.execute("SELECT id FROM point WHERE name=?", (point,)).fetchone()
            if row is None:
                return []
            pid = row[0]
            first, last = self.seq_at(start_ns), self.seq_at(end_ns)
            indexed_end = min(last, indexed)
            rows: list[tuple[int, int, int | None, int, bytes]] = []
            for batch in self._batches(first, indexed_end):
                if len(rows) >= limit:
                    break
                rows += self.conn.execute(
                    "SELECT e.seq, e.kind, e.point_id, e.ts, e.body FROM point_index i JOIN entry e ON e.seq = i.seq "
                    "WHERE i.batch = ? AND i.point_id = ? AND i.seq >= ? AND i.seq < ? AND e.ts >= ? AND e.ts < ? "
                    "ORDER BY i.seq LIMIT ?",
                    (batch, pid, first, indexed_end, start_ns, end_ns, limit - len(rows)),
                ).fetchall()
            if len(rows) < limit and last > indexed:
                rows += self.conn.execute(
                    "SELECT seq, kind, point_id, ts, body FROM entry WHERE seq >= ? AND seq < ? AND point_id = ? "
                    "AND ts >= ? AND ts < ? ORDER BY seq LIMIT ?",
                    (max(first, indexed), last, pid, start_ns, end_ns, limit - len(rows)),
                ).fetchall()
        return [Entry(seq, EntryKind(kind), point, ts, bytes(body)) for seq, kind, _pid, ts, body in rows]

    def buckets(
        self, point: str, start_ns: int, end_ns: int, width_ns: int
    ) -> list[tuple[int, int, float, float, float]]:
        """Numeric readings of ``point`` (Good or Uncertain) summarised per ``width_ns`` bucket:
        ``(bucket_start_ns, count, min, max, mean)`` for each non-empty bucket, oldest first."""
        with self._snapshot() as indexed:
            row = self.conn.execute("SELECT id FROM point WHERE name=?", (point,)).fetchone()
            if row is None:
                return []
            first, last = self.seq_at(start_ns), self.seq_at(end_ns)
            (below,) = self.conn.execute("SELECT MAX(batch) FROM point_index WHERE batch <= ?", (first,)).fetchone()
            rows = self.conn.execute(
                BUCKETS_SQL,
                {
                    "first_batch": first if below is None else int(below),
                    "indexed_end": min(last, indexed),
                    "pid": row[0],
                    "first": first,
                    "last": last,
                    "tail_start": max(first, indexed),
                    "start_ns": start_ns,
                    "end_ns": end_ns,
                    "width": width_ns,
                },
            ).fetchall()
        return [
            (start_ns + int(b) * width_ns, int(n), float(lo), float(hi), float(mean)) for b, n, lo, hi, mean in rows
        ]

    def read(self, start: int, limit: int, kinds: Collection[EntryKind] | None = None) -> list[Entry]:
        if kinds is None or len(kinds) == len(EntryKind):
            rows = self.conn.execute(
                "SELECT seq, kind, point_id, ts, body FROM entry WHERE seq >= ? ORDER BY seq LIMIT ?",
                (start, limit),
            ).fetchall()
        else:
            marks = ",".join(str(int(k)) for k in kinds)
            rows = self.conn.execute(
                f"SELECT seq, kind, point_id, ts, body FROM entry WHERE seq >= ? AND kind IN ({marks}) "  # noqa: S608
                "ORDER BY seq LIMIT ?",
                (start, limit),
            ).fetchall()
        return self._entries(rows)

    def _entries(self, rows: list[tuple[int, int, int | None, int, bytes]]) -> list[Entry]:
        """Rows of ``entry`` as entries (every cursor reads through here: once per entry and reader)."""
        kinds, names, name = _KINDS, self._names, self._name
        out: list[Entry] = []
        append = out.append
        for seq, kind, pid, ts, body in rows:
            point = None if pid is None else names.get(pid) or name(pid)
            append(Entry(seq, kinds[kind], point, ts, body if type(body) is bytes else bytes(body)))
        return out


_KINDS = {int(k): k for k in EntryKind}  # EntryKind(kind) per row costs more than the rest of the row
