"""The audit log wired into the gateway: leaves recorded inside every journal commit, signed checkpoints.

Leaf ``i`` is journal entry ``i``: its canonical body, hashed in the journal's own write transaction
(a commit hook), so after any crash the tree has exactly as many leaves as the journal has seqs. The
right edge of the tree (``Frontier``) stays in memory; only the hook touches it, on the writer thread.

Checkpoints are computed from committed rows only (a separate read connection), checked to extend
the previous checkpoint, signed, and journaled as ``checkpoint`` events — so a checkpoint is itself a
leaf of a later checkpoint, and ships with everything else.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import sqlite3
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Self, TypeVar

import msgspec

from avila_edge.audit._keys import KEY_FILE, DeviceKey, Verifier, check_name
from avila_edge.audit._note import Checkpoint, sign_note
from avila_edge.audit._store import SCHEMA, HashStore, StoredCheckpoint, blob
from avila_edge.audit._tree import Frontier, leaf_hash, verify_consistency
from avila_edge.config.model import AuditConfig
from avila_edge.core import AuditError, Clock, Event, JournalError
from avila_edge.journal import Entry, EntryKind, Journal, decode_event

logger = logging.getLogger(__name__)

T = TypeVar("T")

SOURCE = "audit"
"""``source`` of the events the audit log journals (``checkpoint``, ``audit_key``)."""

POLL = 0.25
"""Seconds between looks at the journal's growth while waiting for the next checkpoint."""

CATCH_UP_BATCH = 5000


def default_origin(site_id: str) -> str:
    """The checkpoint origin (and key name) of a site when the configuration names none."""
    return f"avila-edge/{site_id}"


class _Identity(msgspec.Struct, frozen=True):
    """What the audit tables say about who signs: the origin and every verifier key used so far."""

    origin: str | None
    verifier_keys: tuple[str, ...]


def recorded_verifiers(store: HashStore) -> list[Verifier]:
    """Every verifier key this log has signed with, oldest first."""
    keys = store.meta("verifier_keys")
    return [Verifier.parse(k) for k in keys.split("\n")] if keys else []


def connect(path: Path, *, readonly: bool) -> sqlite3.Connection:
    """A connection of our own to the journal database."""
    if readonly:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None, check_same_thread=False)
    else:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA busy_timeout=10000")
    return conn


class _Head(msgspec.Struct, frozen=True):
    """What the next checkpoint signs: the tree, and its consistency proof from the previous one."""

    size: int
    root: bytes
    previous: int | None
    proof: list[bytes]


