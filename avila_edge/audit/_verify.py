"""Offline verification of a gateway's whole audit log.

The journal database is opened read-only inside one read transaction, so this runs next to a live
gateway and sees one consistent moment of it.

``verify_log`` recomputes every leaf from the journal bodies (streamed in batches; hashing runs in a
worker thread while the next batch is read), compares them with the recorded leaf hashes and stored
subtrees, recomputes the root at every checkpoint size and checks every checkpoint's signature. It
explains every missing row (removed by retention below the oldest kept entry, or dropped and recorded
by a ``gap`` event) and reports the rest, first seq first.
"""

from __future__ import annotations

import heapq
import sqlite3
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Literal

import msgspec

from avila_edge.audit._keys import Verifier
from avila_edge.audit._note import open_checkpoint
from avila_edge.audit._prove import JOURNAL_FILE, open_state, trusted_verifiers
from avila_edge.audit._store import BLOCK, STRIDE, HashStore, StoredCheckpoint, blob
from avila_edge.audit._tree import Frontier, leaf_hash
from avila_edge.core import AuditError
from avila_edge.journal import body_seq, decode_event

BATCH = 10_000
MAX_PROBLEMS = 100

Reason = Literal["modified", "deleted", "reordered", "truncated", "bad_signature", "unrecorded", "damaged", "compacted"]


class Problem(msgspec.Struct, frozen=True):
    """One finding: the journal ``seq`` it concerns, a one-word ``reason`` and the details."""

    seq: int | None
    reason: Reason
    detail: str


class VerifyReport(msgspec.Struct):
    """What ``verify_log`` checked and found. ``problems`` are sorted by seq (at most 100)."""

    ok: bool
    journal: str
    tree_size: int
    next_seq: int
    first_seq: int
    entries_checked: int
    entries_pruned: int
    entries_dropped: int
    checkpoints_checked: int
    verifier_keys: list[str]
    problems: list[Problem]


# -- verification -----------------------------------------------------------------------------------


class _Problems:
    def __init__(self) -> None:
        self.items: list[Problem] = []
        self.count = 0

    def add(self, seq: int | None, reason: Reason, detail: str) -> None:
        self.count += 1
        if len(self.items) < MAX_PROBLEMS:
            self.items.append(Problem(seq, reason, detail))

    def sorted(self) -> list[Problem]:
        return sorted(self.items, key=lambda p: -1 if p.seq is None else p.seq)


def _gap_ranges(conn: sqlite3.Connection) -> list[tuple[int, int]]:
    """Seq ranges the journal recorded as dropped (``gap`` events)."""
    ranges: list[tuple[int, int]] = []
    position = 0
    while True:
        rows = conn.execute(
            "SELECT seq, body FROM entry WHERE kind = 1 AND seq >= ? ORDER BY seq LIMIT ?", (position, BATCH)
        ).fetchall()
        for _, value in rows:
            body = blob(value)
            if b'"kind":"gap"' in body:
                try:
                    attrs = decode_event(body).attrs
                    ranges.append((int(attrs["first_seq"]), int(attrs["last_seq"])))
                except (msgspec.DecodeError, KeyError, TypeError, ValueError):
                    continue  # a damaged body is reported as modified by the leaf check
        if len(rows) < BATCH:
            return sorted(ranges)
        position = int(rows[-1][0]) + 1


def _hash_rows(rows: list[tuple[int, bytes]]) -> list[tuple[int, bytes, bytes]]:
    return [(seq, body, leaf_hash(body)) for seq, body in rows]


def _batches(conn: sqlite3.Connection, end: int, pool: ThreadPoolExecutor) -> Iterator[list[tuple[int, bytes, bytes]]]:
    """``(seq, body, leaf hash)`` of the journal rows below ``end``; the next batch hashes while this
    one is checked."""
    position = 0
    pending: Future[list[tuple[int, bytes, bytes]]] | None = None
    while True:
        rows = conn.execute(
            "SELECT seq, body FROM entry WHERE seq >= ? AND seq < ? ORDER BY seq LIMIT ?", (position, end, BATCH)
        ).fetchall()
        ready = pending.result() if pending is not None else None
        pending = pool.submit(_hash_rows, [(int(s), blob(b)) for s, b in rows]) if rows else None
        if ready:
            yield ready
        if not rows:
            return
        position = int(rows[-1][0]) + 1


