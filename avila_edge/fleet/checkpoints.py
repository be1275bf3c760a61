"""What the fleet proves about each gateway's audit log, from what it received.

Three checks, each recorded per gateway in the dedupe store:

- **signed**: every checkpoint's note carries a valid signature of the gateway's pinned verifier key
  (``<gateway_keys>/<gateway>.vkey``, or the first key the gateway announced when the receiver trusts
  on first use);
- **chained**: every checkpoint extends the one before it (the RFC 9162 consistency proof the gateway
  ships in the checkpoint event), so a gateway cannot rewrite its history between two checkpoints
  without the fleet noticing; the newest linked checkpoint is the chain head;
- **content**: the received entries hash to the signed roots. The fleet folds the leaf hashes of
  received entries, in seq order, into a frontier; each time the frontier reaches a checkpoint's size
  its root must equal the signed one. Entries dropped on the gateway (gap events) cannot be folded,
  so content is proven up to the first missing seq; signatures and the chain continue past it.

Runs on the store's thread, inside its own transactions, so receivers sharing a store stay consistent.
"""

from __future__ import annotations

import base64
import logging
import sqlite3
from pathlib import Path

import msgspec

from avila_edge.audit import Frontier, Verifier, leaf_hash, open_checkpoint, verify_consistency
from avila_edge.core import AuditError, Event

