"""RTU framing helpers: CRC against golden frames, reply sizes, the inter-frame silence."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.modbus.codec import crc16, frame_silence, rtu_crc_fails, rtu_reply_size

# frames as they went over the pty between pymodbus and mbpoll-compatible peers
GOLDEN = [
    (b"\x01\x03\x00\x00\x00\x03", b"\x05\xcb"),  # read holding 0..2 of unit 1
    (b"\x01\x03\x06\x00\x01\x00\x01\x00\x01", b"\x8c\xb5"),  # its reply
    (b"\x02\x03\x00\x00\x00\x03", b"\x05\xf8"),
    (b"\x01\x03\x00\x00\x00\x01", b"\x84\x0a"),
]


@pytest.mark.parametrize(("body", "crc"), GOLDEN)
def test_crc_matches_golden_frames(body: bytes, crc: bytes) -> None:
    assert crc16(body) == crc


def test_reply_sizes_follow_the_function_code() -> None:
    assert rtu_reply_size(b"\x01") is None
    assert rtu_reply_size(b"\x01\x03") is None  # the byte count has not arrived
    assert rtu_reply_size(b"\x01\x03\x06") == 11
    assert rtu_reply_size(b"\x01\x83") == 5  # exception
    assert rtu_reply_size(b"\x01\x06") == 8  # write single register echoes the request
    assert rtu_reply_size(b"\x01\x10") == 8


@given(st.integers(1, 247), st.binary(min_size=2, max_size=250).map(lambda b: b[: len(b) // 2 * 2]))
def test_a_complete_read_reply_passes_and_any_flipped_bit_fails(unit: int, data: bytes) -> None:
    body = bytes([unit, 3, len(data)]) + data
    frame = body + crc16(body)
    assert not rtu_crc_fails(frame)
    assert not rtu_crc_fails(frame[:-1])  # incomplete: not judged yet
    for position in (0, len(frame) // 2, len(frame) - 1):
        broken = bytearray(frame)
        broken[position] ^= 0x10
        if position == 2:
            continue  # a changed byte count changes the frame's length, not (yet) its CRC
        assert rtu_crc_fails(bytes(broken)) or rtu_reply_size(bytes(broken)) != len(frame)


def test_silence_is_three_and_a_half_characters_and_1_75_ms_above_19200_baud() -> None:
    assert frame_silence(9600, parity="E") == pytest.approx(3.5 * 11 / 9600)  # 4.01 ms
    assert frame_silence(9600, parity="N", stopbits=2) == pytest.approx(3.5 * 11 / 9600)
    assert frame_silence(9600, parity="N") == pytest.approx(3.5 * 10 / 9600)
    assert frame_silence(19200) == pytest.approx(3.5 * 11 / 19200)  # 2.0 ms
    assert frame_silence(38400) == frame_silence(115200) == 0.00175