class _Walk:
    """State of one pass over the leaves, in seq order."""

    def __init__(
        self,
        store: HashStore,
        verifiers: Sequence[Verifier],
        problems: _Problems,
        supplied: Sequence[StoredCheckpoint],
    ) -> None:
        self.store = store
        self.verifiers = verifiers
        self.problems = problems
        self.frontier = Frontier()
        self.last_bad = -1
        self.last_good_checkpoint = 0
        self.checkpoints = heapq.merge(store.checkpoints(), sorted(supplied, key=_size), key=_size)
        self.next_cp: StoredCheckpoint | None = next(self.checkpoints, None)
        self.checked = 0
        self.completed: list[tuple[int, int, bytes]] = []

    def feed(self, leaf: bytes) -> None:
        for level, index, node in self.frontier.append(leaf):
            if level and level % STRIDE == 0:
                self.completed.append((level, index, node))
        if self.next_cp is not None and self.next_cp.size <= self.frontier.size:
            self.flush_nodes()
        while self.next_cp is not None and self.next_cp.size <= self.frontier.size:
            self._checkpoint(self.next_cp)
            self.next_cp = next(self.checkpoints, None)

    def feed_subtree(self, level: int, node: bytes) -> None:
        """A compacted range: its stored subtree stands for its leaves."""
        for lvl, index, completed in self.frontier.append_subtree(level, node):
            if lvl > level and lvl % STRIDE == 0:
                self.completed.append((lvl, index, completed))
        if self.next_cp is not None and self.next_cp.size <= self.frontier.size:
            self.flush_nodes()
        while self.next_cp is not None and self.next_cp.size <= self.frontier.size:
            self._checkpoint(self.next_cp)
            self.next_cp = next(self.checkpoints, None)

    def mark_bad(self, seq: int) -> None:
        self.last_bad = max(self.last_bad, seq)

    def flush_nodes(self) -> None:
        """Compare the stored subtrees completed since the last call with the recomputed ones."""
        by_level: dict[int, list[tuple[int, bytes]]] = {}
        for level, index, node in self.completed:
            by_level.setdefault(level, []).append((index, node))
        self.completed = []
        for level, nodes in by_level.items():
            stored = self.store.stored_nodes(level, nodes[0][0], nodes[-1][0])
            for index, node in nodes:
                first, last = index << level, ((index + 1) << level) - 1
                if first <= self.last_bad:
                    continue  # already explained by a leaf reported inside it
                if stored.get(index) != node:
                    self.problems.add(
                        first,
                        "modified",
                        f"entries {first}..{last} no longer hash to their recorded subtree: an entry was rewritten "
                        "together with its leaf hash, or the subtree hash was",
                    )
                    self.mark_bad(last)

    def _checkpoint(self, cp: StoredCheckpoint) -> None:
        self.checked += 1
        where = cp.seq if cp.seq >= 0 else cp.size - 1
        try:
            checkpoint = open_checkpoint(cp.note, self.verifiers)
        except AuditError as exc:
            self.problems.add(where, "bad_signature", f"{label(cp)}: {exc}")
            return
        if checkpoint.size != cp.size or checkpoint.root != cp.root:
            self.problems.add(where, "damaged", f"{label(cp)}: the recorded size/root differ from its signed note")
        if self.frontier.size != checkpoint.size:
            if self.frontier.size > checkpoint.size:  # it falls inside a range compacted to one subtree
                self.problems.add(
                    cp.size - 1,
                    "compacted",
                    f"{label(cp)} ends inside entries retired long ago, whose leaf hashes were compacted; "
                    "check a newer checkpoint",
                )
            return  # otherwise reported as truncated by the caller
        if self.frontier.root() != checkpoint.root:
            if self.last_bad >= self.last_good_checkpoint:
                self.problems.add(where, "modified", f"{label(cp)} no longer matches the journal")
            else:
                first = self.last_good_checkpoint
                self.problems.add(
                    first,
                    "modified",
                    f"{label(cp)} no longer matches the journal: an entry in {first}..{cp.size - 1} was altered "
                    "together with all of its recorded hashes",
                )
                self.mark_bad(cp.size - 1)
        else:
            self.last_good_checkpoint = cp.size


