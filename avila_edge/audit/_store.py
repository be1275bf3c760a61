"""The audit tables inside the journal database: leaf hashes, stored subtrees, checkpoints.

Every leaf hash is kept (``audit_leaf``, one row per journal seq, never deleted by retention). Of the
complete subtrees above the leaves only every ``STRIDE``-th level is kept (``audit_node``); a subtree
of another level is folded from at most ``2**(STRIDE-1)`` stored ones when a proof needs it. That
keeps the tables at ~1.07 hashes per entry while a proof at any size reads a few hundred rows.

A ``HashStore`` wraps one connection and is used by one thread at a time: the journal's writer
thread inside its commit transaction, or a reader thread of our own.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence

import msgspec

from avila_edge.audit._tree import (
    Coord,
    Frontier,
    Span,
    consistency_ranges,
    decompose,
    fold_right,
    inclusion_ranges,
    perfect_root,
)
from avila_edge.core import AuditError

STRIDE = 4
"""Levels 0, 4, 8, ... of complete subtrees are stored."""

SCHEMA = """
CREATE TABLE IF NOT EXISTS audit_leaf (seq INTEGER PRIMARY KEY, hash BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS audit_node (
    level INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    hash BLOB NOT NULL,
    PRIMARY KEY (level, idx)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS audit_checkpoint (
    size INTEGER PRIMARY KEY,
    root BLOB NOT NULL,
    note TEXT NOT NULL,
    seq INTEGER NOT NULL,
    ts INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS audit_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


class StoredCheckpoint(msgspec.Struct, frozen=True):
    """A signed checkpoint as recorded: tree ``size``, ``root`` hash, the signed ``note``, and the
    journal ``seq`` of the checkpoint event that carries it (``ts`` its time, ns)."""

    size: int
    root: bytes
    note: str
    seq: int
    ts: int


class HashStore:
    """Reads and writes the audit tables through ``conn`` (which the caller's thread owns)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    # -- the tree -----------------------------------------------------------------------------------

    def size(self) -> int:
        """The number of leaves recorded."""
        row = self.conn.execute("SELECT MAX(seq) FROM audit_leaf").fetchone()
        return 0 if row[0] is None else int(row[0]) + 1

    def leaf(self, seq: int) -> bytes | None:
        row = self.conn.execute("SELECT hash FROM audit_leaf WHERE seq = ?", (seq,)).fetchone()
        return None if row is None else bytes(row[0])

    def leaves(self, start: int, limit: int) -> list[tuple[int, bytes]]:
        """Recorded ``(seq, leaf hash)`` from ``start`` on, ascending, at most ``limit``."""
        rows = self.conn.execute(
            "SELECT seq, hash FROM audit_leaf WHERE seq >= ? ORDER BY seq LIMIT ?", (start, limit)
        ).fetchall()
        return [(int(s), bytes(h)) for s, h in rows]

    def stored_nodes(self, level: int, first: int, last: int) -> dict[int, bytes]:
        """Stored subtrees of ``level`` (a multiple of STRIDE above 0) with index in ``[first, last]``."""
        rows = self.conn.execute(
            "SELECT idx, hash FROM audit_node WHERE level = ? AND idx BETWEEN ? AND ?", (level, first, last)
        ).fetchall()
        return {int(i): bytes(h) for i, h in rows}

    def node(self, coord: Coord) -> bytes:
        """The hash of a complete subtree, read or folded from the stored levels."""
        level, index = coord
        base = level - level % STRIDE
        width = 1 << (level - base)
        first = index * width
        if base == 0:
            rows = self.conn.execute(
                "SELECT hash FROM audit_leaf WHERE seq >= ? AND seq < ? ORDER BY seq", (first, first + width)
            ).fetchall()
        else:
            rows = self.conn.execute(
                "SELECT hash FROM audit_node WHERE level = ? AND idx >= ? AND idx < ? ORDER BY idx",
                (base, first, first + width),
            ).fetchall()
        if len(rows) != width:
            what = f"leaves {first}..{first + width - 1}" if base == 0 else f"level-{base} subtrees {first}.."
            raise AuditError(
                f"the audit tables lack hashes ({what}) needed for subtree {level}/{index}; the tree is damaged"
            )
        return perfect_root([bytes(r[0]) for r in rows])

    def span_hash(self, span: Span) -> bytes:
        """The hash of node ``[start, end)``."""
        return fold_right([self.node(c) for c in decompose(*span)])

    def root(self, size: int) -> bytes:
        """MTH of the first ``size`` leaves (``size`` at most the recorded size)."""
        return self.load_frontier(size).root()

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        """RFC 9162 inclusion proof of leaf ``index`` in the tree of ``size`` leaves."""
        self._check_size(size)
        return [self.span_hash(s) for s in inclusion_ranges(index, size)]

    def consistency_proof(self, first: int, second: int) -> list[bytes]:
        """RFC 9162 consistency proof from the tree of ``first`` leaves to the one of ``second``."""
        self._check_size(second)
        return [self.span_hash(s) for s in consistency_ranges(first, second)]

    def _check_size(self, size: int) -> None:
        recorded = self.size()
        if size > recorded:
            raise AuditError(f"the audit tree has {recorded} leaves, not {size}")

    def load_frontier(self, size: int | None = None) -> Frontier:
        """The right edge of the tree of ``size`` leaves (default: all recorded)."""
        size = self.size() if size is None else size
        return Frontier(size, [self.node(c) for c in Frontier.coords(size)])

    def append(self, frontier: Frontier, leaves: Sequence[tuple[int, bytes]]) -> None:
        """Record ``(seq, leaf hash)`` pairs continuing ``frontier``, and the subtrees they complete."""
        leaf_rows: list[tuple[int, bytes]] = []
        node_rows: list[tuple[int, int, bytes]] = []
        for seq, h in leaves:
            if seq != frontier.size:
                raise AuditError(f"entry {seq} cannot become leaf {frontier.size} of the audit tree")
            for level, index, node in frontier.append(h):
                if level == 0:
                    leaf_rows.append((index, node))
                elif level % STRIDE == 0:
                    node_rows.append((level, index, node))
        self.conn.executemany("INSERT INTO audit_leaf(seq, hash) VALUES (?, ?)", leaf_rows)
        if node_rows:
            self.conn.executemany("INSERT INTO audit_node(level, idx, hash) VALUES (?, ?, ?)", node_rows)

    # -- checkpoints --------------------------------------------------------------------------------

    def add_checkpoint(self, cp: StoredCheckpoint) -> None:
        self.conn.execute(
            "INSERT OR IGNORE INTO audit_checkpoint(size, root, note, seq, ts) VALUES (?, ?, ?, ?, ?)",
            (cp.size, cp.root, cp.note, cp.seq, cp.ts),
        )

    def checkpoint(self, size: int) -> StoredCheckpoint | None:
        """The checkpoint of exactly ``size`` leaves."""
        return self._one("WHERE size = ?", (size,))

    def latest_checkpoint(self, *, above: int = -1) -> StoredCheckpoint | None:
        """The newest checkpoint, if its size is above ``above``."""
        return self._one("WHERE size > ? ORDER BY size DESC LIMIT 1", (above,))

    def checkpoints_near(self, size: int, count: int = 3) -> list[int]:
        """Sizes of recorded checkpoints closest to ``size`` (for error messages)."""
        rows = self.conn.execute(
            "SELECT size FROM audit_checkpoint ORDER BY ABS(size - ?) LIMIT ?", (size, count)
        ).fetchall()
        return sorted(int(r[0]) for r in rows)

    def checkpoints(self, *, start: int = 0, batch: int = 1000) -> Iterator[StoredCheckpoint]:
        """Every checkpoint of at least ``start`` leaves, by size, read in batches."""
        position = start
        while True:
            rows = self.conn.execute(
                "SELECT size, root, note, seq, ts FROM audit_checkpoint WHERE size >= ? ORDER BY size LIMIT ?",
                (position, batch),
            ).fetchall()
            for size, root, note, seq, ts in rows:
                yield StoredCheckpoint(int(size), bytes(root), str(note), int(seq), int(ts))
            if len(rows) < batch:
                return
            position = int(rows[-1][0]) + 1

    def checkpoint_events_between(self, start: int, end: int) -> int:
        """How many recorded checkpoints were journaled at a seq in ``[start, end)``."""
        row = self.conn.execute("SELECT COUNT(*) FROM audit_checkpoint WHERE seq >= ? AND seq < ?", (start, end))
        return int(row.fetchone()[0])

    def _one(self, where: str, args: tuple[int, ...]) -> StoredCheckpoint | None:
        row = self.conn.execute(f"SELECT size, root, note, seq, ts FROM audit_checkpoint {where}", args).fetchone()  # noqa: S608
        if row is None:
            return None
        size, root, note, seq, ts = row
        return StoredCheckpoint(int(size), bytes(root), str(note), int(seq), int(ts))

    # -- identity -----------------------------------------------------------------------------------

    def meta(self, key: str) -> str | None:
        row = self.conn.execute("SELECT value FROM audit_meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        self.conn.execute(
            "INSERT INTO audit_meta(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, value),
        )


def has_audit_tables(conn: sqlite3.Connection) -> bool:
    row = conn.execute("SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'audit_leaf'").fetchone()
    return bool(row[0])
