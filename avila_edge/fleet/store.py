"""The receiver's dedupe store: which (gateway, seq) it already holds, and what it knows of each gateway.

Several receivers may share one store file (SQLite WAL with a busy timeout); every write is one short
transaction, and ``INSERT OR IGNORE`` on the (gateway, seq) key makes concurrent inserts safe.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path

import msgspec

from avila_edge.core import Event
from avila_edge.fleet.checkpoints import AuditStatus, CheckpointChecker

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
    audit: AuditStatus
    missing: int
    """Seqs below ``max_seq`` neither received nor reported dropped: the gateway's backlog still on its way."""


def _enter_wal(conn: sqlite3.Connection, *, attempts: int = 50) -> None:
    """Switch a store to WAL. Receivers starting together on a new store race for it, and SQLite answers
    the loser 'database is locked' at once instead of waiting: try again for up to ~5 s."""
    for attempt in range(attempts):
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or attempt == attempts - 1:
                raise
            time.sleep(0.1)


class DedupeStore:
    """Runs on one worker thread of its owner."""

    def __init__(self, path: Path, *, keys_dir: Path | None = None, trust_first_key: bool = False) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
        _enter_wal(self.conn)
        self.conn.execute("PRAGMA synchronous=FULL")  # an acked batch must survive a power cut of the receiver
        self.conn.executescript(SCHEMA)
        self.checker = CheckpointChecker(self.conn, keys_dir=keys_dir, trust_first_key=trust_first_key)

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
        audit_events: Sequence[Event] = (),
    ) -> int:
        """Store ``entries``; return how many were new (the rest were duplicates). ``audit_events`` are
        the new ``audit_key`` and ``checkpoint`` events among them, checked in the same transaction,
        which also folds the received entries into the content check (see ``checkpoints.py``)."""
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
            self.checker.ensure(gateway)
            for event in audit_events:
                if event.kind == "audit_key":
                    self.checker.announce(gateway, event)
                elif event.kind == "checkpoint":
                    self.checker.checkpoint(gateway, event)
            if audit_events:
                self.checker.link(gateway)
            self.checker.fold(gateway)
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
        return [
            GatewayStatus(
                gw,
                seen,
                batches,
                entries,
                dups,
                gaps,
                dropped,
                max_seq,
                cp,
                self.checker.status(gw),
                max(0, max_seq + 1 - entries - dropped),
            )
            for gw, seen, batches, entries, dups, gaps, dropped, max_seq, cp in rows
        ]

    def seqs(self, gateway: str) -> list[int]:
        return [s for (s,) in self.conn.execute("SELECT seq FROM received WHERE gateway=? ORDER BY seq", (gateway,))]
