"""Proofs for auditors, computed offline from a gateway's state directory.

The journal database is opened read-only inside one read transaction, so this runs safely next to a
live gateway. Every proof is checked against its signed checkpoint before it is returned.
"""

from __future__ import annotations

import base64
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from avila_edge.audit._keys import Verifier
from avila_edge.audit._log import connect, recorded_verifiers
from avila_edge.audit._note import Checkpoint, open_checkpoint
from avila_edge.audit._store import HashStore, StoredCheckpoint, blob, has_audit_tables
from avila_edge.audit._tree import leaf_hash, verify_consistency, verify_inclusion
from avila_edge.core import AuditError

JOURNAL_FILE = "journal.sqlite3"
"""The journal database inside a state directory."""


def open_state(state_dir: Path) -> sqlite3.Connection:
    """A read-only connection to the journal of ``state_dir`` that has audit tables."""
    path = state_dir / JOURNAL_FILE
    if not path.is_file():
        raise AuditError(f"no journal at {path}")
    try:
        conn = connect(path, readonly=True)
        tables = has_audit_tables(conn)
    except sqlite3.Error as exc:
        raise AuditError(f"{path}: cannot be opened as a journal: {exc}") from exc
    if not tables:
        conn.close()
        raise AuditError(f"{path}: the audit log was never enabled on this journal")
    return conn


def trusted_verifiers(store: HashStore, trusted: Sequence[Verifier] | None) -> list[Verifier]:
    if trusted:
        return list(trusted)
    verifiers = recorded_verifiers(store)
    if not verifiers:
        raise AuditError("no verifier key is recorded in the journal; pass one with --key")
    return verifiers


def _hex(h: bytes) -> str:
    return h.hex()


def _root(h: bytes) -> dict[str, str]:
    return {"hex": h.hex(), "base64": base64.b64encode(h).decode()}


def _checkpoint_json(cp: StoredCheckpoint) -> dict[str, Any]:
    return {"size": cp.size, "seq": cp.seq, "root_hash": _root(cp.root), "note": cp.note}


# -- proofs -----------------------------------------------------------------------------------------


def prove_entry(
    state_dir: Path, seq: int, *, size: int | None = None, trusted: Sequence[Verifier] | None = None
) -> dict[str, Any]:
    """The inclusion proof of journal entry ``seq`` against the newest checkpoint covering it (or the
    checkpoint of exactly ``size`` leaves), checked before it is returned."""
    conn = open_state(state_dir)
    try:
        conn.execute("BEGIN")
        store = HashStore(conn)
        verifiers = trusted_verifiers(store, trusted)
        tree_size = store.size()
        if not 0 <= seq < tree_size:
            raise AuditError(f"entry {seq} is not in the audit tree, which holds entries 0..{tree_size - 1}")
        if size is None:
            cp = store.latest_checkpoint(above=seq)
            if cp is None:
                raise AuditError(
                    f"no checkpoint covers entry {seq} yet (the newest covers "
                    f"{_newest(store)}); the gateway signs one every checkpoint_interval — try again then"
                )
        else:
            cp = store.checkpoint(size)
            if cp is None:
                raise AuditError(f"there is no checkpoint of {size} leaves; nearest: {store.checkpoints_near(size)}")
            if seq >= size:
                raise AuditError(f"the checkpoint of {size} leaves does not cover entry {seq}")
        checkpoint = _open(cp, verifiers)
        leaf = store.leaf(seq)
        if leaf is None:
            raise AuditError(f"the audit tree lacks the leaf hash of entry {seq}: its tables are damaged")
        row = conn.execute("SELECT body FROM entry WHERE seq = ?", (seq,)).fetchone()
        body = None if row is None else blob(row[0])
        proof = store.inclusion_proof(seq, cp.size)
        if not verify_inclusion(seq, cp.size, leaf, proof, checkpoint.root):
            raise AuditError(f"the recorded hashes do not prove entry {seq} in the checkpoint of {cp.size} leaves")
        result: dict[str, Any] = {
            "seq": seq,
            "leaf_index": seq,
            "tree_size": cp.size,
            "entry_hex": None if body is None else body.hex(),
            "leaf_hash": _hex(leaf),
            "inclusion_proof": [_hex(h) for h in proof],
            "root_hash": _root(checkpoint.root),
            "checkpoint": cp.note,
            "checkpoint_seq": cp.seq,
            "origin": checkpoint.origin,
        }
        if body is None:
            result["entry_pruned"] = True
            result["note"] = (
                f"the payload of entry {seq} was removed by retention; the proof still holds for the entry bytes "
                "from a synced copy (leaf hash = SHA-256(0x00 || entry))"
            )
        elif leaf_hash(body) != leaf:
            raise AuditError(f"entry {seq} no longer matches its recorded leaf hash: it was modified")
        return result
    finally:
        conn.close()


def prove_consistency(
    state_dir: Path, first: int, second: int, *, trusted: Sequence[Verifier] | None = None
) -> dict[str, Any]:
    """The consistency proof between the checkpoints of ``first`` and ``second`` leaves, checked."""
    if not 0 < first <= second:
        raise AuditError(f"--from must be at least 1 and at most --to (got {first} and {second})")
    conn = open_state(state_dir)
    try:
        conn.execute("BEGIN")
        store = HashStore(conn)
        verifiers = trusted_verifiers(store, trusted)
        cps: list[StoredCheckpoint] = []
        for size in (first, second):
            cp = store.checkpoint(size)
            if cp is None:
                raise AuditError(f"there is no checkpoint of {size} leaves; nearest: {store.checkpoints_near(size)}")
            cps.append(cp)
        old, new = cps
        old_root, new_root = _open(old, verifiers).root, _open(new, verifiers).root
        proof = store.consistency_proof(first, second)
        if not verify_consistency(first, second, old_root, new_root, proof):
            raise AuditError(f"the recorded hashes do not prove the tree of {second} leaves extends the one of {first}")
        return {
            "from": _checkpoint_json(old),
            "to": _checkpoint_json(new),
            "consistency_proof": [_hex(h) for h in proof],
        }
    finally:
        conn.close()


def verifier_keys(state_dir: Path) -> list[str]:
    """The verifier keys the log has signed with, oldest first (the last one signs now)."""
    conn = open_state(state_dir)
    try:
        keys = [v.text() for v in recorded_verifiers(HashStore(conn))]
    finally:
        conn.close()
    if not keys:
        raise AuditError(f"{state_dir / JOURNAL_FILE}: no verifier key recorded yet (has the gateway run?)")
    return keys


def _newest(store: HashStore) -> str:
    cp = store.latest_checkpoint()
    return "nothing" if cp is None else f"entries 0..{cp.size - 1}"


def _open(cp: StoredCheckpoint, verifiers: Sequence[Verifier]) -> Checkpoint:
    try:
        checkpoint = open_checkpoint(cp.note, verifiers)
    except AuditError as exc:
        raise AuditError(f"checkpoint of {cp.size} leaves (journal seq {cp.seq}): {exc}") from None
    if checkpoint.size != cp.size or checkpoint.root != cp.root:
        raise AuditError(
            f"checkpoint of {cp.size} leaves (journal seq {cp.seq}): the recorded size/root differ from the signed note"
        )
    return checkpoint
