"""Audit log: leaves appended per second (tree alone, and through the journal), disk per entry, and the
time to produce proofs from the stored hashes of a 10-million-entry tree.

The big tree is built synthetically (random leaf hashes, subtrees computed level by level and inserted
with executemany) because only the proof path is being measured; proofs are checked before timing.
"""

from __future__ import annotations

import hashlib
import os
import random
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

from avila_edge.audit import AuditLog, Frontier, HashStore, leaf_hash, verify_consistency, verify_inclusion
from avila_edge.audit._store import BLOCK, SCHEMA, STRIDE
from avila_edge.config.model import AuditConfig, JournalConfig
from avila_edge.core import Reading, SystemClock
from avila_edge.journal import Journal, encode_reading
from bench._table import Row

BATCH = 1000
BIG = 10_000_000
CHUNK = 1 << 16


def _readings(start: int) -> list[Reading]:
    now = time.time_ns()
    return [
        Reading(point=f"pump{i % 10}/p{i % 50}", value=float(start + i), ts_source=now, ts_gateway=now)
        for i in range(BATCH)
    ]


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={JournalConfig().synchronous.value}")  # as the journal under test
    conn.executescript(SCHEMA)
    return conn


def _tree_alone(path: Path, seconds: float) -> tuple[float, float]:
    """Leaves/s into the audit tables (hash + frontier + insert, 1,000 per commit), and raw SHA-256
    leaf hashing of the same bodies for comparison."""
    bodies = [encode_reading(r, i) for i, r in enumerate(_readings(0))]
    started, n = time.perf_counter(), 0
    while time.perf_counter() - started < seconds:
        for b in bodies:
            hashlib.sha256(b"\x00" + b).digest()
        n += BATCH
    raw = n / (time.perf_counter() - started)

    conn = _connect(path)
    store = HashStore(conn)
    frontier = Frontier()
    started, n = time.perf_counter(), 0
    while time.perf_counter() - started < seconds:
        conn.execute("BEGIN")
        store.append(frontier, [(n + i, leaf_hash(b)) for i, b in enumerate(bodies)])
        conn.execute("COMMIT")
        n += BATCH
    rate = n / (time.perf_counter() - started)
    conn.close()
    return rate, raw


async def _journal(path: Path, seconds: float, *, audited: bool) -> tuple[float, float, float]:
    """Readings/s through ``Journal.append`` (1,000 per append); bytes per entry of the audit tables
    and of the journal's own entry table and index."""
    clock = SystemClock()
    async with Journal.open(path / "journal.sqlite3", JournalConfig(), clock=clock) as journal:
        if audited:
            log = await AuditLog.attach(
                journal, state_dir=path, config=AuditConfig(), origin="bench/audit", clock=clock
            )
        n, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            await journal.append(_readings(n))
            n += BATCH
        elapsed = time.perf_counter() - started
        if audited:
            await log.checkpoint()
        entries = journal.next_seq
    db = path / "journal.sqlite3"
    per = max(entries, 1)
    return n / elapsed, _table_bytes(db, "audit_%") / per, _table_bytes(db, "entry%") / per


def _table_bytes(db: Path, pattern: str) -> float:
    """Bytes on disk of the tables (and their indexes) named like ``pattern`` (SQLite's dbstat)."""
    conn = sqlite3.connect(db)
    try:
        row = conn.execute("SELECT SUM(pgsize) FROM dbstat WHERE name LIKE ?", (pattern,)).fetchone()
    except sqlite3.OperationalError:  # SQLite built without dbstat
        return float("nan")
    finally:
        conn.close()
    return float(row[0] or 0)


