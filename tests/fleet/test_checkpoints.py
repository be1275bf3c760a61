"""The fleet proves each gateway's audit log from what it received: signatures against the pinned key,
each checkpoint extending the one before, and the received entries hashing to the signed roots."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

from avila_edge.audit import KEY_FILE, AuditLog
from avila_edge.config.model import AuditConfig, JournalConfig
from avila_edge.core import ManualClock, Reading
from avila_edge.fleet.store import DedupeStore
from avila_edge.journal import Entry, EntryKind, Journal, decode_event

ORIGIN = "avila-edge/gw1"


async def gateway_log(state: Path, values: Sequence[float], *, checkpoint_every: int) -> tuple[list[Entry], str]:
    """Journal ``values`` with a checkpoint after every ``checkpoint_every`` readings; all entries and the key."""
    clock = ManualClock()
    async with Journal.open(state / "journal.sqlite3", JournalConfig(), clock=clock) as journal:
        log = await AuditLog.attach(journal, state_dir=state, config=AuditConfig(), origin=ORIGIN, clock=clock)
        for i in range(0, len(values), checkpoint_every):
            now = clock.now_ns()
            chunk = values[i : i + checkpoint_every]
            await journal.append([Reading(point="p/a", value=v, ts_source=now, ts_gateway=now) for v in chunk])
            clock.advance(1.0)
            await log.checkpoint()
        await journal.flush()
        entries = await journal.read(0, 1_000_000)
        return entries, log.verifier.text()


def deliver(store: DedupeStore, entries: Sequence[Entry], gateway: str = "gw1") -> None:
    """What the receiver does with a batch of new entries."""
    audit = [
        decode_event(e.body)
        for e in entries
        if e.kind is EntryKind.EVENT and decode_event(e.body).kind in ("checkpoint", "audit_key")
    ]
    store.record(
        gateway, [(e.seq, int(e.kind), e.body) for e in entries], now_ns=1, gaps=0, dropped=0, checkpoint=None,
        audit_events=audit,
    )  # fmt: skip


def checkpoints(entries: Sequence[Entry]) -> list[int]:
    return [int(decode_event(e.body).attrs["size"]) for e in entries if b'"kind":"checkpoint"' in e.body]


async def test_honest_history_is_signed_chained_and_content_verified(tmp_path: Path) -> None:
    entries, key = await gateway_log(tmp_path / "gw", [float(i) for i in range(50)], checkpoint_every=10)
    keys = tmp_path / "keys"
    keys.mkdir()
    (keys / "gw1.vkey").write_text(key + "\n")
    store = DedupeStore(tmp_path / "fleet.sqlite3", keys_dir=keys)
    try:
        # out of order, in pieces, with duplicates: as two receivers and two lanes deliver them
        deliver(store, entries[30:])
        assert store.gateways()[0].audit.content_verified == 0
        deliver(store, entries[:20])
        deliver(store, entries[10:35])
        (gw,) = store.gateways()
        sizes = checkpoints(entries)
        assert gw.audit.problem == ""
        assert gw.audit.chain_size == sizes[-1]
        assert gw.audit.content_verified == sizes[-1]
        assert gw.audit.pending == 0
        assert gw.audit.verifier_key == key
    finally:
        store.close()


async def test_an_altered_reading_is_found(tmp_path: Path) -> None:
    entries, key = await gateway_log(tmp_path / "gw", [float(i) for i in range(30)], checkpoint_every=10)
    forged = list(entries)
    forged[12] = Entry(
        12, EntryKind.READING, "p/a", entries[12].ts, entries[12].body.replace(b'"value":', b'"value":9')
    )
    assert forged[12].body != entries[12].body
    store = DedupeStore(tmp_path / "fleet.sqlite3", keys_dir=None, trust_first_key=True)
    try:
        deliver(store, forged)
        (gw,) = store.gateways()
        assert "do not hash to the signed checkpoint root" in gw.audit.problem
        assert gw.audit.content_verified == checkpoints(entries)[0]  # the first checkpoint precedes the forgery
        assert gw.audit.verifier_key == key  # pinned from the gateway's first audit_key event
    finally:
        store.close()


async def test_a_rewritten_history_under_the_same_key_is_a_fork(tmp_path: Path) -> None:
    first, key = await gateway_log(tmp_path / "a", [float(i) for i in range(20)], checkpoint_every=10)
    (tmp_path / "b" / "keys").mkdir(parents=True)
    shutil.copy(tmp_path / "a" / KEY_FILE, tmp_path / "b" / KEY_FILE)
    second, same = await gateway_log(tmp_path / "b", [float(-i) for i in range(20)], checkpoint_every=10)
    assert same == key
    keys = tmp_path / "keys"
    keys.mkdir()
    (keys / "gw1.vkey").write_text(key)
    store = DedupeStore(tmp_path / "fleet.sqlite3", keys_dir=keys)
    try:
        cut = checkpoints(first)[0] + 1  # entries up to and including the first checkpoint event
        deliver(store, first[:cut])
        deliver(store, second[cut:])  # the rest of a different history, signed by the same key
        (gw,) = store.gateways()
        assert gw.audit.chain_size == checkpoints(first)[0]
        assert "history was rewritten" in gw.audit.problem
    finally:
        store.close()


async def test_without_a_pinned_key_nothing_is_trusted(tmp_path: Path) -> None:
    entries, _ = await gateway_log(tmp_path / "gw", [1.0, 2.0, 3.0], checkpoint_every=3)
    store = DedupeStore(tmp_path / "fleet.sqlite3", keys_dir=tmp_path)
    try:
        deliver(store, entries)
        (gw,) = store.gateways()
        assert gw.audit.chain_size == 0 and gw.audit.content_verified == 0
        assert "no verifier key pinned" in gw.audit.problem
    finally:
        store.close()
