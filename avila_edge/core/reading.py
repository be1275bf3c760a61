"""The one currency of the gateway: an immutable, slotted ``Reading``."""

from __future__ import annotations

import enum
from collections.abc import Iterable
from typing import Final, TypeAlias

import msgspec

Value: TypeAlias = bool | int | float | str
"""A point value. ``bool`` comes first so msgspec never reads ``true`` as ``1``."""


class Quality(enum.IntEnum):
    """How far a value can be trusted (the OPC UA severity classes)."""

    GOOD = 0
    UNCERTAIN = 1
    BAD = 2


POINT_SEPARATOR: Final = "/"


def split_point_id(point_id: str) -> tuple[str, str]:
    """Split ``asset/point`` into its asset and point names; raise ``ValueError`` if malformed."""
    asset, sep, point = point_id.partition(POINT_SEPARATOR)
    if not sep or not asset or not point or POINT_SEPARATOR in point:
        raise ValueError(f"point id {point_id!r} must be 'asset/point'")
    return asset, point


class Reading(msgspec.Struct, frozen=True, gc=False, kw_only=True):
    """One observation of one point.

    ``point`` is ``asset/point``; ``ts_source`` is when the device measured it and ``ts_gateway``
    when the gateway received it, both in nanoseconds since the Unix epoch (UTC). ``seq`` is the
    journal sequence number, set once the journal has committed the reading. A failed point is a
    Reading with ``quality=BAD`` and a ``reason``; its ``value`` is the last value or ``None``.
    """

    point: str
    value: Value | None
    quality: Quality = Quality.GOOD
    reason: str = ""
    ts_source: int
    ts_gateway: int
    seq: int | None = None

    def __post_init__(self) -> None:
        if self.quality is not Quality.GOOD and not self.reason:
            raise ValueError(f"{self.point}: a {self.quality.name} reading needs a reason")
        if self.value is None and self.quality is Quality.GOOD:
            raise ValueError(f"{self.point}: a GOOD reading needs a value")

    @property
    def good(self) -> bool:
        return self.quality is Quality.GOOD

    def with_seq(self, seq: int) -> Reading:
        """The same reading, as committed at journal position ``seq``."""
        return committed((self,), (seq,))[0]


def committed(readings: Iterable[Reading], seqs: Iterable[int]) -> list[Reading]:
    """Each reading as committed at its journal position: a copy with ``seq`` set.

    Only ``seq`` differs from a reading that was already checked, so the copy is not checked again
    (``msgspec.structs.replace`` would run ``__post_init__``: twice the cost, per reading)."""
    out: list[Reading] = []
    append = out.append
    set_seq = msgspec.structs.force_setattr
    for reading, seq in zip(readings, seqs, strict=True):
        copy = reading.__copy__()  # type: ignore[attr-defined]  # a Struct has it; the stubs leave it out
        set_seq(copy, "seq", seq)
        append(copy)
    return out


def bad(point: str, reason: str, *, ts_source: int, ts_gateway: int, value: Value | None = None) -> Reading:
    """A Bad reading for ``point`` with ``reason`` (the last known value may be kept)."""
    return Reading(
        point=point,
        value=value,
        quality=Quality.BAD,
        reason=reason,
        ts_source=ts_source,
        ts_gateway=ts_gateway,
    )
