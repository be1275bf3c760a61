"""Sparkplug B payloads and topics, decoded and encoded by hand from the protobuf wire format.

Pure code, no I/O and no protobuf library: a Sparkplug payload is a handful of scalar fields and a
list of metrics, which a ~200-line reader handles at a few µs per metric without the ~10 MB of a
generated module and its runtime. ``sparkplug_b.proto`` beside this file is the schema it follows
(field numbers and types); nested structures the gateway does not map to points (DataSet, Template,
PropertySet, MetaData, extensions) are skipped over, never interpreted.

Problems raise ``SparkplugError`` whose ``kind`` is ``truncated`` (the bytes end inside a field)
or ``invalid_protobuf`` (anything else that is not a well-formed Sparkplug payload).
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass, field
from typing import Final

NAMESPACE: Final = "spBv1.0"
REBIRTH_METRIC: Final = "Node Control/Rebirth"
BDSEQ_METRIC: Final = "bdSeq"
MESSAGE_TYPES: Final = frozenset(
    {"NBIRTH", "NDEATH", "DBIRTH", "DDEATH", "NDATA", "DDATA", "NCMD", "DCMD"},
)
_MASK32: Final = (1 << 32) - 1
_MASK64: Final = (1 << 64) - 1

RawValue = bool | int | float | str | bytes


class SparkplugError(ValueError):
    """A payload is not a well-formed Sparkplug B payload."""

    def __init__(self, kind: str, message: str) -> None:
        self.kind = kind
        super().__init__(message)


class DataType(enum.IntEnum):
    """Sparkplug B metric data types (the scalar ones; arrays and structures are not mapped)."""

    UNKNOWN = 0
    INT8 = 1
    INT16 = 2
    INT32 = 3
    INT64 = 4
    UINT8 = 5
    UINT16 = 6
    UINT32 = 7
    UINT64 = 8
    FLOAT = 9
    DOUBLE = 10
    BOOLEAN = 11
    STRING = 12
    DATETIME = 13
    TEXT = 14
    UUID = 15
    DATASET = 16
    BYTES = 17
    FILE = 18
    TEMPLATE = 19


_SIGNED_BITS: Final = {DataType.INT8: 8, DataType.INT16: 16, DataType.INT32: 32, DataType.INT64: 64}
_UNSIGNED_BITS: Final = {DataType.UINT8: 8, DataType.UINT16: 16, DataType.UINT32: 32, DataType.UINT64: 64}
_TEXT_TYPES: Final = (DataType.STRING, DataType.TEXT, DataType.UUID)

# Metric fields: number -> (name, wire type)
_INT_VALUE, _LONG_VALUE, _FLOAT_VALUE, _DOUBLE_VALUE = 10, 11, 12, 13
_BOOL_VALUE, _STRING_VALUE, _BYTES_VALUE = 14, 15, 16
_UNMAPPED_VALUES: Final = {17: "dataset", 18: "template", 19: "extension"}
_VARINT, _FIXED64, _LENGTH, _FIXED32 = 0, 1, 2, 5


@dataclass(slots=True)
class Metric:
    """One metric. ``raw`` is the value as carried (``value_field`` says which oneof field, 0: none);
    ``value()`` interprets it with the data type."""

    name: str | None = None
    alias: int | None = None
    timestamp: int | None = None
    datatype: int | None = None
    is_historical: bool = False
    is_transient: bool = False
    is_null: bool = False
    raw: RawValue | None = None
    value_field: int = 0

    def value(self, datatype: int | None = None) -> RawValue | None:
        """The value, with signed integers sign-extended for ``datatype`` (this metric's own if None).

        Returns None for a null metric or one without a value; raises ``SparkplugError`` for a value
        kind the gateway does not map (DataSet, Template, extension).
        """
        if self.is_null or self.value_field == 0:
            return None
        if self.value_field in _UNMAPPED_VALUES:
            raise SparkplugError("invalid_protobuf", f"{_UNMAPPED_VALUES[self.value_field]} values are not mapped")
        kind = datatype if datatype is not None else self.datatype
        raw = self.raw
        if isinstance(raw, int) and not isinstance(raw, bool) and kind is not None:
            if kind in _SIGNED_BITS:
                bits = _SIGNED_BITS[DataType(kind)]
                raw &= (1 << bits) - 1
                return raw - (1 << bits) if raw >> (bits - 1) else raw
            if kind in _UNSIGNED_BITS:
                return raw & ((1 << _UNSIGNED_BITS[DataType(kind)]) - 1)
        return raw


@dataclass(slots=True)
class Payload:
    timestamp: int | None = None
    metrics: list[Metric] = field(default_factory=list)
    seq: int | None = None
    uuid: str | None = None
    body: bytes | None = None

    def metric(self, name: str) -> Metric | None:
        for m in self.metrics:
            if m.name == name:
                return m
        return None


@dataclass(frozen=True, slots=True)
class Topic:
    """``spBv1.0/<group>/<message type>/<node>[/<device>]``."""

    group: str
    message_type: str
    node: str
    device: str | None = None

    def __str__(self) -> str:
        tail = f"/{self.device}" if self.device is not None else ""
        return f"{NAMESPACE}/{self.group}/{self.message_type}/{self.node}{tail}"


def parse_topic(topic: str) -> Topic | None:
    """The Sparkplug topic, or None for anything else (including ``STATE`` and unknown types)."""
    levels = topic.split("/")
    if len(levels) not in (4, 5) or levels[0] != NAMESPACE or levels[2] not in MESSAGE_TYPES:
        return None
    if not all(levels):
        return None
    device = levels[4] if len(levels) == 5 else None
    if (device is None) != (levels[2][0] == "N"):
        return None  # a node message with a device level, or a device message without one
    return Topic(levels[1], levels[2], levels[3], device)


# -- reading -------------------------------------------------------------------------------------


class _Reader:
    __slots__ = ("data", "end", "pos")

    def __init__(self, data: bytes | memoryview, pos: int = 0, end: int | None = None) -> None:
        self.data = data
        self.pos = pos
        self.end = len(data) if end is None else end

    def varint(self) -> int:
        result = shift = 0
        data, pos, end = self.data, self.pos, self.end
        for _ in range(10):
            if pos >= end:
                raise SparkplugError("truncated", "the payload ends inside a number")
            byte = data[pos]
            pos += 1
            result |= (byte & 0x7F) << shift
            if not byte & 0x80:
                self.pos = pos
                return result & _MASK64
            shift += 7
        raise SparkplugError("invalid_protobuf", "a number is longer than 10 bytes")

    def take(self, size: int) -> memoryview:
        if self.pos + size > self.end:
            raise SparkplugError("truncated", f"the payload ends inside a {size}-byte field")
        start = self.pos
        self.pos += size
        return memoryview(self.data)[start : self.pos]

    def fields(self) -> _Fields:
        return _Fields(self)


class _Fields:
    """Iterates (field number, wire type, value) where value is an int, or a memoryview for bytes."""

    __slots__ = ("r",)

    def __init__(self, reader: _Reader) -> None:
        self.r = reader

    def __iter__(self) -> _Fields:
        return self

    def __next__(self) -> tuple[int, int, int | memoryview]:
        r = self.r
        if r.pos >= r.end:
            raise StopIteration
        key = r.varint()
        number, wire = key >> 3, key & 7
        if number == 0 or number > 536_870_911:
            raise SparkplugError("invalid_protobuf", f"field number {number} is not allowed")
        if wire == _VARINT:
            return number, wire, r.varint()
        if wire == _FIXED64:
            return number, wire, r.take(8)
        if wire == _LENGTH:
            size = r.varint()
            if size > r.end - r.pos:
                raise SparkplugError("truncated", f"field {number} claims {size} bytes, {r.end - r.pos} are left")
            return number, wire, r.take(size)
        if wire == _FIXED32:
            return number, wire, r.take(4)
        raise SparkplugError("invalid_protobuf", f"field {number} has wire type {wire} (groups are not used)")


def _expect(number: int, wire: int, wanted: int) -> None:
    if wire != wanted:
        raise SparkplugError("invalid_protobuf", f"field {number} has wire type {wire}, expected {wanted}")


def _text(number: int, raw: int | memoryview) -> str:
    assert isinstance(raw, memoryview)
    try:
        return bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        raise SparkplugError("invalid_protobuf", f"field {number} is not UTF-8 text") from None


def decode_payload(data: bytes) -> Payload:
    """Decode a Sparkplug B ``Payload``."""
    payload = Payload()
    for number, wire, raw in _Reader(data).fields():
        if number == 1:
            _expect(number, wire, _VARINT)
            assert isinstance(raw, int)
            payload.timestamp = raw
        elif number == 2:
            _expect(number, wire, _LENGTH)
            assert isinstance(raw, memoryview)
            payload.metrics.append(_decode_metric(raw))
        elif number == 3:
            _expect(number, wire, _VARINT)
            assert isinstance(raw, int)
            payload.seq = raw
        elif number == 4:
            _expect(number, wire, _LENGTH)
            payload.uuid = _text(number, raw)
        elif number == 5:
            _expect(number, wire, _LENGTH)
            assert isinstance(raw, memoryview)
            payload.body = bytes(raw)
        # other fields (extensions 6..) are skipped
    return payload


def _decode_metric(data: memoryview) -> Metric:
    m = Metric()
    for number, wire, raw in _Reader(data).fields():
        if number == 1:
            _expect(number, wire, _LENGTH)
            m.name = _text(number, raw)
        elif number in (2, 3, 4, 5, 6, 7):
            _expect(number, wire, _VARINT)
            assert isinstance(raw, int)
            if number == 2:
                m.alias = raw
            elif number == 3:
                m.timestamp = raw
            elif number == 4:
                m.datatype = raw & _MASK32
            elif number == 5:
                m.is_historical = bool(raw)
            elif number == 6:
                m.is_transient = bool(raw)
            else:
                m.is_null = bool(raw)
        elif number in (8, 9):
            _expect(number, wire, _LENGTH)  # metadata, properties: skipped
        elif number in (_INT_VALUE, _LONG_VALUE, _BOOL_VALUE):
            _expect(number, wire, _VARINT)
            assert isinstance(raw, int)
            m.raw = bool(raw) if number == _BOOL_VALUE else raw & _MASK32 if number == _INT_VALUE else raw
            m.value_field = number
        elif number == _FLOAT_VALUE:
            _expect(number, wire, _FIXED32)
            assert isinstance(raw, memoryview)
            m.raw = struct.unpack("<f", raw)[0]
            m.value_field = number
        elif number == _DOUBLE_VALUE:
            _expect(number, wire, _FIXED64)
            assert isinstance(raw, memoryview)
            m.raw = struct.unpack("<d", raw)[0]
            m.value_field = number
        elif number == _STRING_VALUE:
            _expect(number, wire, _LENGTH)
            m.raw = _text(number, raw)
            m.value_field = number
        elif number == _BYTES_VALUE:
            _expect(number, wire, _LENGTH)
            assert isinstance(raw, memoryview)
            m.raw = bytes(raw)
            m.value_field = number
        elif number in _UNMAPPED_VALUES:
            _expect(number, wire, _LENGTH)
            m.raw = None
            m.value_field = number
    return m


# -- writing -------------------------------------------------------------------------------------


def _varint(value: int) -> bytes:
    value &= _MASK64
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _key(number: int, wire: int) -> bytes:
    return _varint(number << 3 | wire)


def _length_field(number: int, data: bytes) -> bytes:
    return _key(number, _LENGTH) + _varint(len(data)) + data


def encode_metric(
    *,
    name: str | None = None,
    alias: int | None = None,
    timestamp: int | None = None,
    datatype: DataType,
    value: RawValue | None,
) -> bytes:
    """One ``Metric`` message; ``value=None`` writes ``is_null``."""
    out = bytearray()
    if name is not None:
        out += _length_field(1, name.encode("utf-8"))
    if alias is not None:
        out += _key(2, _VARINT) + _varint(alias)
    if timestamp is not None:
        out += _key(3, _VARINT) + _varint(timestamp)
    out += _key(4, _VARINT) + _varint(int(datatype))
    if value is None:
        out += _key(7, _VARINT) + b"\x01"
        return bytes(out)
    if datatype is DataType.BOOLEAN:
        out += _key(_BOOL_VALUE, _VARINT) + (b"\x01" if value else b"\x00")
    elif datatype in _TEXT_TYPES:
        out += _length_field(_STRING_VALUE, str(value).encode("utf-8"))
    elif datatype is DataType.FLOAT:
        out += _key(_FLOAT_VALUE, _FIXED32) + struct.pack("<f", float(value))
    elif datatype is DataType.DOUBLE:
        out += _key(_DOUBLE_VALUE, _FIXED64) + struct.pack("<d", float(value))
    elif datatype in (DataType.BYTES, DataType.FILE):
        if not isinstance(value, bytes):
            raise TypeError(f"a {datatype.name} metric holds bytes, not {type(value).__name__}")
        out += _length_field(_BYTES_VALUE, value)
    elif datatype in (DataType.INT64, DataType.UINT64, DataType.DATETIME):
        out += _key(_LONG_VALUE, _VARINT) + _varint(int(value))
    elif datatype in _SIGNED_BITS or datatype in _UNSIGNED_BITS:
        out += _key(_INT_VALUE, _VARINT) + _varint(int(value) & _MASK32)
    else:
        raise TypeError(f"cannot encode a {datatype.name} metric")
    return bytes(out)


def encode_payload(*, timestamp: int | None, metrics: list[bytes], seq: int | None = None) -> bytes:
    """A ``Payload`` from already encoded metrics (see ``encode_metric``)."""
    out = bytearray()
    if timestamp is not None:
        out += _key(1, _VARINT) + _varint(timestamp)
    for metric in metrics:
        out += _length_field(2, metric)
    if seq is not None:
        out += _key(3, _VARINT) + _varint(seq)
    return bytes(out)


def rebirth_request(timestamp_ms: int) -> bytes:
    """The NCMD payload asking an edge node to publish its births again."""
    metric = encode_metric(name=REBIRTH_METRIC, timestamp=timestamp_ms, datatype=DataType.BOOLEAN, value=True)
    return encode_payload(timestamp=timestamp_ms, metrics=[metric])
