"""Uplink batches: round trip, compression, and refusal of malformed payloads."""

from __future__ import annotations

import contextlib
import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from avila_edge.core import Reading
from avila_edge.journal import Entry, EntryKind, encode_reading
from avila_edge.sync.batch import MAGIC, BatchError, decode_batch, encode_batch


def entries(n: int, start: int = 0) -> list[Entry]:
    out = []
    for seq in range(start, start + n):
        r = Reading(point=f"pump1/p{seq % 10}", value=20.0 + (seq % 50) / 10, ts_source=1_800_000_000_000_000_000 + seq * 10**9,
                    ts_gateway=1_800_000_000_000_000_000 + seq * 10**9)  # fmt: skip
        out.append(Entry(seq, EntryKind.READING, r.point, r.ts_gateway, encode_reading(r, seq)))
    return out


def test_a_batch_round_trips_bodies_byte_for_byte() -> None:
    es = entries(500, start=42)
    batch = decode_batch(encode_batch("gw-1", es))
    assert (batch.gateway, batch.first, batch.last, batch.count) == ("gw-1", 42, 541, 500)
    assert [e.body for e in batch.journal_entries()] == [e.body for e in es]


def test_compression_keeps_bytes_per_reading_small() -> None:
    es = entries(1000)
    payload = encode_batch("gw-1", es)
    raw = sum(len(e.body) for e in es)
    assert len(payload) / len(es) < raw / len(es) / 4  # JSON bodies compress well over a batch


@pytest.mark.parametrize(
    "payload",
    [b"", b"AVB1", b"XXXX" + zlib.compress(b"x"), MAGIC + b"not zlib", MAGIC + zlib.compress(b"\x93\x01\x02")],
)
def test_malformed_payloads_are_refused_with_a_reason(payload: bytes) -> None:
    with pytest.raises(BatchError):
        decode_batch(payload)


def test_a_compression_bomb_is_refused() -> None:
    with pytest.raises(BatchError, match="expands beyond"):
        decode_batch(MAGIC + zlib.compress(b"\0" * (65 << 20)))


@given(st.binary(max_size=300))
def test_garbage_never_raises_anything_but_batch_error(data: bytes) -> None:
    for payload in (data, MAGIC + data, MAGIC + zlib.compress(data)):
        with contextlib.suppress(BatchError):
            decode_batch(payload)
