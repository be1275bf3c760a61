"""Pure conversions between Modbus registers/bits and point values. No I/O."""

from __future__ import annotations

import functools
import math
import struct
from collections.abc import Callable, Sequence

from avila_edge.config.model import DataType, PointConfig
from avila_edge.core import Value
from avila_edge.driver.payload import INTEGER_RANGES
from avila_edge.driver.scaling import to_raw
from drivers.modbus.config import ModbusAddress, Order

_FORMATS: dict[DataType, str] = {
    DataType.INT16: "h",
    DataType.UINT16: "H",
    DataType.INT32: "i",
    DataType.UINT32: "I",
    DataType.INT64: "q",
    DataType.UINT64: "Q",
    DataType.FLOAT32: "f",
    DataType.FLOAT64: "d",
}
BIT_TABLES = ("coil", "discrete")


class CodecError(ValueError):
    """A value cannot be converted (out of range, wrong type)."""


def register_count(kind: DataType, address: ModbusAddress) -> int:
    """How many registers (or bits, for coil/discrete) a point occupies."""
    if address.table in BIT_TABLES or address.bit is not None:
        return 1
    if kind is DataType.STRING:
        return address.length or 0
    if kind is DataType.BOOL:
        return 1
    return struct.calcsize(_FORMATS[kind]) // 2


def _ordered(raw: bytes, byte_order: Order, word_order: Order) -> bytes:
    """Reorder bytes read in wire order into big-endian (ABCD) order, or back (it is its own inverse)."""
    if byte_order == "big" and word_order == "big":
        return raw
    words = [raw[i : i + 2] for i in range(0, len(raw), 2)]
    if word_order == "little":
        words.reverse()
    if byte_order == "little":
        words = [w[::-1] for w in words]
    return b"".join(words)


def registers_to_bytes(registers: Sequence[int]) -> bytes:
    return struct.pack(f">{len(registers)}H", *registers)


def decode_raw(block: bytes, offset: int, kind: DataType, address: ModbusAddress) -> Value:
    """The raw value of a register point whose first register is ``offset`` in ``block`` (wire bytes)."""
    if address.bit is not None:
        (word,) = struct.unpack_from(">H", block, offset * 2)
        return bool((word >> address.bit) & 1)
    count = register_count(kind, address)
    raw = _ordered(block[offset * 2 : (offset + count) * 2], address.byte_order, address.word_order)
    if kind is DataType.STRING:
        return raw.split(b"\0", 1)[0].decode("ascii", errors="replace").strip()
    if kind is DataType.BOOL:
        return raw != b"\0\0"
    (value,) = struct.unpack(">" + _FORMATS[kind], raw)
    return value  # type: ignore[no-any-return]


def decoder(kind: DataType, address: ModbusAddress, offset: int) -> Callable[[bytes], Value]:
    """``decode_raw`` for one point, prepared once: the format compiled and the byte order settled.

    Points that decode alike (same type, bit, length, byte and word order and offset in their block)
    share one decoder: a site of many float32 points holds a few hundred, not one per point."""
    return _shared_decoder(kind, address.bit, address.length, address.byte_order, address.word_order, offset)


@functools.cache
def _shared_decoder(
    kind: DataType, bit: int | None, length: int | None, byte_order: Order, word_order: Order, offset: int
) -> Callable[[bytes], Value]:
    address = ModbusAddress("holding", 0, bit=bit, length=length, byte_order=byte_order, word_order=word_order)
    if address.bit is not None or kind in (DataType.STRING, DataType.BOOL):
        return lambda block: decode_raw(block, offset, kind, address)
    unpack = struct.Struct(">" + _FORMATS[kind]).unpack_from
    start = offset * 2
    if address.byte_order == "big" and address.word_order == "big":
        return lambda block: unpack(block, start)[0]
    end = start + register_count(kind, address) * 2
    orders = (address.byte_order, address.word_order)
    return lambda block: unpack(_ordered(block[start:end], *orders))[0]


