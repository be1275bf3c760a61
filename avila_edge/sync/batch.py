"""The uplink's wire format: a batch of journal entries, compressed, with gateway id and seq range.

Entries travel as their canonical journal bodies, byte for byte, so the receiver can recompute the
audit leaves and check them against the gateway's signed checkpoints. Layout::

    b"AVB1" + zlib(msgpack({"gateway": str, "first": int, "last": int, "count": int,
                            "entries": [[seq, kind, body], ...], "lane": str}))

``first``..``last`` is the seq range the batch covers on its lane; a lane skips the other kind's seqs
and seqs dropped by retention, so ``count`` may be smaller than ``last - first + 1``. ``lane`` names
the uplink lane that sent it (``events``, ``readings``, ``live``), echoed in the fleet's ack.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import msgspec

from avila_edge.journal import Entry, EntryKind

MAGIC = b"AVB1"
MAX_DECOMPRESSED = 64 << 20


class BatchError(ValueError):
    """A payload is not a valid batch."""


class Batch(msgspec.Struct, frozen=True):
    gateway: str
    first: int
    last: int
    count: int
    entries: list[tuple[int, int, bytes]]
    lane: str | None = None

    def journal_entries(self) -> list[Entry]:
        """The entries as journal rows (points are read from the bodies on decode)."""
        return [Entry(seq, EntryKind(kind), None, 0, body) for seq, kind, body in self.entries]


LEVEL = 3
"""zlib level: on 1,000 journal entries 0.45 µs and 9.9 B per entry, against 0.95 µs and 9.7 B at
zlib's default 6 and 0.41 µs and 11.3 B at 1; the uplink pays it for every reading it sends."""

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Batch)


def encode_batch(gateway: str, entries: Sequence[Entry], *, level: int = LEVEL, lane: str | None = None) -> bytes:
    if not entries:
        raise ValueError("a batch needs at least one entry")
    batch = Batch(
        gateway=gateway,
        first=entries[0].seq,
        last=entries[-1].seq,
        count=len(entries),
        entries=[(e.seq, int(e.kind), e.body) for e in entries],
        lane=lane,
    )
    return MAGIC + zlib.compress(_encoder.encode(batch), level)


def decode_batch(payload: bytes) -> Batch:
    """Decode a payload; raise ``BatchError`` naming what is wrong."""
    if not payload.startswith(MAGIC):
        raise BatchError("not an avila-edge batch (bad magic)")
    try:
        d = zlib.decompressobj()
        raw = d.decompress(payload[len(MAGIC) :], MAX_DECOMPRESSED)
        if d.unconsumed_tail:
            raise BatchError(f"batch expands beyond {MAX_DECOMPRESSED} bytes")
        batch = _decoder.decode(raw)
    except zlib.error as exc:
        raise BatchError(f"corrupt compression: {exc}") from exc
    except msgspec.DecodeError as exc:
        raise BatchError(f"malformed batch: {exc}") from exc
    if batch.count != len(batch.entries) or not batch.entries:
        raise BatchError(f"batch says {batch.count} entries but holds {len(batch.entries)}")
    seqs = [s for s, _, _ in batch.entries]
    if seqs != sorted(set(seqs)) or seqs[0] != batch.first or seqs[-1] != batch.last:
        raise BatchError("batch entries are not in ascending, unique seq order within first..last")
    return batch
