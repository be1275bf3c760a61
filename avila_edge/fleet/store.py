"""The receiver's dedupe store: which (gateway, seq) it already holds, and what it knows of each gateway.

Several receivers may share one store file (SQLite WAL with a busy timeout); every write is one short
transaction, and ``INSERT OR IGNORE`` on the (gateway, seq) key makes concurrent inserts safe.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path

import msgspec

SCHEMA = """
CREATE TABLE IF NOT EXISTS received (
    gateway TEXT NOT NULL, seq INTEGER NOT NULL, kind INTEGER NOT NULL, body BLOB NOT NULL,
    PRIMARY KEY (gateway, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS gateway (
    id TEXT PRIMARY KEY, last_seen_ns INTEGER NOT NULL DEFAULT 0, batches INTEGER NOT NULL DEFAULT 0,
    entries INTEGER NOT NULL DEFAULT 0, duplicates INTEGER NOT NULL DEFAULT 0, gaps INTEGER NOT NULL DEFAULT 0,
    dropped INTEGER NOT NULL DEFAULT 0, max_seq INTEGER NOT NULL DEFAULT -1, last_checkpoint TEXT NOT NULL DEFAULT ''
);
"""


class GatewayStatus(msgspec.Struct, frozen=True):
    id: str
    last_seen_ns: int
    batches: int
    entries: int
    duplicates: int
    gaps: int
    dropped: int
    max_seq: int
    last_checkpoint: str


class DedupeStore:
    """Runs on one worker thread of its owner."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=NORMAL")
        self.conn.executescript(SCHEMA)

    def close(self) -> None:
        self.conn.close()

    def unseen(self, gateway: str, seqs: Sequence[int]) -> set[int]:
        """Which of ``seqs`` the store does not hold yet."""
        held: set[int] = set()
        for i in range(0, len(seqs), 500):
            chunk = seqs[i : i + 500]
            marks = ",".join("?" * len(chunk))
            held.update(
                s
                for (s,) in self.conn.execute(
                    f"SELECT seq FROM received WHERE gateway=? AND seq IN ({marks})",  # noqa: S608
                    (gateway, *chunk),
                )
            )
        return set(seqs) - held

    def record(
        self,
        gateway: str,
        entries: Sequence[tuple[int, int, bytes]],
        *,
        now_ns: int,
        gaps: int,
        dropped: int,
        checkpoint: str | None,
    ) -> int:
        """Store ``entries``; return how many were new (the rest were duplicates)."""
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            before = self.conn.total_changes
            self.conn.executemany(
                "INSERT OR IGNORE INTO received(gateway, seq, kind, body) VALUES (?,?,?,?)",
                [(gateway, s, k, b) for s, k, b in entries],
            )
            new = self.conn.total_changes - before
            self.conn.execute("INSERT OR IGNORE INTO gateway(id) VALUES (?)", (gateway,))
            self.conn.execute(
                "UPDATE gateway SET last_seen_ns=MAX(last_seen_ns, ?), batches=batches+1, entries=entries+?, "
                "duplicates=duplicates+?, gaps=gaps+?, dropped=dropped+?, max_seq=MAX(max_seq, ?), "
                "last_checkpoint=COALESCE(?, last_checkpoint) WHERE id=?",
                (now_ns, new, len(entries) - new, gaps, dropped, max(s for s, _, _ in entries), checkpoint, gateway),
            )
            self.conn.execute("COMMIT")
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        return new

    def gateways(self) -> list[GatewayStatus]:
        rows = self.conn.execute(
            "SELECT id, last_seen_ns, batches, entries, duplicates, gaps, dropped, max_seq, last_checkpoint "
            "FROM gateway ORDER BY id"
        ).fetchall()
        return [GatewayStatus(*row) for row in rows]

    def seqs(self, gateway: str) -> list[int]:
        return [s for (s,) in self.conn.execute("SELECT seq FROM received WHERE gateway=? ORDER BY seq", (gateway,))]
