"""Bounded storage: hashes of entries retention removed are compacted away, while every proof about
what the gateway still holds keeps working and verify_log stays clean."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from avila_edge.audit import AuditLog, prove_consistency, prove_entry, verify_consistency, verify_inclusion, verify_log
from avila_edge.audit._tree import leaf_hash
from avila_edge.config.model import AuditConfig, JournalConfig
from avila_edge.core import AuditError, ManualClock, Reading
from avila_edge.journal import Journal

ORIGIN = "avila-edge/test-site"


def audit_rows(state: Path) -> int:
    conn = sqlite3.connect(state / "journal.sqlite3")
    try:
        leaves = conn.execute("SELECT COUNT(*) FROM audit_leaves").fetchone()[0]
        nodes = conn.execute("SELECT COUNT(*) FROM audit_node").fetchone()[0]
        checkpoints = conn.execute("SELECT COUNT(*) FROM audit_checkpoint").fetchone()[0]
    finally:
        conn.close()
    return int(leaves + nodes + checkpoints)


async def run(
    state: Path, batches: int, *, per_batch: int = 500, stuck_cursor: bool = False, cap: int = 300_000
) -> tuple[int, int]:
    """Journal ``batches`` batches under a small byte cap with a checkpoint after each; returns the
    journal's first and next seq."""
    clock = ManualClock()
    async with Journal.open(state / "journal.sqlite3", JournalConfig(max_bytes=cap), clock=clock) as journal:
        log = await AuditLog.attach(journal, state_dir=state, config=AuditConfig(), origin=ORIGIN, clock=clock)
        if stuck_cursor:
            await journal.cursor("uplink:cloud:readings")  # never moves: readings get dropped, events stay
        for _ in range(batches):
            now = clock.now_ns()
            start = journal.next_seq
            await journal.append(
                [Reading(point=f"p/{i % 7}", value=float(start + i), ts_source=now, ts_gateway=now)
                 for i in range(per_batch)]
            )  # fmt: skip
            clock.advance(1.0)
            await log.checkpoint()
            await journal.retain()
        return journal.first_seq, journal.next_seq


async def test_audit_storage_stays_bounded_as_entries_retire(tmp_path: Path) -> None:
    first_half, second_half = tmp_path / "a", tmp_path / "b"
    await run(first_half, 40)
    first_seq, next_seq = await run(second_half, 80)
    assert first_seq > next_seq // 2  # retention removed most of the history
    # twice the history, about the same audit rows: what is held, not what was ever written
    assert audit_rows(second_half) < audit_rows(first_half) * 1.3
    assert audit_rows(second_half) < (next_seq - first_seq) * 0.2 + 400

    report = verify_log(second_half)
    assert report.ok, report.problems
    assert report.entries_pruned == first_seq

    # an entry still held proves against the newest checkpoint
    seq = next_seq - 100
    bundle = prove_entry(second_half, seq)
    proof = [bytes.fromhex(h) for h in bundle["inclusion_proof"]]
    root = bytes.fromhex(bundle["root_hash"]["hex"])
    conn = sqlite3.connect(second_half / "journal.sqlite3")
    body = bytes(conn.execute("SELECT body FROM entry WHERE seq=?", (seq,)).fetchone()[0])
    sizes = [int(r[0]) for r in conn.execute("SELECT size FROM audit_checkpoint ORDER BY size")]
    conn.close()
    assert verify_inclusion(seq, bundle["tree_size"], leaf_hash(body), proof, root)

    # the oldest retained checkpoint (the anchor below the journal's first seq) is consistent with the newest
    assert sizes[0] <= first_seq < sizes[1]
    result = prove_consistency(second_half, sizes[0], sizes[-1])
    assert verify_consistency(
        sizes[0], sizes[-1], bytes.fromhex(result["from"]["root_hash"]["hex"]),
        bytes.fromhex(result["to"]["root_hash"]["hex"]), [bytes.fromhex(h) for h in result["consistency_proof"]],
    )  # fmt: skip
    # a checkpoint of entries long retired is gone: no proof from it
    with pytest.raises(AuditError):
        prove_consistency(second_half, 1000, sizes[-1])


async def test_dropped_readings_between_kept_events_compact_and_verify(tmp_path: Path) -> None:
    _, next_seq = await run(tmp_path, 40, stuck_cursor=True, cap=1_000_000)
    conn = sqlite3.connect(tmp_path / "journal.sqlite3")
    leaves = conn.execute("SELECT COUNT(*) FROM audit_leaves").fetchone()[0]
    conn.close()
    assert leaves * 16 < next_seq / 2  # most dropped stretches lost their leaf hashes
    report = verify_log(tmp_path)
    assert report.ok, report.problems
    assert report.entries_dropped > next_seq / 2
