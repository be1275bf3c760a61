"""The Merkle audit log: an RFC 9162 tree over the journal, signed C2SP checkpoints, proofs, verification.

Leaf ``i`` is the canonical body of journal entry ``i``. ``AuditLog`` records leaves inside every
journal commit and signs checkpoints; ``prove_entry``, ``prove_consistency`` and ``verify_log`` work
offline on a state directory. See ``docs/audit.md``.
"""

from avila_edge.audit._keys import KEY_FILE, DeviceKey, Verifier, check_name, key_id
from avila_edge.audit._log import SOURCE, AuditLog, default_origin
from avila_edge.audit._note import Checkpoint, open_checkpoint, open_note, sign_note, split_note
from avila_edge.audit._prove import JOURNAL_FILE, prove_consistency, prove_entry, verifier_keys
from avila_edge.audit._store import SCHEMA, HashStore, StoredCheckpoint
from avila_edge.audit._tree import (
    EMPTY_ROOT,
    Frontier,
    consistency_ranges,
    inclusion_ranges,
    leaf_hash,
    node_hash,
    root_from_inclusion,
    root_of,
    verify_consistency,
    verify_inclusion,
)
from avila_edge.audit._verify import Problem, VerifyReport, verify_log

__all__ = [
    "EMPTY_ROOT",
    "JOURNAL_FILE",
    "KEY_FILE",
    "SCHEMA",
    "SOURCE",
    "AuditLog",
    "Checkpoint",
    "DeviceKey",
    "Frontier",
    "HashStore",
    "Problem",
    "StoredCheckpoint",
    "Verifier",
    "VerifyReport",
    "check_name",
    "consistency_ranges",
    "default_origin",
    "inclusion_ranges",
    "key_id",
    "leaf_hash",
    "node_hash",
    "open_checkpoint",
    "open_note",
    "prove_consistency",
    "prove_entry",
    "root_from_inclusion",
    "root_of",
    "sign_note",
    "split_note",
    "verifier_keys",
    "verify_consistency",
    "verify_inclusion",
    "verify_log",
]