def encode_raw(value: Value, kind: DataType, address: ModbusAddress) -> list[int]:
    """Registers for a raw value (the inverse of ``decode_raw``)."""
    if kind is DataType.STRING:
        length = address.length or 0
        data = str(value).encode("ascii")
        if len(data) > length * 2:
            raise CodecError(f"text of {len(data)} characters does not fit in {length} registers")
        raw = data.ljust(length * 2, b"\0")
    elif kind is DataType.BOOL:
        raw = b"\0\1" if value else b"\0\0"
    else:
        fmt = _FORMATS[kind]
        if kind in INTEGER_RANGES:
            low, high = INTEGER_RANGES[kind]
            if isinstance(value, float) and not value.is_integer():
                raise CodecError(f"{value} is not a whole number for {kind.value}")
            if not isinstance(value, int | float) or not low <= int(value) <= high:
                raise CodecError(f"{value!r} is out of range for {kind.value} ({low}..{high})")
            raw = struct.pack(">" + fmt, int(value))
        else:
            if not isinstance(value, int | float) or isinstance(value, bool):
                raise CodecError(f"{value!r} is not a number")
            raw = struct.pack(">" + fmt, float(value))
    wire = _ordered(raw, address.byte_order, address.word_order)
    return list(struct.unpack(f">{len(wire) // 2}H", wire))


def from_engineering(value: Value, point: PointConfig) -> Value:
    """The raw value to write for an engineering ``value`` (inverse of ``to_engineering``)."""
    if isinstance(value, bool | str) or point.type in (DataType.BOOL, DataType.STRING):
        return value
    try:
        raw = to_raw(value, point)
    except ValueError as exc:
        raise CodecError(str(exc)) from None
    if point.type in INTEGER_RANGES:
        if not math.isfinite(raw):
            raise CodecError(f"{value} is not a finite number")
        return round(raw)
    return raw


# -- RTU framing ----------------------------------------------------------------------------------

_CRC_TABLE: tuple[int, ...] = tuple(
    functools.reduce(lambda crc, _: (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1, range(8), byte) for byte in range(256)
)
_FIXED_REPLY_SIZES = {5: 8, 6: 8, 15: 8, 16: 8}
"""Write replies echo address and value/quantity: unit, function, 4 bytes, CRC."""


def crc16(frame: bytes) -> bytes:
    """The Modbus RTU CRC of ``frame`` as it goes on the wire (low byte first)."""
    crc = 0xFFFF
    for byte in frame:
        crc = (crc >> 8) ^ _CRC_TABLE[(crc ^ byte) & 0xFF]
    return crc.to_bytes(2, "little")


def rtu_reply_size(frame: bytes) -> int | None:
    """The length of the RTU reply that ``frame`` starts (unit id first), or None if not yet known."""
    if len(frame) < 2:
        return None
    function = frame[1]
    if function & 0x80:
        return 5  # exception: unit, function | 0x80, code, CRC
    if function in _FIXED_REPLY_SIZES:
        return _FIXED_REPLY_SIZES[function]
    if len(frame) < 3:
        return None
    return 3 + frame[2] + 2  # reads: unit, function, byte count, data, CRC


def rtu_crc_fails(frame: bytes) -> bool:
    """True when ``frame`` holds a complete RTU reply whose CRC does not match its content."""
    size = rtu_reply_size(frame)
    if size is None or len(frame) < size:
        return False
    return crc16(frame[: size - 2]) != frame[size - 2 : size]


def rtu_odd_register_reply(frame: bytes) -> bool:
    """True when ``frame`` holds a complete register-read reply (function 3 or 4) with a good CRC
    but an odd byte count: half a register, which a decoder would silently drop."""
    if len(frame) < 3 or frame[1] not in (3, 4) or frame[2] % 2 == 0:
        return False
    size = rtu_reply_size(frame)
    return size is not None and len(frame) >= size and not rtu_crc_fails(frame)


def tcp_odd_register_reply(frame: bytes) -> bool:
    """True when ``frame`` starts with a complete Modbus TCP register-read reply (function 3 or 4)
    whose byte count is odd: half a register, which a decoder would silently drop."""
    if len(frame) < 9 or frame[7] not in (3, 4) or frame[8] % 2 == 0:
        return False
    return len(frame) >= 6 + int.from_bytes(frame[4:6], "big")


def frame_silence(baudrate: int, *, bytesize: int = 8, parity: str = "E", stopbits: int = 1) -> float:
    """The 3.5-character silence that separates RTU frames, in seconds (1.75 ms above 19200 baud)."""
    if baudrate > 19200:
        return 0.00175
    bits = 1 + bytesize + (0 if parity == "N" else 1) + stopbits
    return 3.5 * bits / baudrate
