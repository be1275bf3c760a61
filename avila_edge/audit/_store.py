"""The audit tables inside the journal database: leaf hashes, stored subtrees, checkpoints.

Every leaf hash is kept (``audit_leaves``, 16 per row, never deleted by retention). Of the complete
subtrees above the leaves only every ``STRIDE``-th level is kept (``audit_node``); a subtree of another
level is folded from at most ``2**(STRIDE-1)`` stored ones when a proof needs it. That keeps the tables
at ~1.07 hashes per entry (~36 bytes on disk) while a proof at any size reads a few dozen rows.

A ``HashStore`` wraps one connection and is used by one thread at a time: the journal's writer
thread inside its commit transaction, or a reader thread of our own.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence

import msgspec

from avila_edge.audit._tree import (
    HASH_SIZE,
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

BLOCK = 16
"""Leaf hashes are stored 16 to a row: ``audit_leaves.hashes`` of ``block`` b holds the 32-byte leaf
hashes of seqs ``16*b`` to ``16*b + 15``, concatenated (the last block may be shorter)."""

SCHEMA = """
CREATE TABLE IF NOT EXISTS audit_leaves (block INTEGER PRIMARY KEY, hashes BLOB NOT NULL);
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
        row = self.conn.execute("SELECT block, length(hashes) FROM audit_leaves ORDER BY block DESC LIMIT 1").fetchone()
        return 0 if row is None else int(row[0]) * BLOCK + int(row[1]) // HASH_SIZE

    def _block(self, block: int) -> bytes:
        row = self.conn.execute("SELECT hashes FROM audit_leaves WHERE block = ?", (block,)).fetchone()
        return b"" if row is None else blob(row[0])

    def leaf(self, seq: int) -> bytes | None:
        """The leaf hash of entry ``seq``, if recorded."""
        offset = (seq % BLOCK) * HASH_SIZE
        h = self._block(seq // BLOCK)[offset : offset + HASH_SIZE]
        return h if len(h) == HASH_SIZE else None

    def leaves(self, start: int, limit: int) -> list[tuple[int, bytes]]:
        """Recorded ``(seq, leaf hash)`` from ``start`` on, ascending, at most ``limit`` (rounded up to
        whole blocks)."""
        rows = self.conn.execute(
            "SELECT block, hashes FROM audit_leaves WHERE block >= ? ORDER BY block LIMIT ?",
            (start // BLOCK, max(1, -(-limit // BLOCK))),
        ).fetchall()
        found: list[tuple[int, bytes]] = []
        for block, value in rows:
            hashes = blob(value)
            first = int(block) * BLOCK
            found += [
                (first + i, hashes[i * HASH_SIZE : (i + 1) * HASH_SIZE])
                for i in range(len(hashes) // HASH_SIZE)
                if first + i >= start
            ]
        return found

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
        if base == 0:  # at most 8 leaves, inside one block
            hashes = self._block(first // BLOCK)
            offset = (first % BLOCK) * HASH_SIZE
            children = [hashes[offset + i * HASH_SIZE : offset + (i + 1) * HASH_SIZE] for i in range(width)]
            children = [h for h in children if len(h) == HASH_SIZE]
        else:
            rows = self.conn.execute(
                "SELECT hash FROM audit_node WHERE level = ? AND idx >= ? AND idx < ? ORDER BY idx",
                (base, first, first + width),
            ).fetchall()
            children = [blob(r[0]) for r in rows]
        if len(children) != width:
            what = f"leaves {first}..{first + width - 1}" if base == 0 else f"level-{base} subtrees {first}.."
            raise AuditError(
                f"the audit tables lack hashes ({what}) needed for subtree {level}/{index}; the tree is damaged"
            )
        return perfect_root(children)

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
        if not leaves:
            return
        first = frontier.size
        for i, (seq, _) in enumerate(leaves):
            if seq != first + i:
                raise AuditError(f"entry {seq} cannot become leaf {first + i} of the audit tree")
        leaf_hashes = [h for _, h in leaves]
        node_rows = frontier.extend(leaf_hashes, every=STRIDE)
        hashes = b"".join(leaf_hashes)
        head = first % BLOCK
        if head:  # the first block was begun by an earlier commit: extend it
            begun = self._block(first // BLOCK)
            if len(begun) != head * HASH_SIZE:
                raise AuditError(
                    f"the audit tables hold {len(begun) // HASH_SIZE} leaves of block {first // BLOCK}, not {head}"
                )
            hashes = begun + hashes
        start_block = first // BLOCK
        step = BLOCK * HASH_SIZE
        self.conn.executemany(
            "INSERT OR REPLACE INTO audit_leaves(block, hashes) VALUES (?, ?)",
            [(start_block + i // step, hashes[i : i + step]) for i in range(0, len(hashes), step)],
        )
        if node_rows:
            self.conn.executemany("INSERT INTO audit_node(level, idx, hash) VALUES (?, ?, ?)", node_rows)

    # -- compaction -------------------------------------------------------------------------------------

    def prune(self, lowest: int, highest: int, *, first_seq: int) -> int:
        """Forget hashes no proof can need any more, around journal entries ``lowest..highest`` that
        retention just removed; return how many rows were deleted.

        A stored unit (a block of 16 leaf hashes, or a subtree of level 4, 8, ...) can go once the
        stored subtree four levels above it is complete and holds no *needed* position: a journal
        entry still present, a recorded checkpoint's boundary (its size and size - 1), the journal's
        first seq, or the tree's last leaf. Every proof about what is still held then reads only
        hashes that stay (see docs/audit.md, "Bounded storage")."""
        size = self.size()
        if size == 0 or highest < lowest:
            return 0
        deleted = 0
        level = 0
        while True:
            parent = level + STRIDE
            span = 1 << parent
            if span > size:
                return deleted
            for index in range(lowest >> parent, (min(highest, size - 1) >> parent) + 1):
                start, end = index * span, (index + 1) * span
                if end > size or self._holds_needed(start, end, first_seq, size):
                    continue
                if not self.conn.execute(
                    "SELECT 1 FROM audit_node WHERE level = ? AND idx = ?", (parent, index)
                ).fetchone():
                    continue
                if level == 0:
                    deleted += self.conn.execute(
                        "DELETE FROM audit_leaves WHERE block >= ? AND block < ?", (start // BLOCK, end // BLOCK)
                    ).rowcount
                else:
                    deleted += self.conn.execute(
                        "DELETE FROM audit_node WHERE level = ? AND idx >= ? AND idx < ?",
                        (level, start >> level, end >> level),
                    ).rowcount
            level = parent

    def _holds_needed(self, start: int, end: int, first_seq: int, size: int) -> bool:
        if start <= first_seq < end or start <= size - 1 < end:
            return True
        if self.conn.execute("SELECT 1 FROM entry WHERE seq >= ? AND seq < ? LIMIT 1", (start, end)).fetchone():
            return True
        row = self.conn.execute("SELECT 1 FROM audit_checkpoint WHERE size >= ? AND size <= ? LIMIT 1", (start, end))
        return row.fetchone() is not None

    def forget_checkpoints(self, first_seq: int) -> list[int]:
        """Drop recorded checkpoints over entries all retired, except the newest of them: it stays the
        anchor from which consistency with everything later can still be proven. Returns their sizes."""
        where = "size <= ? AND size < (SELECT MAX(size) FROM audit_checkpoint WHERE size <= ?)"
        sizes = [
            int(r[0])
            for r in self.conn.execute(f"SELECT size FROM audit_checkpoint WHERE {where}", (first_seq, first_seq))  # noqa: S608
        ]
        if sizes:
            self.conn.execute(f"DELETE FROM audit_checkpoint WHERE {where}", (first_seq, first_seq))  # noqa: S608
        return sizes

    def cover(self, position: int) -> tuple[int, bytes] | None:
        """For a position whose leaf block was compacted away: the smallest stored subtree starting
        there, as ``(level, hash)``; None if there is none (the tree is damaged)."""
        size = self.size()
        level = STRIDE
        while position % (1 << level) == 0 and position + (1 << level) <= size:
            row = self.conn.execute(
                "SELECT hash FROM audit_node WHERE level = ? AND idx = ?", (level, position >> level)
            ).fetchone()
            if row is not None:
                return level, blob(row[0])
            level += STRIDE
        return None

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


def blob(value: object) -> bytes:
    """A column read back as bytes, whatever SQLite type someone stored in it."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, memoryview | bytearray):
        return bytes(value)
    return str(value).encode()


def has_audit_tables(conn: sqlite3.Connection) -> bool:
    row = conn.execute("SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'audit_leaves'").fetchone()
    return bool(row[0])
