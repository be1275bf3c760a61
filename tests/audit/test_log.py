"""The audit log on a real journal: leaves in the commit transaction, checkpoints, catch-up, retention,
key changes, a rolled-back commit, and the checkpoint loop."""

from __future__ import annotations

import asyncio
import base64
import itertools
import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from avila_edge.audit import (
    AuditLog,
    Checkpoint,
    HashStore,
    open_checkpoint,
    prove_entry,
    verifier_keys,
    verify_inclusion,
    verify_log,
)
from avila_edge.audit._tree import leaf_hash, root_of
from avila_edge.config.model import AuditConfig, JournalConfig
from avila_edge.core import AuditError, Event, JournalError, ManualClock, Reading
from avila_edge.journal import Entry, EntryKind, Journal

ORIGIN = "avila-edge/test-site"


def readings(clock: ManualClock, start: int, count: int) -> list[Reading]:
    now = clock.now_ns()
    return [
        Reading(point=f"pump1/p{i % 5}", value=float(start + i), ts_source=now, ts_gateway=now) for i in range(count)
    ]


async def fill(journal: Journal, log: AuditLog, clock: ManualClock, *, batches: int, per_batch: int) -> None:
    for _ in range(batches):
        await journal.append(readings(clock, journal.next_seq, per_batch))
        clock.advance(1.0)
        assert await log.checkpoint() is not None


def db(state_dir: Path) -> Path:
    return state_dir / "journal.sqlite3"


async def attach(journal: Journal, state_dir: Path, clock: ManualClock, **config: float | bool) -> AuditLog:
    return await AuditLog.attach(journal, state_dir=state_dir, config=AuditConfig(**config), origin=ORIGIN, clock=clock)


def all_bodies(path: Path) -> list[tuple[int, bytes]]:
    conn = sqlite3.connect(path)
    rows = conn.execute("SELECT seq, body FROM entry ORDER BY seq").fetchall()
    conn.close()
    return [(s, bytes(b)) for s, b in rows]


async def test_every_commit_records_one_leaf_per_entry_in_the_same_transaction(tmp_path: Path) -> None:
    clock = ManualClock()
    async with Journal.open(db(tmp_path), JournalConfig(), clock=clock) as journal:
        log = await attach(journal, tmp_path, clock)
        for n in (1, 7, 300):
            await journal.append(readings(clock, journal.next_seq, n))
        assert log.size == journal.next_seq == 308
    conn = sqlite3.connect(db(tmp_path))
    leaves = [h for _, h in HashStore(conn).leaves(0, 1000)]
    conn.close()
    bodies = all_bodies(db(tmp_path))
    assert leaves == [leaf_hash(b) for _, b in bodies]


async def test_a_checkpoint_is_journaled_signed_and_recorded_and_covers_everything_before_it(tmp_path: Path) -> None:
    clock = ManualClock()
    async with Journal.open(db(tmp_path), JournalConfig(), clock=clock) as journal:
        log = await attach(journal, tmp_path, clock)
        await journal.append(readings(clock, 1, 10))
        cp = await log.checkpoint()
        assert cp is not None
        assert cp.size == 11 and cp.seq == 11
        [entry] = await journal.read(cp.seq, 1)
        event = entry.event()
        assert (event.kind, event.source) == ("checkpoint", "audit")
        assert event.attrs["size"] == 11
        assert event.attrs["note"] == cp.note
        assert base64.b64decode(event.attrs["root"]) == cp.root
        body = open_checkpoint(cp.note, [log.verifier])
        assert body == Checkpoint(ORIGIN, 11, cp.root)
        assert cp.root == root_of(leaf_hash(e.body) for e in await journal.read(0, 11))
        # nothing but the checkpoint itself since: no new checkpoint
        assert await log.checkpoint() is None
        await journal.append(readings(clock, 12, 1))
        later = await log.checkpoint()
        assert later is not None and later.size == 13


