"""Payload conversions shared by the drivers that receive text and JSON (MQTT, CoAP, ...): JSON value
paths, plain numbers, coercion to a point's type and back. Pure functions, no I/O.

Every decoding problem raises ``PayloadError`` with a short ``kind`` (the health counter label):
``invalid_utf8``, ``invalid_json``, ``invalid_number``, ``missing_value``, ``wrong_type``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Final

import msgspec

from avila_edge.config.model import DataType, PointConfig
from avila_edge.core import Value
from avila_edge.driver.scaling import to_raw

EXCERPT_BYTES: Final = 64
INTEGER_RANGES: Final[dict[DataType, tuple[int, int]]] = {  # the integer types' value ranges
    DataType.INT16: (-(2**15), 2**15 - 1),
    DataType.UINT16: (0, 2**16 - 1),
    DataType.INT32: (-(2**31), 2**31 - 1),
    DataType.UINT32: (0, 2**32 - 1),
    DataType.INT64: (-(2**63), 2**63 - 1),
    DataType.UINT64: (0, 2**64 - 1),
}
_FLOATS: Final = (DataType.FLOAT32, DataType.FLOAT64)
_TRUE: Final = frozenset({"true", "on", "1", "yes"})
_FALSE: Final = frozenset({"false", "off", "0", "no"})


class PayloadError(ValueError):
    """A payload (or part of one) cannot be turned into a value; ``kind`` labels the health counter."""

    def __init__(self, kind: str, message: str) -> None:
        self.kind = kind
        super().__init__(message)


def excerpt(payload: bytes, limit: int = EXCERPT_BYTES) -> str:
    """A short, printable excerpt of a payload for logs."""
    head = repr(payload[:limit])
    return head + (f"... ({len(payload)} bytes)" if len(payload) > limit else "")


# -- value paths ---------------------------------------------------------------------------------

_STEP = re.compile(
    r"\.([A-Za-z_][A-Za-z0-9_-]*)|\[(\d+)\]|\[\s*'((?:[^'\\]|\\.)*)'\s*\]|\[\s*\"((?:[^\"\\]|\\.)*)\"\s*\]"
)


@dataclass(frozen=True, slots=True)
class ValuePath:
    """A small JSONPath subset: ``$``, ``$.a.b``, ``$.list[0]``, ``$['key with spaces']``."""

    text: str
    steps: tuple[str | int, ...]

    @classmethod
    def parse(cls, text: str) -> ValuePath:
        if not text.startswith("$"):
            raise ValueError(f"value path {text!r} must start with '$' (e.g. $.value or $.data[0].v)")
        steps: list[str | int] = []
        pos = 1
        while pos < len(text):
            m = _STEP.match(text, pos)
            if m is None:
                raise ValueError(f"value path {text!r}: cannot read {text[pos:]!r} (use .key, [index] or ['key'])")
            if m.group(1) is not None:
                steps.append(m.group(1))
            elif m.group(2) is not None:
                steps.append(int(m.group(2)))
            else:
                quoted = m.group(3) if m.group(3) is not None else m.group(4)
                steps.append(re.sub(r"\\(.)", r"\1", quoted))
            pos = m.end()
        return cls(text, tuple(steps))

    def evaluate(self, doc: Any) -> Any:
        node = doc
        for step in self.steps:
            if isinstance(step, int):
                if not isinstance(node, list) or step >= len(node):
                    raise PayloadError("missing_value", f"no item [{step}] at {self.text}")
            elif not isinstance(node, dict) or step not in node:
                raise PayloadError("missing_value", f"no key {step!r} at {self.text}")
            node = node[step]
        return node

    @property
    def writable(self) -> bool:
        return all(isinstance(s, str) for s in self.steps)

    def build(self, value: Any) -> Any:
        """A document holding ``value`` at this path (keys only); the inverse of ``evaluate``."""
        doc = value
        for step in reversed(self.steps):
            if not isinstance(step, str):
                raise TypeError(f"value path {self.text} has a list index and cannot be written")
            doc = {step: doc}
        return doc


# -- payloads ------------------------------------------------------------------------------------


def decode_json(payload: bytes) -> Any:
    """The JSON document in ``payload`` (UTF-8)."""
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PayloadError("invalid_utf8", f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    try:
        return msgspec.json.decode(text)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise PayloadError("invalid_json", f"not JSON: {exc}") from None


def decode_number(payload: bytes) -> bool | int | float:
    """A plain-text number (``21.5``, ``-3``, ``1e3``) or boolean word (``true``/``off``)."""
    try:
        text = payload.decode("utf-8").strip()
    except UnicodeDecodeError as exc:
        raise PayloadError("invalid_utf8", f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    lowered = text.lower()
    if lowered in ("true", "on", "yes"):
        return True
    if lowered in ("false", "off", "no"):
        return False
    try:
        return int(text)
    except ValueError:
        pass
    try:
        number = float(text)
    except ValueError:
        number = math.nan
    if not math.isfinite(number):
        shown = text[:EXCERPT_BYTES] + ("..." if len(text) > EXCERPT_BYTES else "")
        raise PayloadError("invalid_number", f"{shown!r} is not a number")
    return number


def coerce(raw: Any, kind: DataType) -> Value:
    """``raw`` (from JSON, text, Sparkplug or SenML) as a raw value of the point's type."""
    if kind is DataType.BOOL:
        if isinstance(raw, bool):
            return raw
        if isinstance(raw, int) and raw in (0, 1):
            return bool(raw)
        if isinstance(raw, str) and raw.strip().lower() in _TRUE | _FALSE:
            return raw.strip().lower() in _TRUE
        raise PayloadError("wrong_type", f"expected a bool, got {shown(raw)}")
    if kind is DataType.STRING:
        if isinstance(raw, str):
            return raw
        raise PayloadError("wrong_type", f"expected text, got {shown(raw)}")
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        raise PayloadError("wrong_type", f"expected a number, got {shown(raw)}")
    if kind in _FLOATS:
        value = float(raw)
        if not math.isfinite(value):
            raise PayloadError("wrong_type", f"expected a finite number, got {raw!r}")
        return value
    if isinstance(raw, float):
        if not raw.is_integer():
            raise PayloadError("wrong_type", f"expected a whole number for {kind.value}, got {raw!r}")
        raw = int(raw)
    whole: int = raw
    low, high = INTEGER_RANGES[kind]
    if not low <= whole <= high:
        raise PayloadError("wrong_type", f"{whole} is out of range for {kind.value} ({low}..{high})")
    return whole


def shown(raw: Any) -> str:
    if isinstance(raw, dict):
        return "an object"
    if isinstance(raw, list):
        return "a list"
    if raw is None:
        return "null"
    text = repr(raw)
    return text if len(text) <= 40 else text[:37] + "..."


def from_engineering(value: Value, point: PointConfig) -> Value:
    """The raw value for an engineering ``value`` (the inverse of ``to_engineering``)."""
    if isinstance(value, bool | str) or point.type in (DataType.BOOL, DataType.STRING):
        return coerce(value, point.type)
    if point.scale != 1.0 or point.offset != 0.0:
        try:
            value = to_raw(value, point)
        except ValueError as exc:
            raise PayloadError("wrong_type", str(exc)) from None
        if point.type not in _FLOATS and math.isfinite(value):
            value = round(value)
    return coerce(value, point.type)