def build_big(path: Path, size: int) -> sqlite3.Connection:
    """A store of ``size`` random leaves with every stored subtree, built level by level."""
    conn = _connect(path)
    conn.execute("PRAGMA synchronous=OFF")
    top = Frontier()  # over the roots of complete chunks (level 16)
    chunk_level = CHUNK.bit_length() - 1
    conn.execute("BEGIN")
    for start in range(0, size, CHUNK):
        count = min(CHUNK, size - start)
        raw = os.urandom(32 * count)
        row = [raw[i : i + 32] for i in range(0, len(raw), 32)]
        step = 32 * BLOCK
        conn.executemany(
            "INSERT INTO audit_leaves(block, hashes) VALUES (?, ?)",
            [((start + i // 32) // BLOCK, raw[i : i + step]) for i in range(0, len(raw), step)],
        )
        level = 0
        while len(row) > 1:
            row = [hashlib.sha256(b"\x01" + row[i] + row[i + 1]).digest() for i in range(0, len(row) - 1, 2)]
            level += 1
            if level % STRIDE == 0:
                base = start >> level
                conn.executemany(
                    "INSERT INTO audit_node(level, idx, hash) VALUES (?, ?, ?)",
                    [(level, base + i, h) for i, h in enumerate(row)],
                )
        if count == CHUNK:
            for lvl, index, node in top.append(row[0]):
                if lvl and (lvl + chunk_level) % STRIDE == 0:
                    conn.execute(
                        "INSERT INTO audit_node(level, idx, hash) VALUES (?, ?, ?)", (lvl + chunk_level, index, node)
                    )
    conn.execute("COMMIT")
    return conn


def _proof_times(store: HashStore, size: int, samples: int) -> tuple[float, float]:
    """Median milliseconds to produce an inclusion proof (random leaf, tree of ``size``) and a
    consistency proof (random earlier size to ``size``); every proof is checked once first."""
    rng = random.Random(9162)
    root = store.root(size)
    leaves = [rng.randrange(size) for _ in range(samples)]
    firsts = [rng.randrange(1, size) for _ in range(samples)]
    for index, first in zip(leaves[:5], firsts[:5], strict=True):
        leaf = store.leaf(index)
        assert leaf is not None
        assert verify_inclusion(index, size, leaf, store.inclusion_proof(index, size), root)
        assert verify_consistency(first, size, store.root(first), root, store.consistency_proof(first, size))
    inclusion, consistency = [], []
    for index in leaves:
        started = time.perf_counter()
        store.inclusion_proof(index, size)
        inclusion.append(time.perf_counter() - started)
    for first in firsts:
        started = time.perf_counter()
        store.consistency_proof(first, size)
        consistency.append(time.perf_counter() - started)
    return statistics.median(inclusion) * 1e3, statistics.median(consistency) * 1e3


async def run(seconds: float) -> list[Row]:
    big = BIG if seconds >= 1 else BIG // 10
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        tree_rate, hash_rate = _tree_alone(root / "tree.sqlite3", seconds)
        (root / "plain").mkdir()
        (root / "audited").mkdir()
        plain_rate, _, _ = await _journal(root / "plain", seconds, audited=False)
        audited_rate, audit_bytes, entry_bytes = await _journal(root / "audited", seconds, audited=True)
        started = time.perf_counter()
        conn = build_big(root / "big.sqlite3", big)
        build_seconds = time.perf_counter() - started
        inclusion_ms, consistency_ms = _proof_times(HashStore(conn), big, 200)
        conn.close()
    millions = f"{big / 1e6:g}M"
    return [
        Row("audit", "leaves appended, tree alone (1,000/commit)", tree_rate, "leaves/s", hash_rate,
            "SHA-256 of the same leaves only"),
        Row("audit", "readings appended, journal + audit", audited_rate, "readings/s", plain_rate,
            "same journal without audit"),
        Row("audit", "audit tables on disk per entry", audit_bytes, "B", entry_bytes,
            "journal entry rows + index per entry"),
        Row("audit", f"inclusion proof at {millions} entries (median)", inclusion_ms, "ms"),
        Row("audit", f"consistency proof at {millions} entries (median)", consistency_ms, "ms"),
        Row("audit", f"build the synthetic {millions}-leaf store", build_seconds, "s"),
    ]  # fmt: skip
