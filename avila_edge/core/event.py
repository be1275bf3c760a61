"""Events: facts the gateway itself records in the journal beside readings.

Alarms, anomalies, write outcomes, audit checkpoints, refused commands and journal gaps are all
events. ``kind`` says which; ``source`` names what it concerns (an asset, point, device, cursor);
``attrs`` carries the details as plain JSON-able values.
"""

from __future__ import annotations

from typing import Any, TypeAlias

import msgspec

AttrValue: TypeAlias = Any
"""A JSON-able value: bool, int, float, str, None, or lists/dicts of them (checked when journaled)."""


class Event(msgspec.Struct, frozen=True, kw_only=True):
    """One gateway event. ``ts`` is the gateway time in ns; ``seq`` is set once journaled."""

    kind: str
    source: str
    ts: int
    attrs: dict[str, AttrValue] = msgspec.field(default_factory=dict)
    seq: int | None = None

    def __post_init__(self) -> None:
        if not self.kind:
            raise ValueError("an event needs a kind")

    def with_seq(self, seq: int) -> Event:
        return msgspec.structs.replace(self, seq=seq)
