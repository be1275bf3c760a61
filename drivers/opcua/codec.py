"""Pure OPC UA values: NodeId strings, status codes, notifications → Readings, values to write.

No I/O and no protocol library here: the transport hands plain ``Sample``s over (Python values,
the Variant type name, the status code and its name, timestamps in ns) and the driver turns them
into Readings with these functions.

- A status code's two top bits are its severity: ``00`` Good, ``01`` Uncertain, ``10``/``11`` Bad.
  The reason of a non-Good reading is the status name (``BadSensorFailure``, ``UncertainLastUsableValue``).
- ``ts_source`` is the SourceTimestamp, else the ServerTimestamp, else the gateway's clock; a
  timestamp before 1970 (OPC UA's "no time" is 1601) or past 2262 (the end of int64 nanoseconds)
  counts as absent.
- Values become the point's type: bool, int (range-checked against int16 ... uint64), float, or str;
  numeric points get ``value * scale + offset`` as Modbus points do. Arrays, structures and values
  of the wrong kind raise ``CodecError`` (the driver reports the point Bad and counts it).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import math
import re
import uuid
from typing import Any, Final, Literal

import msgspec

from avila_edge.config.model import DataType, PointConfig
from avila_edge.core import Quality, Value
from avila_edge.driver.payload import INTEGER_RANGES

NodeKind = Literal["i", "s", "g", "b"]

MAX_STRING: Final = 65_536
"""Characters of a string value (or bytes of a ByteString) beyond which a value is refused."""
MAX_IDENTIFIER: Final = 4096

_NODE_ID = re.compile(r"(?:ns=(?P<ns>\d+);|nsu=(?P<nsu>.+?);)?(?P<kind>[isgb])=(?P<id>.*)", re.DOTALL)
_EPOCH: Final = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MAX_NS: Final = 2**63 - 1

BUILTIN_INTEGERS: Final[dict[str, tuple[int, int]]] = {
    "SByte": (-(2**7), 2**7 - 1),
    "Byte": (0, 2**8 - 1),
    "Int16": (-(2**15), 2**15 - 1),
    "UInt16": (0, 2**16 - 1),
    "Int32": (-(2**31), 2**31 - 1),
    "UInt32": (0, 2**32 - 1),
    "Int64": (-(2**63), 2**63 - 1),
    "UInt64": (0, 2**64 - 1),
}
BUILTIN_FLOATS: Final = frozenset({"Float", "Double"})
WRITABLE_BUILTINS: Final = frozenset({"Boolean", "String", *BUILTIN_INTEGERS, *BUILTIN_FLOATS})


class CodecError(ValueError):
    """A value or NodeId that cannot be used; the message says why in plain words."""


class NodeRef(msgspec.Struct, frozen=True):
    """A parsed NodeId: namespace by index (``ns=``) or by URI (``nsu=``), and its identifier."""

    namespace: int
    namespace_uri: str | None
    kind: NodeKind
    identifier: int | str

    def __str__(self) -> str:
        prefix = f"nsu={self.namespace_uri};" if self.namespace_uri is not None else ""
        if not prefix and self.namespace:
            prefix = f"ns={self.namespace};"
        return f"{prefix}{self.kind}={self.identifier}"

    def with_namespace(self, index: int) -> NodeRef:
        """The same node with its namespace URI resolved to ``index``."""
        return NodeRef(index, None, self.kind, self.identifier)


class Sample(msgspec.Struct, frozen=True, gc=False):
    """One data-change notification as plain values (made by the transport)."""

    handle: int
    value: Any
    variant: str
    status: int
    status_name: str
    source_ns: int | None
    server_ns: int | None


def parse_node_id(text: str) -> NodeRef:
    """``ns=2;s=Pump1.Flow``, ``ns=2;i=1001``, ``i=2258``, ``nsu=urn:x;s=A``, ``ns=1;g=<uuid>``, ``ns=1;b=<base64>``."""
    m = _NODE_ID.fullmatch(text.strip())
    if m is None:
        raise CodecError(
            f"{text!r} is not a NodeId; write it as ns=<index>;s=<name> (or i=<number>, g=<guid>, b=<base64>),"
            " optionally nsu=<namespace uri>; instead of ns="
        )
    kind: NodeKind = m["kind"]  # type: ignore[assignment]
    raw = m["id"]
    namespace = 0
    if m["ns"] is not None:
        namespace = int(m["ns"])
        if namespace > 65535:
            raise CodecError(f"namespace index {namespace} in {text!r} is beyond 65535")
    uri = m["nsu"]
    if uri is not None and not uri.strip():
        raise CodecError(f"{text!r} has an empty namespace URI")
    identifier: int | str
    if kind == "i":
        if not raw.isdigit() or int(raw) > 2**32 - 1:
            raise CodecError(f"numeric identifier {raw!r} in {text!r} must be a whole number 0..4294967295")
        identifier = int(raw)
    elif kind == "s":
        if not raw:
            raise CodecError(f"{text!r} has an empty string identifier")
        if len(raw) > MAX_IDENTIFIER:
            raise CodecError(f"the string identifier in {text[:40]!r}... is longer than {MAX_IDENTIFIER} characters")
        identifier = raw
    elif kind == "g":
        try:
            identifier = str(uuid.UUID(raw))
        except ValueError:
            raise CodecError(f"{raw!r} in {text!r} is not a GUID") from None
    else:
        try:
            base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError):
            raise CodecError(f"{raw!r} in {text!r} is not base64") from None
        if not raw:
            raise CodecError(f"{text!r} has an empty opaque identifier")
        identifier = raw
    return NodeRef(namespace, uri, kind, identifier)


def quality_of(status: int) -> Quality:
    """The severity of an OPC UA status code."""
    severity = (status >> 30) & 0b11
    if severity == 0:
        return Quality.GOOD
    if severity == 1:
        return Quality.UNCERTAIN
    return Quality.BAD


def datetime_to_ns(value: dt.datetime | None) -> int | None:
    """Nanoseconds since 1970 (UTC; a naive datetime counts as UTC), or None when absent or out of range."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    delta = value - _EPOCH
    ns = (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000
    if ns <= 0 or ns > _MAX_NS:
        return None
    return ns


def source_time(sample: Sample, now_ns: int) -> int:
    return sample.source_ns or sample.server_ns or now_ns


def decode_value(raw: Any, variant: str, point: PointConfig) -> Value:
    """``raw`` (a notification's value) as an engineering value of ``point``'s type."""
    kind = point.type
    if raw is None:
        raise CodecError(f"the server sent no value ({variant})")
    if isinstance(raw, list | tuple):
        raise CodecError(f"the server sent an array of {len(raw)} ({variant}); only scalars are supported")
    if kind is DataType.STRING:
        return _as_text(raw, variant)
    if kind is DataType.BOOL:
        if isinstance(raw, bool):
            return raw
        if isinstance(raw, int) and raw in (0, 1):
            return bool(raw)
        raise CodecError(f"expected a Boolean for a bool point, the server sent {variant} {_show(raw)}")
    if isinstance(raw, bool):
        number: int | float = int(raw)
    elif isinstance(raw, int | float):
        number = raw
    else:
        raise CodecError(f"expected a number for a {kind.value} point, the server sent {variant} {_show(raw)}")
    if kind in INTEGER_RANGES:
        if isinstance(number, float):
            if not math.isfinite(number) or number != math.floor(number):
                raise CodecError(f"expected a whole number for a {kind.value} point, the server sent {number!r}")
            number = int(number)
        low, high = INTEGER_RANGES[kind]
        if not low <= number <= high:
            raise CodecError(f"{number} is outside the range of {kind.value} ({low}..{high})")
    else:
        number = float(number)
        if not math.isfinite(number):
            raise CodecError(f"the server sent {number!r}")
    if point.scale == 1.0 and point.offset == 0.0:
        return number
    return number * point.scale + point.offset


def encode_write(value: Value, point: PointConfig, builtin: str) -> bool | int | float | str:
    """The raw value to write to a node of OPC UA built-in type ``builtin`` for engineering ``value``."""
    if builtin not in WRITABLE_BUILTINS:
        raise CodecError(f"writing a node of type {builtin} is not supported")
    if builtin == "String":
        if not isinstance(value, str):
            raise CodecError(f"the node holds a String; {value!r} is not text")
        if len(value) > MAX_STRING:
            raise CodecError(f"a string of {len(value)} characters is longer than {MAX_STRING}")
        return value
    if builtin == "Boolean":
        if isinstance(value, bool):
            return value
        if isinstance(value, int | float) and value in (0, 1):
            return bool(value)
        raise CodecError(f"the node holds a Boolean; {value!r} is not true or false")
    if isinstance(value, str):
        raise CodecError(f"the node holds a {builtin}; {value!r} is not a number")
    raw: int | float = value
    if point.type not in (DataType.BOOL, DataType.STRING) and (point.scale != 1.0 or point.offset != 0.0):
        if point.scale == 0:
            raise CodecError("a point with scale 0 cannot be written")
        raw = (value - point.offset) / point.scale
    if not math.isfinite(raw):
        raise CodecError(f"{value!r} is not a finite number")
    if builtin in BUILTIN_FLOATS:
        if builtin == "Float" and abs(raw) > 3.4028234663852886e38:
            raise CodecError(f"{raw!r} does not fit a Float")
        return float(raw)
    whole = round(raw)
    if abs(raw - whole) > 1e-9 * max(1.0, abs(raw)):
        raise CodecError(f"the node holds a {builtin}; {raw!r} is not a whole number")
    low, high = BUILTIN_INTEGERS[builtin]
    if not low <= whole <= high:
        raise CodecError(f"{whole} does not fit a {builtin} ({low}..{high})")
    return int(whole)


def _as_text(raw: Any, variant: str) -> str:
    if isinstance(raw, bytes | bytearray):
        if len(raw) > MAX_STRING:
            raise CodecError(f"the server sent {len(raw)} bytes, more than {MAX_STRING}")
        try:
            return bytes(raw).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise CodecError(f"the server sent a ByteString that is not UTF-8 text ({exc.reason})") from None
    if isinstance(raw, bool):
        return "true" if raw else "false"
    if isinstance(raw, dt.datetime):
        return (raw if raw.tzinfo else raw.replace(tzinfo=dt.UTC)).isoformat()
    if isinstance(raw, str | int | float | uuid.UUID):
        text = str(raw)
        if len(text) > MAX_STRING:
            raise CodecError(f"the server sent {len(text)} characters, more than {MAX_STRING}")
        return text
    raise CodecError(f"a {variant} value ({type(raw).__name__}) cannot be shown as text")


def _show(raw: Any) -> str:
    text = repr(raw)
    return text if len(text) <= 60 else text[:57] + "..."


__all__ = [
    "BUILTIN_FLOATS",
    "BUILTIN_INTEGERS",
    "INTEGER_RANGES",
    "MAX_STRING",
    "WRITABLE_BUILTINS",
    "CodecError",
    "NodeRef",
    "Sample",
    "datetime_to_ns",
    "decode_value",
    "encode_write",
    "parse_node_id",
    "quality_of",
    "source_time",
]
