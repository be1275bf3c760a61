"""Register ↔ value conversions: golden frames for every type and order, and round trips."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from avila_edge.config.model import DataType, PointConfig
from avila_edge.driver.scaling import to_engineering
from drivers.modbus import codec
from drivers.modbus.config import ModbusAddress
from hil.registers import encode as hil_encode


def addr(**kw: object) -> ModbusAddress:
    return ModbusAddress(table="holding", address=0, **kw)  # type: ignore[arg-type]


# float32 123.456 = 0x42F6E979: the four classic orders
@pytest.mark.parametrize(
    ("byte_order", "word_order", "registers"),
    [
        ("big", "big", [0x42F6, 0xE979]),  # ABCD
        ("big", "little", [0xE979, 0x42F6]),  # CDAB
        ("little", "big", [0xF642, 0x79E9]),  # BADC
        ("little", "little", [0x79E9, 0xF642]),  # DCBA
    ],
)
def test_float32_in_every_order_decodes_the_golden_frame(
    byte_order: str, word_order: str, registers: list[int]
) -> None:
    a = addr(byte_order=byte_order, word_order=word_order)
    value = codec.decode_raw(codec.registers_to_bytes(registers), 0, DataType.FLOAT32, a)
    assert value == pytest.approx(123.456, rel=1e-7)
    assert codec.encode_raw(value, DataType.FLOAT32, a) == registers


@pytest.mark.parametrize(
    ("kind", "registers", "value"),
    [
        (DataType.INT16, [0xFB2E], -1234),
        (DataType.UINT16, [0xFB2E], 64302),
        (DataType.INT32, [0xF8A4, 0x32EB], -123456789),
        (DataType.UINT32, [0x075B, 0xCD15], 123456789),
        (DataType.INT64, [0xFFFF, 0xFFFF, 0xFFFF, 0xFFFE], -2),
        (DataType.UINT64, [0x0000, 0x0001, 0x0000, 0x0000], 2**32),
        (DataType.FLOAT64, [0x4009, 0x21FB, 0x5444, 0x2D18], math.pi),
        (DataType.BOOL, [0x0001], True),
    ],
)
def test_integer_and_double_golden_frames(kind: DataType, registers: list[int], value: object) -> None:
    assert codec.decode_raw(codec.registers_to_bytes(registers), 0, kind, addr()) == value
    assert codec.encode_raw(value, kind, addr()) == registers  # type: ignore[arg-type]


def test_string_is_ascii_with_trailing_nuls_trimmed() -> None:
    a = addr(length=4)
    regs = [0x5055, 0x4D50, 0x2D30, 0x3100]  # "PUMP-01\0"
    assert codec.decode_raw(codec.registers_to_bytes(regs), 0, DataType.STRING, a) == "PUMP-01"
    assert codec.encode_raw("PUMP-01", DataType.STRING, a) == regs
    with pytest.raises(codec.CodecError, match="does not fit"):
        codec.encode_raw("x" * 9, DataType.STRING, a)


def test_bit_in_register() -> None:
    block = codec.registers_to_bytes([0b0000_0000_0000_0100])
    assert codec.decode_raw(block, 0, DataType.BOOL, addr(bit=2)) is True
    assert codec.decode_raw(block, 0, DataType.BOOL, addr(bit=3)) is False


def test_scale_and_offset_apply_and_invert() -> None:
    p = PointConfig(id="a/b", address=addr(), type=DataType.INT16, scale=0.1, offset=-40)
    assert to_engineering(650, p) == pytest.approx(25.0)
    assert codec.from_engineering(25.0, p) == 650
    neutral = PointConfig(id="a/b", address=addr(), type=DataType.INT16)
    assert to_engineering(7, neutral) == 7
    assert type(to_engineering(7, neutral)) is int


@pytest.mark.parametrize(("kind", "value"), [(DataType.INT16, 40000), (DataType.UINT16, -1), (DataType.INT16, 1.5)])
def test_out_of_range_writes_are_refused(kind: DataType, value: float) -> None:
    with pytest.raises(codec.CodecError):
        codec.encode_raw(value, kind, addr())


orders = st.sampled_from(["big", "little"])
INT_BOUNDS = {"int16": 15, "int32": 31, "int64": 63}


@given(st.sampled_from(["int16", "int32", "int64", "uint16", "uint32", "uint64"]), orders, orders, st.data())
def test_integers_decode_what_an_independent_encoder_wrote(kind: str, bo: str, wo: str, data: st.DataObject) -> None:
    bits = {"16": 16, "32": 32, "64": 64}[kind[-2:]]
    lo, hi = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if kind.startswith("int") else (0, 2**bits - 1)
    value = data.draw(st.integers(min_value=lo, max_value=hi))
    regs = hil_encode(value, kind, byte_order=bo, word_order=wo)  # type: ignore[arg-type]
    a = addr(byte_order=bo, word_order=wo)
    assert codec.decode_raw(codec.registers_to_bytes(regs), 0, DataType(kind), a) == value
    assert codec.encode_raw(value, DataType(kind), a) == regs


@given(st.floats(allow_nan=False, width=32), orders, orders)
def test_float32_decodes_what_an_independent_encoder_wrote(value: float, bo: str, wo: str) -> None:
    regs = hil_encode(value, "float32", byte_order=bo, word_order=wo)  # type: ignore[arg-type]
    assert (
        codec.decode_raw(codec.registers_to_bytes(regs), 0, DataType.FLOAT32, addr(byte_order=bo, word_order=wo))
        == value
    )


@given(st.lists(st.integers(min_value=0, max_value=0xFFFF), min_size=1, max_size=8), st.sampled_from(list(DataType)))
def test_any_register_garbage_decodes_or_raises_value_error(regs: list[int], kind: DataType) -> None:
    a = addr(length=len(regs))
    if codec.register_count(kind, a) > len(regs):
        return
    codec.decode_raw(codec.registers_to_bytes(regs), 0, kind, a)


@given(
    st.lists(st.integers(min_value=0, max_value=0xFFFF), min_size=6, max_size=6),
    st.sampled_from([k for k in DataType if k is not DataType.STRING]),
    orders,
    orders,
    st.integers(min_value=0, max_value=2),
)
def test_a_prepared_decoder_decodes_exactly_as_decode_raw(
    regs: list[int], kind: DataType, bo: str, wo: str, offset: int
) -> None:
    a = addr(byte_order=bo, word_order=wo)
    block = codec.registers_to_bytes(regs)
    expected = codec.decode_raw(block, offset, kind, a)
    got = codec.decoder(kind, a, offset)(block)
    assert got == expected or (got != got and expected != expected)  # NaN == NaN here


def test_points_that_decode_alike_share_one_decoder() -> None:
    a = ModbusAddress(table="holding", address=100, unit_id=2)
    b = ModbusAddress(table="input", address=7000)
    assert codec.decoder(DataType.FLOAT32, a, 4) is codec.decoder(DataType.FLOAT32, b, 4)
    assert codec.decoder(DataType.FLOAT32, a, 4) is not codec.decoder(DataType.FLOAT32, a, 6)
    swapped = ModbusAddress(table="holding", address=100, word_order="little")
    assert codec.decoder(DataType.FLOAT32, a, 4) is not codec.decoder(DataType.FLOAT32, swapped, 4)
    block = codec.registers_to_bytes([0, 0b1000, 0b0100])
    bit2 = ModbusAddress(table="holding", address=9, bit=2)
    bit3 = ModbusAddress(table="holding", address=9, bit=3)
    assert (codec.decoder(DataType.BOOL, bit3, 1)(block), codec.decoder(DataType.BOOL, bit2, 1)(block)) == (True, False)
    assert codec.decoder(DataType.BOOL, bit2, 2)(block) is True
