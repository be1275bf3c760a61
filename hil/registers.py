"""Register encodings used by the simulators, written independently of the gateway's codec."""

from __future__ import annotations

import struct
from typing import Literal

Order = Literal["big", "little"]

_FORMATS = {
    "int16": "h",
    "uint16": "H",
    "int32": "i",
    "uint32": "I",
    "int64": "q",
    "uint64": "Q",
    "float32": "f",
    "float64": "d",
}


def register_count(kind: str, length: int = 0) -> int:
    if kind == "string":
        return length
    return struct.calcsize(">" + _FORMATS[kind]) // 2


def encode(
    value: float | int | str, kind: str, *, byte_order: Order = "big", word_order: Order = "big", length: int = 0
) -> list[int]:
    """``value`` as 16-bit registers. Big/big is the Modbus convention (ABCD)."""
    if kind == "string":
        raw = str(value).encode("ascii")[: length * 2].ljust(length * 2, b"\0")
    else:
        fmt = _FORMATS[kind]
        if fmt in "hHiIqQ":
            value = int(value)
        raw = struct.pack(">" + fmt, value)
    words = [raw[i : i + 2] for i in range(0, len(raw), 2)]
    if word_order == "little":
        words.reverse()
    if byte_order == "little":
        words = [w[::-1] for w in words]
    return [int.from_bytes(w, "big") for w in words]
