"""The append-only journal: the single source of truth, and the cursors that read it."""

from avila_edge.journal._encoding import (
    Entry,
    EntryKind,
    body_seq,
    decode_event,
    decode_reading,
    encode_event,
    encode_reading,
)
from avila_edge.journal._journal import Bucket, Cursor, Journal, JournalStats
from avila_edge.journal._store import CommitHook

__all__ = [
    "Bucket",
    "CommitHook",
    "Cursor",
    "Entry",
    "EntryKind",
    "Journal",
    "JournalStats",
    "body_seq",
    "decode_event",
    "decode_reading",
    "encode_event",
    "encode_reading",
]
