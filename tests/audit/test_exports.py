"""The audit package exports exactly its public API, and every exported name exists."""

from __future__ import annotations

import avila_edge.audit


def test_the_audit_package_exports_its_public_api() -> None:
    assert set(avila_edge.audit.__all__) == {
        "AuditLog", "Checkpoint", "DeviceKey", "Frontier", "HashStore", "Problem", "StoredCheckpoint", "Verifier",
        "VerifyReport", "EMPTY_ROOT", "JOURNAL_FILE", "KEY_FILE", "SCHEMA", "SOURCE", "check_name",
        "consistency_ranges", "default_origin", "inclusion_ranges", "key_id", "leaf_hash", "node_hash",
        "open_checkpoint", "open_note", "prove_consistency", "prove_entry", "root_from_inclusion", "root_of",
        "sign_note", "split_note", "verifier_keys", "verify_consistency", "verify_inclusion", "verify_log",
    }  # fmt: skip
    for name in avila_edge.audit.__all__:
        assert getattr(avila_edge.audit, name) is not None
