"""Values on a serial line: text decoding, strict number parsing, conversion to a point's type, and
command rendering. Pure functions, no I/O.

Every problem is a ``LineError`` whose ``kind`` is the label it is counted under in the driver's
health (``invalid_encoding``, ``invalid_value``, ``truncated`` ...).
"""

from __future__ import annotations

import math
import re
from typing import Final

from avila_edge.config.model import DataType, PointConfig
from avila_edge.core import Value
from avila_edge.driver.payload import INTEGER_RANGES
from avila_edge.driver.scaling import to_raw
from drivers.serial.config import unescape

EXCERPT_CHARS: Final = 60

_NUMBER: Final = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_INTEGER: Final = re.compile(r"[+-]?\d+")
_TRUE: Final = frozenset({"1", "true", "on", "yes"})
_FALSE: Final = frozenset({"0", "false", "off", "no"})
_FLOATS: Final = frozenset({DataType.FLOAT32, DataType.FLOAT64})


class LineError(ValueError):
    """A frame or a value on the line could not be used; ``kind`` names the problem for counting."""

    def __init__(self, kind: str, message: str) -> None:
        self.kind = kind
        super().__init__(message)


def excerpt(data: bytes | str, limit: int = EXCERPT_CHARS) -> str:
    """A short printable excerpt of a frame for logs."""
    head = repr(data[:limit])
    return head + (f"... ({len(data)} long)" if len(data) > limit else "")


def decode_text(data: bytes, encoding: str) -> str:
    """``data`` as text; bytes that are not valid in ``encoding`` raise ``invalid_encoding``."""
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        bad = data[exc.start : exc.end]
        raise LineError("invalid_encoding", f"byte(s) {bad!r} at offset {exc.start} are not {encoding}") from None


def parse_number(text: str) -> float:
    """A finite decimal number written plainly (``-12.5``, ``3e2``); anything else is ``invalid_value``."""
    t = text.strip()
    if not _NUMBER.fullmatch(t):
        raise LineError("invalid_value", f"{t[:EXCERPT_CHARS]!r} is not a number")
    value = float(t)
    if not math.isfinite(value):
        raise LineError("invalid_value", f"{t[:EXCERPT_CHARS]!r} is out of range")
    return value


def parse_integer(text: str) -> int:
    t = text.strip()
    if not _INTEGER.fullmatch(t):
        raise LineError("invalid_value", f"{t[:EXCERPT_CHARS]!r} is not a whole number")
    return int(t)


def coerce(raw: Value, kind: DataType) -> Value:
    """``raw`` (text from the line, or a value a named NMEA field already typed) as the point's type."""
    if kind is DataType.STRING:
        return raw if isinstance(raw, str) else str(raw)
    if kind is DataType.BOOL:
        if isinstance(raw, bool):
            return raw
        word = str(raw).strip().lower()
        if word in _TRUE or word in _FALSE:
            return word in _TRUE
        raise LineError("invalid_value", f"{word[:EXCERPT_CHARS]!r} is not a bool (1/0, true/false, on/off, yes/no)")
    if isinstance(raw, bool):
        raise LineError("invalid_value", f"expected a number, got {raw}")
    if kind in _FLOATS:
        value = parse_number(raw) if isinstance(raw, str) else float(raw)
        if not math.isfinite(value):
            raise LineError("invalid_value", f"{value} is not a finite number")
        return value
    if isinstance(raw, str):
        whole = parse_integer(raw)
    elif isinstance(raw, float):
        if not raw.is_integer():
            raise LineError("invalid_value", f"expected a whole number for {kind.value}, got {raw!r}")
        whole = int(raw)
    else:
        whole = raw
    low, high = INTEGER_RANGES[kind]
    if not low <= whole <= high:
        raise LineError("invalid_value", f"{whole} is out of range for {kind.value} ({low}..{high})")
    return whole


def field_of(text: str, delimiter: str, index: int) -> str:
    """Field ``index`` of ``text`` split on ``delimiter``; a missing field is ``truncated``."""
    parts = text.split(delimiter)
    if not -len(parts) <= index < len(parts):
        raise LineError("truncated", f"the frame has {len(parts)} field(s), field {index} is missing")
    return parts[index].strip()


def command_value(value: Value, point: PointConfig) -> Value:
    """The raw value to put in a point's command template for the engineering ``value``."""
    if point.type is DataType.STRING:
        if not isinstance(value, str):
            raise LineError("invalid_value", f"{point.id} takes text, not {value!r}")
        return value
    if point.type is DataType.BOOL:
        if not isinstance(value, bool):
            raise LineError("invalid_value", f"{point.id} takes true or false, not {value!r}")
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise LineError("invalid_value", f"{point.id} takes a number, not {value!r}")
    try:
        raw = to_raw(float(value), point)
    except ValueError as exc:
        raise LineError("invalid_value", f"{point.id}: {exc}") from None
    if point.type in _FLOATS:
        return coerce(raw, point.type)
    return coerce(float(round(raw)), point.type)


def render_command(template: str, value: Value, encoding: str) -> bytes:
    """The bytes of ``template`` (escapes understood) with ``{value}`` filled in."""
    try:
        text = unescape(template).format(value=value)
        return text.encode(encoding)
    except (KeyError, IndexError, ValueError, TypeError, AttributeError) as exc:
        raise LineError("invalid_value", f"command template {template!r} cannot take {value!r}: {exc}") from None


def sample_value(kind: DataType) -> Value:
    """A value of ``kind`` to try a command template with."""
    if kind is DataType.BOOL:
        return True
    if kind is DataType.STRING:
        return "text"
    if kind in _FLOATS:
        return 1.5
    return 1


__all__ = [
    "LineError",
    "coerce",
    "command_value",
    "decode_text",
    "excerpt",
    "field_of",
    "parse_integer",
    "parse_number",
    "render_command",
    "sample_value",
]