def _size(cp: StoredCheckpoint) -> int:
    return cp.size


def label(cp: StoredCheckpoint) -> str:
    if cp.seq < 0:
        return f"the supplied checkpoint of {cp.size} leaves"
    return f"checkpoint of {cp.size} leaves (journal seq {cp.seq})"


def verify_log(
    state_dir: Path, *, trusted: Sequence[Verifier] | None = None, checkpoints: Sequence[str] = ()
) -> VerifyReport:
    """Check the journal of ``state_dir`` against its audit tree and signed checkpoints.

    ``checkpoints`` are signed notes the auditor already holds (e.g. the newest one the cloud
    received): the journal must still extend each of them, which also catches a journal cut back to
    an earlier state together with its own checkpoints."""
    conn = open_state(state_dir)
    try:
        conn.execute("BEGIN")
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="audit-verify") as pool:
            return _verify(conn, state_dir / JOURNAL_FILE, trusted, checkpoints, pool)
    finally:
        conn.close()


def _verify(
    conn: sqlite3.Connection,
    path: Path,
    trusted: Sequence[Verifier] | None,
    notes: Sequence[str],
    pool: ThreadPoolExecutor,
) -> VerifyReport:
    store = HashStore(conn)
    problems = _Problems()
    verifiers = trusted_verifiers(store, trusted)
    supplied: list[StoredCheckpoint] = []
    for note in notes:
        try:
            held = open_checkpoint(note, verifiers)
        except AuditError as exc:
            problems.add(None, "bad_signature", f"a supplied checkpoint: {exc}")
            continue
        supplied.append(StoredCheckpoint(held.size, held.root, note, -1, 0))
    next_seq = int(conn.execute("SELECT value FROM meta WHERE key = 'next_seq'").fetchone()[0])
    row = conn.execute("SELECT MIN(seq), MAX(seq) FROM entry").fetchone()
    first_seq = next_seq if row[0] is None else int(row[0])
    last_row = -1 if row[1] is None else int(row[1])
    tree_size = store.size()
    gaps = _gap_ranges(conn)
    end = max(tree_size, next_seq, last_row + 1)
    walk = _Walk(store, verifiers, problems, supplied)

    checked = pruned = dropped = 0
    missing_from: int | None = None  # start of a run of missing rows not yet explained

    gap_index = 0

    def explained(seq: int) -> str | None:
        """Why row ``seq`` may be missing: ``dropped`` (a gap event), ``pruned`` (retention), or None."""
        nonlocal gap_index
        while gap_index < len(gaps) and gaps[gap_index][1] < seq:
            gap_index += 1
        i = gap_index
        while i < len(gaps) and gaps[i][0] <= seq:
            if gaps[i][1] >= seq:
                return "dropped"
            i += 1
        return "pruned" if seq < first_seq else None

    def close_missing(upto: int, *, at_end: bool) -> None:
        nonlocal missing_from
        if missing_from is None:
            return
        if at_end:
            problems.add(
                missing_from,
                "truncated",
                f"entries {missing_from}..{upto - 1} are gone from the end of the journal",
            )
        else:
            problems.add(
                missing_from,
                "deleted",
                f"entries {missing_from}..{upto - 1} are missing and no gap event records their drop",
            )
        walk.mark_bad(upto - 1)
        missing_from = None

    stored_leaves = _leaf_stream(store)
    stored = next(stored_leaves, None)
    position = 0  # next seq to account for

    def leaf_at(seq: int) -> bytes | None:
        nonlocal stored
        while stored is not None and stored[0] < seq:
            stored = next(stored_leaves, None)
        return stored[1] if stored is not None and stored[0] == seq else None

    def account_missing(upto: int) -> None:
        """Seqs from ``position`` to ``upto`` have no journal row."""
        nonlocal position, pruned, dropped, missing_from
        seq = position
        while seq < upto:
            if seq < tree_size and seq % BLOCK == 0 and leaf_at(seq) is None and seq + BLOCK <= upto:
                cover = store.cover(seq)
                if cover is not None and seq + (1 << cover[0]) <= upto:
                    level, node = cover  # a compacted range: account it whole
                    walk.feed_subtree(level, node)
                    end = seq + (1 << level)
                    for reason, count in _explain_range(seq, end, first_seq, gaps):
                        if reason == "pruned":
                            pruned += count
                        elif reason == "dropped":
                            dropped += count
                        else:
                            problems.add(seq, "deleted", f"entries in {seq}..{end - 1} are gone and no gap event "
                                                         "records their drop")  # fmt: skip
                            walk.mark_bad(end - 1)
                    close_missing(seq, at_end=False)
                    seq = end
                    continue
            recorded = leaf_at(seq)
            if seq < tree_size:
                if recorded is None:
                    problems.add(seq, "damaged", f"the audit tree lacks the leaf hash of entry {seq}")
                    walk.mark_bad(seq)
                    recorded = b"\x00" * 32
                walk.feed(recorded)
            why = explained(seq)
            if why is not None:
                close_missing(seq, at_end=False)
                if why == "pruned":
                    pruned += 1
                else:
                    dropped += 1
            elif missing_from is None:
                missing_from = seq
            seq += 1
        position = max(position, upto)

    for batch in _batches(conn, end, pool):
        for seq, body, computed in batch:
            account_missing(seq)
            close_missing(seq, at_end=False)
            checked += 1
            position = seq + 1
            try:
                inner = body_seq(body)
            except (msgspec.DecodeError, msgspec.ValidationError):
                inner = None
            recorded = leaf_at(seq)
            if seq >= tree_size:
                problems.add(
                    seq,
                    "unrecorded",
                    f"entry {seq} has no leaf in the audit tree (written behind the journal's back, or while the "
                    "audit log was off)",
                )
                continue
            if inner is not None and inner != seq:
                problems.add(seq, "reordered", f"row {seq} holds the body of entry {inner}")
                walk.mark_bad(seq)
            elif recorded is None:
                problems.add(seq, "damaged", f"the audit tree lacks the leaf hash of entry {seq}")
                walk.mark_bad(seq)
            elif recorded != computed:
                problems.add(seq, "modified", f"entry {seq} does not hash to its recorded leaf: its bytes were changed")
                walk.mark_bad(seq)
            walk.feed(computed)
        walk.flush_nodes()
    account_missing(max(tree_size, next_seq))
    close_missing(max(tree_size, next_seq), at_end=True)
    walk.flush_nodes()

    if next_seq < tree_size:
        problems.add(
            next_seq, "truncated", f"the journal ends at seq {next_seq} but the audit tree holds {tree_size} entries"
        )
    while walk.next_cp is not None:
        unreached = walk.next_cp
        walk.checked += 1
        problems.add(
            tree_size, "truncated", f"{label(unreached)} was signed but the audit tree holds only {tree_size} entries"
        )
        walk.next_cp = next(walk.checkpoints, None)
    return VerifyReport(
        ok=problems.count == 0,
        journal=str(path),
        tree_size=tree_size,
        next_seq=next_seq,
        first_seq=first_seq,
        entries_checked=checked,
        entries_pruned=pruned,
        entries_dropped=dropped,
        checkpoints_checked=walk.checked,
        verifier_keys=[v.text() for v in verifiers],
        problems=problems.sorted(),
    )


def _explain_range(start: int, end: int, first_seq: int, gaps: Sequence[tuple[int, int]]) -> list[tuple[str, int]]:
    """How many seqs of ``[start, end)`` are recorded as ``dropped`` by a gap event, retired
    (``pruned``: below the journal's first seq), or neither (``unexplained``) — in that precedence."""
    dropped = pruned = 0
    covered = start
    for g_lo, g_hi in gaps:  # sorted by start
        lo, hi = max(covered, g_lo), min(end, g_hi + 1)
        if lo >= hi:
            continue
        pruned += max(0, min(lo, first_seq) - covered)  # the stretch before this gap
        dropped += hi - lo
        covered = hi
    pruned += max(0, min(end, first_seq) - covered)
    unexplained = (end - start) - dropped - pruned
    counts = {"dropped": dropped, "pruned": pruned, "unexplained": unexplained}
    return [(k, v) for k, v in counts.items() if v > 0]


def _leaf_stream(store: HashStore) -> Iterator[tuple[int, bytes]]:
    position = 0
    while rows := store.leaves(position, BATCH):
        yield from rows
        position = rows[-1][0] + 1