class AuditLog:
    """The Merkle log over one journal. Make it with ``attach`` right after the journal opens."""

    def __init__(self, journal: Journal, key: DeviceKey, *, config: AuditConfig, clock: Clock) -> None:
        self.journal = journal
        self.key = key
        self.config = config
        self.clock = clock
        self._lock = threading.Lock()
        self._frontier: Frontier | None = None
        self._pending: set[str] = set()
        self._announce: str | None = None  # previous verifier key ('' for none) while the key is unrecorded
        self._signing = asyncio.Lock()
        self.last_checkpoint: StoredCheckpoint | None = None
        self.problem: str | None = None

    @property
    def origin(self) -> str:
        return self.key.name

    @property
    def verifier(self) -> Verifier:
        return self.key.verifier

    @property
    def size(self) -> int:
        """Leaves recorded so far (committed or inside the commit running now)."""
        frontier = self._frontier
        return 0 if frontier is None else frontier.size

    # -- attaching ----------------------------------------------------------------------------------

    @classmethod
    async def attach(cls, journal: Journal, *, state_dir: Path, config: AuditConfig, origin: str, clock: Clock) -> Self:
        """Hook the log into ``journal`` right after it opens (before anything is appended), load or
        make the device key at ``<state_dir>/keys/device.ed25519`` and bring the tree up to the
        journal's end. Appends nothing: other components may still add their hooks after this.

        When the signing key or origin differs from the one recorded, the first checkpoint is preceded
        by an ``audit_key`` event naming the new and the previous verifier key."""
        check_name(origin, "audit origin")
        key = await asyncio.to_thread(DeviceKey.load_or_create, state_dir / KEY_FILE, name=origin)
        log = cls(journal, key, config=config, clock=clock)
        journal.add_schema(SCHEMA)
        journal.add_commit_hook(log._on_commit)
        if not config.keep_retired_hashes:
            journal.add_removal_hook(log._on_removal)
        identity = await asyncio.to_thread(log._catch_up, journal.next_seq)
        current = key.verifier.text()
        if not identity.verifier_keys or identity.verifier_keys[-1] != current:
            previous = identity.verifier_keys[-1] if identity.verifier_keys else None
            if previous is not None:
                logger.warning(
                    "audit signing key changed from %s to %s (new key file or origin); the change is journaled",
                    previous,
                    current,
                )
            log._announce = previous or ""
        log.last_checkpoint = await asyncio.to_thread(log._read, lambda s: s.latest_checkpoint())
        return log

    async def _announce_key(self) -> None:
        """Journal the ``audit_key`` event that records the verifier key before it first signs."""
        if self._announce is None:
            return
        current = self.key.verifier.text()
        self._pending.add(current)
        try:
            await self.journal.append_events(
                [
                    Event(
                        kind="audit_key",
                        source=SOURCE,
                        ts=self.clock.now_ns(),
                        attrs={"verifier_key": current, "previous": self._announce or None},
                    )
                ]
            )
        finally:
            self._pending.discard(current)
        self._announce = None

    def _catch_up(self, next_seq: int) -> _Identity:
        """Record leaves for entries the tree lacks (the log was off when they were written)."""
        conn = connect(self.journal.path, readonly=False)
        try:
            store = HashStore(conn)
            with self._lock:
                frontier = store.load_frontier()
                while frontier.size < next_seq:
                    conn.execute("BEGIN IMMEDIATE")
                    try:
                        frontier = self._append_missing(store, frontier, next_seq)
                        conn.execute("COMMIT")
                    except BaseException:
                        conn.execute("ROLLBACK")
                        raise
                self._frontier = frontier
            keys = store.meta("verifier_keys")
            return _Identity(store.meta("origin"), tuple(keys.split("\n")) if keys else ())
        finally:
            conn.close()

    def _append_missing(self, store: HashStore, frontier: Frontier, end: int) -> Frontier:
        """One batch of leaves for journal rows from the tree's size towards ``end``, read through
        ``store``'s connection. Rows already removed cannot become leaves: that is an error."""
        start = frontier.size
        rows = store.conn.execute(
            "SELECT seq, body FROM entry WHERE seq >= ? AND seq < ? ORDER BY seq LIMIT ?",
            (start, end, CATCH_UP_BATCH),
        ).fetchall()
        if not rows or int(rows[0][0]) != start:
            found = int(rows[0][0]) if rows else end
            raise AuditError(
                f"journal {self.journal.path}: entries {start}..{found - 1} were removed before the audit log "
                "recorded them, so no audit tree can cover them; keep this journal without audit or start "
                "a new state directory"
            )
        leaves = [(int(seq), leaf_hash(blob(body))) for seq, body in rows]
        for i, (seq, _) in enumerate(leaves):
            if seq != start + i:
                raise AuditError(
                    f"journal {self.journal.path}: entries {start + i}..{seq - 1} were removed before the audit "
                    "log recorded them, so no audit tree can cover them"
                )
        frontier = frontier.copy()
        store.append(frontier, leaves)
        logger.info("audit tree caught up with journal entries %d..%d", start, leaves[-1][0])
        return frontier

    # -- the commit hook (journal writer thread, inside the write transaction) ----------------------

    def _on_commit(self, conn: sqlite3.Connection, entries: Sequence[Entry]) -> None:
        if not entries:
            return
        store = HashStore(conn)
        with self._lock:
            frontier = self._frontier
            first = entries[0].seq
            if frontier is None or frontier.size != first:
                # an earlier transaction rolled back after this hook ran: the tables are the truth
                frontier = store.load_frontier()
                while frontier.size < first:
                    frontier = self._append_missing(store, frontier, first)
                if frontier.size != first:
                    raise AuditError(f"audit tree has {frontier.size} leaves but the journal commits seq {first}")
            else:
                frontier = frontier.copy()
            store.append(frontier, [(e.seq, leaf_hash(e.body)) for e in entries])
            for e in entries:
                if e.kind is EntryKind.EVENT and b'"source":"audit"' in e.body:
                    self._record_event(store, e)
            self._frontier = frontier

    def _on_removal(self, conn: sqlite3.Connection, lowest: int, highest: int) -> None:
        """Retention removed entries (journal writer thread, inside its transaction): forget the
        hashes and checkpoints no proof about what is still held can need."""
        store = HashStore(conn)
        (first,) = conn.execute("SELECT MIN(seq) FROM entry").fetchone()
        first_seq = int(first) if first is not None else store.size()
        with self._lock:
            forgotten = store.forget_checkpoints(first_seq)
            store.prune(lowest, highest, first_seq=first_seq)
            for size in forgotten:  # their boundaries held hashes back when they were last looked at
                store.prune(max(0, size - 1), size, first_seq=first_seq)

    def _record_event(self, store: HashStore, entry: Entry) -> None:
        event = decode_event(entry.body)
        if event.source != SOURCE:
            return
        if event.kind == "checkpoint":
            note = event.attrs.get("note")
            if not isinstance(note, str) or note not in self._pending:
                logger.warning("checkpoint event at seq %d was not made by this audit log; not recorded", entry.seq)
                return
            root = base64.b64decode(str(event.attrs["root"]))
            store.add_checkpoint(StoredCheckpoint(int(event.attrs["size"]), root, note, entry.seq, event.ts))
        elif event.kind == "audit_key":
            key = event.attrs.get("verifier_key")
            if not isinstance(key, str) or key not in self._pending:
                logger.warning("audit_key event at seq %d was not made by this audit log; not recorded", entry.seq)
                return
            keys = store.meta("verifier_keys")
            store.set_meta("verifier_keys", f"{keys}\n{key}" if keys else key)
            store.set_meta("origin", Verifier.parse(key).name)

    # -- checkpoints --------------------------------------------------------------------------------

    def _read(self, fn: Callable[[HashStore], T]) -> T:
        conn = connect(self.journal.path, readonly=True)
        try:
            conn.execute("BEGIN")
            try:
                return fn(HashStore(conn))
            finally:
                conn.execute("COMMIT")
        finally:
            conn.close()

    def _head(self, store: HashStore) -> _Head | None:
        """The committed tree's size and root, if it holds more than checkpoints since the last one;
        checked to extend the last checkpoint, with the consistency proof from it."""
        size = store.size()
        previous = store.latest_checkpoint()
        if size == 0:
            return None
        if previous is not None:
            if size < previous.size:
                raise AuditError(f"audit tree has {size} leaves but a checkpoint of {previous.size} was signed")
            since = size - previous.size
            if since == 0 or store.checkpoint_events_between(previous.size, size) == since:
                return None
        root = store.root(size)
        if previous is None:
            return _Head(size, root, None, [])
        proof = store.consistency_proof(previous.size, size)
        if not verify_consistency(previous.size, size, previous.root, root, proof):
            raise AuditError(
                f"refusing to sign: the audit tree of {size} leaves does not extend the checkpoint of "
                f"{previous.size} leaves (journal seq {previous.seq}); the audit tables were altered"
            )
        return _Head(size, root, previous.size, proof)

    async def checkpoint(self) -> StoredCheckpoint | None:
        """Sign and journal a checkpoint of everything committed now; ``None`` if nothing but
        checkpoints was committed since the last one."""
        async with self._signing:
            await self._announce_key()
            head = await asyncio.to_thread(self._read, self._head)
            if head is None:
                return None
            size, root = head.size, head.root
            note = sign_note(Checkpoint(self.origin, size, root).text(), self.key)
            attrs: dict[str, object] = {"size": size, "root": base64.b64encode(root).decode(), "note": note}
            if head.previous is not None:  # lets a receiver check this extends what it verified before
                attrs["previous"] = head.previous
                attrs["proof"] = [base64.b64encode(h).decode() for h in head.proof]
            ts = self.clock.now_ns()
            self._pending.add(note)
            try:
                [event] = await self.journal.append_events(
                    [
                        Event(
                            kind="checkpoint",
                            source=SOURCE,
                            ts=ts,
                            attrs=attrs,
                        )
                    ]
                )
            finally:
                self._pending.discard(note)
            assert event.seq is not None
            checkpoint = StoredCheckpoint(size, root, note, event.seq, ts)
            self.last_checkpoint = checkpoint
            logger.debug("audit checkpoint of %d leaves at seq %d", size, event.seq)
            return checkpoint

    async def run(self) -> None:
        """Sign a checkpoint every ``checkpoint_interval`` seconds, or sooner once
        ``checkpoint_entries`` entries were journaled since the last one. Runs until cancelled (the
        gateway names the task ``audit.checkpoints``); failures are logged and tried again."""
        interval = self.config.checkpoint_interval
        every = max(1, self.config.checkpoint_entries)
        last_size = self.last_checkpoint.size if self.last_checkpoint is not None else 0
        while True:
            due = self.clock.monotonic() + interval
            while (now := self.clock.monotonic()) < due and self.journal.next_seq - last_size < every:
                await self.clock.sleep(min(POLL, due - now))
            try:
                checkpoint = await self.checkpoint()
            except (AuditError, JournalError) as exc:
                self.problem = str(exc)
                logger.error("audit checkpoint failed: %s", exc)  # noqa: TRY400 - the message is the story
                continue
            self.problem = None
            if checkpoint is not None:
                last_size = checkpoint.size