logger = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS checkpoint (
    gateway TEXT NOT NULL, size INTEGER NOT NULL, root BLOB NOT NULL, note TEXT NOT NULL,
    seq INTEGER NOT NULL, previous INTEGER, proof BLOB NOT NULL, state TEXT NOT NULL,
    PRIMARY KEY (gateway, size)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS audit_state (
    gateway TEXT PRIMARY KEY, verifier_key TEXT NOT NULL DEFAULT '',
    chain_size INTEGER NOT NULL DEFAULT 0, chain_root BLOB,
    content_size INTEGER NOT NULL DEFAULT 0, content_nodes BLOB NOT NULL DEFAULT x'',
    content_verified INTEGER NOT NULL DEFAULT 0, problem TEXT NOT NULL DEFAULT ''
);
"""

FOLD_BATCH = 5000
HASH = 32


class AuditStatus(msgspec.Struct, frozen=True):
    """The fleet's view of one gateway's audit log."""

    verifier_key: str
    chain_size: int
    """Leaves covered by the newest checkpoint whose signature and consistency with all earlier ones
    the fleet verified."""
    content_verified: int
    """Entries ``0..content_verified-1`` received here hash to a signed checkpoint root."""
    pending: int
    """Signed checkpoints not yet linked (an earlier one has not arrived)."""
    problem: str


class CheckpointChecker:
    """Verifies checkpoints and received content for the store that owns ``conn``."""

    def __init__(self, conn: sqlite3.Connection, *, keys_dir: Path | None, trust_first_key: bool) -> None:
        self.conn = conn
        self.keys_dir = keys_dir
        self.trust_first_key = trust_first_key
        conn.executescript(SCHEMA)

    # -- keys -------------------------------------------------------------------------------------

    def _verifiers(self, gateway: str) -> list[Verifier]:
        if self.keys_dir is not None:
            path = self.keys_dir / f"{gateway}.vkey"
            if path.exists():
                return [Verifier.parse(line) for line in path.read_text().split() if line]
        row = self.conn.execute("SELECT verifier_key FROM audit_state WHERE gateway=?", (gateway,)).fetchone()
        return [Verifier.parse(row[0])] if row and row[0] else []

    def announce(self, gateway: str, event: Event) -> None:
        """An ``audit_key`` event: pin its key when trusting on first use and nothing is pinned."""
        key = event.attrs.get("verifier_key")
        if not self.trust_first_key or not isinstance(key, str) or self._verifiers(gateway):
            return
        try:
            Verifier.parse(key)
        except AuditError as exc:
            self._problem(gateway, f"audit_key event at seq {event.seq} holds no valid key: {exc}")
            return
        self.conn.execute("UPDATE audit_state SET verifier_key=? WHERE gateway=?", (key, gateway))
        logger.warning("fleet: pinned gateway %s's audit key on first use: %s", gateway, key)

    # -- checkpoints ------------------------------------------------------------------------------

    def ensure(self, gateway: str) -> None:
        self.conn.execute("INSERT OR IGNORE INTO audit_state(gateway) VALUES (?)", (gateway,))

    def checkpoint(self, gateway: str, event: Event) -> None:
        """A ``checkpoint`` event received from ``gateway``: check its signature and keep it."""
        a = event.attrs
        try:
            size, root = int(a["size"]), base64.b64decode(str(a["root"]), validate=True)
            previous = None if a.get("previous") is None else int(a["previous"])
            proof = b"".join(base64.b64decode(str(h), validate=True) for h in a.get("proof") or [])
            note = str(a["note"])
        except (KeyError, TypeError, ValueError) as exc:
            self._problem(gateway, f"checkpoint event at seq {event.seq} is malformed: {exc}")
            return
        verifiers = self._verifiers(gateway)
        state = "signed"
        if not verifiers:
            state = "unverified"
            self._problem(gateway, f"no verifier key pinned for gateway {gateway}: checkpoints cannot be checked")
        else:
            try:
                signed = open_checkpoint(note, verifiers)
                if signed.size != size or signed.root != root:
                    raise AuditError("the event's size/root differ from the signed note")  # noqa: TRY301
            except AuditError as exc:
                state = "bad"
                self._problem(gateway, f"checkpoint of {size} leaves (seq {event.seq}): {exc}")
        self.conn.execute(
            "INSERT OR IGNORE INTO checkpoint(gateway, size, root, note, seq, previous, proof, state) "
            "VALUES (?,?,?,?,?,?,?,?)",
            (gateway, size, root, note, event.seq, previous, proof, state),
        )

    def link(self, gateway: str) -> None:
        """Extend the verified chain with every signed checkpoint whose consistency proof starts at its head."""
        while True:
            size, root = self.conn.execute(
                "SELECT chain_size, chain_root FROM audit_state WHERE gateway=?", (gateway,)
            ).fetchone()
            if size == 0:
                row = self.conn.execute(
                    "SELECT size, root, previous, proof FROM checkpoint WHERE gateway=? AND state='signed' "
                    "AND previous IS NULL ORDER BY size LIMIT 1",
                    (gateway,),
                ).fetchone()
            else:
                row = self.conn.execute(
                    "SELECT size, root, previous, proof FROM checkpoint WHERE gateway=? AND state='signed' "
                    "AND previous=? ORDER BY size LIMIT 1",
                    (gateway, size),
                ).fetchone()
            if row is None:
                return
            new_size, new_root, previous, blob = row
            proof = [bytes(blob[i : i + HASH]) for i in range(0, len(blob), HASH)]
            if previous is not None and not verify_consistency(previous, new_size, bytes(root), bytes(new_root), proof):
                self.conn.execute("UPDATE checkpoint SET state='fork' WHERE gateway=? AND size=?", (gateway, new_size))
                self._problem(
                    gateway,
                    f"checkpoint of {new_size} leaves does not extend the verified one of {previous} leaves: "
                    "the gateway's history was rewritten",
                )
                continue
            self.conn.execute("UPDATE checkpoint SET state='linked' WHERE gateway=? AND size=?", (gateway, new_size))
            self.conn.execute(
                "UPDATE audit_state SET chain_size=?, chain_root=? WHERE gateway=?", (new_size, new_root, gateway)
            )

    # -- content ------------------------------------------------------------------------------------

    def fold(self, gateway: str) -> None:
        """Hash received entries into the frontier while they are contiguous, checking each checkpoint
        root the frontier reaches."""
        size, nodes = self.conn.execute(
            "SELECT content_size, content_nodes FROM audit_state WHERE gateway=?", (gateway,)
        ).fetchone()
        frontier = Frontier(size, [bytes(nodes[i : i + HASH]) for i in range(0, len(nodes), HASH)])
        roots = dict(
            self.conn.execute(
                "SELECT size, root FROM checkpoint WHERE gateway=? AND size > ? AND state IN ('signed', 'linked')",
                (gateway, size),
            ).fetchall()
        )
        verified = None
        while True:
            rows = self.conn.execute(
                "SELECT seq, body FROM received WHERE gateway=? AND seq >= ? ORDER BY seq LIMIT ?",
                (gateway, frontier.size, FOLD_BATCH),
            ).fetchall()
            progressed = False
            for seq, body in rows:
                if seq != frontier.size:
                    break
                frontier.append(leaf_hash(bytes(body)))
                progressed = True
                expected = roots.get(frontier.size)
                if expected is not None:
                    if bytes(expected) != frontier.root():
                        self._problem(
                            gateway,
                            f"received entries 0..{frontier.size - 1} do not hash to the signed checkpoint root: "
                            "the data was altered on the way or at the gateway",
                        )
                    else:
                        verified = frontier.size
            if not progressed or len(rows) < FOLD_BATCH or rows[-1][0] != frontier.size - 1:
                break
        nodes_blob = b"".join(frontier.nodes)
        self.conn.execute(
            "UPDATE audit_state SET content_size=?, content_nodes=?, content_verified=MAX(content_verified, ?) "
            "WHERE gateway=?",
            (frontier.size, nodes_blob, verified or 0, gateway),
        )

    # -- status ---------------------------------------------------------------------------------------

    def _problem(self, gateway: str, text: str) -> None:
        logger.error("fleet: gateway %s audit: %s", gateway, text)
        self.conn.execute("UPDATE audit_state SET problem=? WHERE gateway=?", (text, gateway))

    def status(self, gateway: str) -> AuditStatus:
        row = self.conn.execute(
            "SELECT verifier_key, chain_size, content_verified, problem FROM audit_state WHERE gateway=?", (gateway,)
        ).fetchone()
        if row is None:
            return AuditStatus("", 0, 0, 0, "")
        (pending,) = self.conn.execute(
            "SELECT COUNT(*) FROM checkpoint WHERE gateway=? AND state='signed'", (gateway,)
        ).fetchone()
        key = row[0]
        if not key:
            verifiers = self._verifiers(gateway)
            key = verifiers[0].text() if verifiers else ""
        return AuditStatus(key, row[1], row[2], pending, row[3])