async def test_the_tree_catches_up_with_entries_journaled_while_the_audit_log_was_off(tmp_path: Path) -> None:
    clock = ManualClock()
    async with Journal.open(db(tmp_path), JournalConfig(), clock=clock) as journal:
        await journal.append(readings(clock, 0, 250))
    async with Journal.open(db(tmp_path), JournalConfig(), clock=clock) as journal:
        log = await attach(journal, tmp_path, clock)
        assert log.size == journal.next_seq == 250
        await journal.append(readings(clock, 251, 5))
        assert await log.checkpoint() is not None
    report = verify_log(tmp_path)
    assert report.ok, report.problems
    assert report.tree_size == 257


async def test_attaching_to_a_journal_whose_first_entries_were_already_removed_is_refused(tmp_path: Path) -> None:
    clock = ManualClock()
    async with Journal.open(db(tmp_path), JournalConfig(), clock=clock) as journal:
        await journal.append(readings(clock, 0, 20))
    conn = sqlite3.connect(db(tmp_path))
    conn.execute("DELETE FROM entry WHERE seq < 5")
    conn.commit()
    conn.close()
    async with Journal.open(db(tmp_path), JournalConfig(), clock=clock) as journal:
        with pytest.raises(AuditError, match=r"entries 0\.\.4 were removed before the audit log recorded them"):
            await attach(journal, tmp_path, clock)


async def test_a_commit_rolled_back_after_the_hook_leaves_the_tree_equal_to_the_journal(tmp_path: Path) -> None:
    clock = ManualClock()
    failures = [1]

    def flaky(conn: sqlite3.Connection, entries: Sequence[Entry]) -> None:
        if failures:
            failures.pop()
            raise RuntimeError("disk hiccup")

    async with Journal.open(db(tmp_path), JournalConfig(), clock=clock) as journal:
        log = await attach(journal, tmp_path, clock)
        journal.add_commit_hook(flaky)  # runs after the audit hook, in the same transaction
        with pytest.raises((JournalError, RuntimeError)):
            await journal.append(readings(clock, 1, 10))
        assert journal.next_seq == 0
        await journal.append(readings(clock, 1, 10))
        assert await log.checkpoint() is not None
        assert log.size == journal.next_seq
    report = verify_log(tmp_path)
    assert report.ok, report.problems


async def test_entries_removed_by_retention_keep_their_hashes_and_still_prove(tmp_path: Path) -> None:
    clock = ManualClock()
    config = JournalConfig(max_bytes=200_000)
    async with Journal.open(db(tmp_path), config, clock=clock) as journal:
        log = await attach(journal, tmp_path, clock, keep_retired_hashes=True)
        await fill(journal, log, clock, batches=4, per_batch=500)
        kept = dict(all_bodies(db(tmp_path)))
        await journal.retain()
        assert journal.first_seq > 100, "retention should have removed the oldest entries"
        await journal.append(readings(clock, journal.next_seq, 10))
        assert await log.checkpoint() is not None
    bundle = prove_entry(tmp_path, 100)
    assert bundle["entry_hex"] is None and bundle["entry_pruned"] is True
    synced_copy = kept[100]  # the auditor brings the entry from the cloud's copy
    assert leaf_hash(synced_copy).hex() == bundle["leaf_hash"]
    proof = [bytes.fromhex(h) for h in bundle["inclusion_proof"]]
    root = bytes.fromhex(bundle["root_hash"]["hex"])
    assert verify_inclusion(100, bundle["tree_size"], leaf_hash(synced_copy), proof, root)
    assert not verify_inclusion(100, bundle["tree_size"], leaf_hash(synced_copy + b" "), proof, root)
    report = verify_log(tmp_path)
    assert report.ok, report.problems
    assert report.entries_pruned > 100


async def test_readings_dropped_by_retention_are_explained_by_their_gap_event(tmp_path: Path) -> None:
    clock = ManualClock()
    config = JournalConfig(max_bytes=150_000)
    async with Journal.open(db(tmp_path), config, clock=clock) as journal:
        log = await attach(journal, tmp_path, clock)
        await journal.cursor("uplink[cloud]")  # a cursor at 0 that never moves: readings must be dropped
        await fill(journal, log, clock, batches=4, per_batch=500)
        await journal.retain()
        assert journal.stats().dropped > 0
        assert await log.checkpoint() is not None
    report = verify_log(tmp_path)
    assert report.ok, report.problems
    assert report.entries_dropped == journal.stats().dropped


async def test_a_new_key_file_is_journaled_as_a_key_change_and_both_keys_verify(tmp_path: Path) -> None:
    clock = ManualClock()
    async with Journal.open(db(tmp_path), JournalConfig(), clock=clock) as journal:
        log = await attach(journal, tmp_path, clock)
        await fill(journal, log, clock, batches=2, per_batch=10)
        first_key = log.verifier.text()
    (tmp_path / "keys" / "device.ed25519").unlink()
    async with Journal.open(db(tmp_path), JournalConfig(), clock=clock) as journal:
        log = await attach(journal, tmp_path, clock)
        assert log.verifier.text() != first_key
        start = journal.next_seq
        await fill(journal, log, clock, batches=1, per_batch=10)
        kinds = [e.event().kind for e in await journal.read(start, 100, kinds=[EntryKind.EVENT])]
        assert kinds == ["audit_key", "checkpoint"]
        [entry] = await journal.read(start + 10, 1)
        assert entry.event().attrs == {"verifier_key": log.verifier.text(), "previous": first_key}
    assert verifier_keys(tmp_path) == [first_key, log.verifier.text()]
    report = verify_log(tmp_path)
    assert report.ok, report.problems
    assert report.checkpoints_checked == 3


async def test_an_event_claiming_to_be_a_checkpoint_is_not_recorded_as_one(tmp_path: Path) -> None:
    clock = ManualClock()
    async with Journal.open(db(tmp_path), JournalConfig(), clock=clock) as journal:
        log = await attach(journal, tmp_path, clock)
        real = await log.checkpoint()
        assert real is not None
        fake = Event(kind="checkpoint", source="audit", ts=clock.now_ns(), attrs={"size": 1, "root": "", "note": "x"})
        await journal.append_events([fake])
    conn = sqlite3.connect(db(tmp_path))
    sizes = [s for (s,) in conn.execute("SELECT size FROM audit_checkpoint")]
    conn.close()
    assert sizes == [real.size]


async def advance_until(clock: ManualClock, done: Callable[[], bool]) -> None:
    """Move manual time in 0.25 s steps until ``done()``; at most 30 real seconds (a loaded machine)."""
    async with asyncio.timeout(30):
        while not done():
            clock.advance(0.25)
            await asyncio.sleep(0.005)


async def test_the_loop_signs_after_checkpoint_entries_new_entries(tmp_path: Path) -> None:
    clock = ManualClock()
    async with Journal.open(db(tmp_path), JournalConfig(), clock=clock) as journal:
        log = await attach(journal, tmp_path, clock, checkpoint_interval=3600.0, checkpoint_entries=100)
        async with asyncio.TaskGroup() as tg:
            task = tg.create_task(log.run(), name="audit.checkpoints")
            await journal.append(readings(clock, 1, 150))
            await advance_until(clock, lambda: log.last_checkpoint is not None)
            task.cancel()
        assert log.last_checkpoint is not None
        assert log.last_checkpoint.size == 151
        assert clock.monotonic() < 3600, "signed because of the entries, not the interval"


async def test_the_loop_signs_every_checkpoint_interval_and_stops_when_cancelled(tmp_path: Path) -> None:
    clock = ManualClock()
    async with Journal.open(db(tmp_path), JournalConfig(), clock=clock) as journal:
        log = await attach(journal, tmp_path, clock, checkpoint_interval=10.0, checkpoint_entries=10_000)
        signed: list[tuple[int, float]] = []
        async with asyncio.TaskGroup() as tg:
            task = tg.create_task(log.run(), name="audit.checkpoints")
            for _ in range(3):
                await journal.append(readings(clock, journal.next_seq, 5))
                seen = len(signed)

                def new_checkpoint(seen: int = seen) -> bool:
                    cp = log.last_checkpoint
                    if cp is not None and (not signed or cp.size != signed[-1][0]):
                        signed.append((cp.size, clock.monotonic()))
                    return len(signed) > seen

                await advance_until(clock, new_checkpoint)
            task.cancel()
        assert task.cancelled()
        assert [size for size, _ in signed] == [6, 12, 18]
        times = [0.0] + [t for _, t in signed]
        assert all(b - a >= 9.5 for a, b in itertools.pairwise(times)), f"signed before the interval: {times}"
