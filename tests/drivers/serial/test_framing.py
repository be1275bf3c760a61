"""Framing: lines and regex frames come out the same however the stream is chunked; over-long lines
and garbage are discarded and reported, and what follows them is intact."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.serial.framing import Discarded, Frame, LineFramer, Piece, RegexFramer


def _feed(framer: LineFramer | RegexFramer, data: bytes, cuts: list[int]) -> list[Piece]:
    out: list[Piece] = []
    last = 0
    for cut in sorted({c % (len(data) + 1) for c in cuts}):
        out += framer.feed(data[last:cut])
        last = cut
    out += framer.feed(data[last:])
    return out


def test_lines_split_at_a_two_byte_terminator_that_straddles_chunks() -> None:
    framer = LineFramer(b"\r\n", 64)
    assert framer.feed(b"T=21.5\r") == []
    assert framer.feed(b"\nP=1.01\r\n\r\n") == [Frame(b"T=21.5"), Frame(b"P=1.01")]
    assert framer.buffered == 0


def test_an_over_long_line_is_discarded_up_to_the_next_terminator_once() -> None:
    framer = LineFramer(b"\r\n", 16)
    out = framer.feed(b"A" * 20)
    assert out == [Discarded("oversize", b"A" * 20, 20)]
    assert framer.feed(b"B" * 100) == []  # still the same line: reported once
    assert framer.buffered <= 1
    assert framer.feed(b"CCC\r\nok\r\n") == [Frame(b"ok")]


def test_an_over_long_line_arriving_whole_is_discarded() -> None:
    framer = LineFramer(b"\n", 4, strip_cr=True)
    assert framer.feed(b"12345\nabcd\r\n") == [Discarded("oversize", b"12345", 5), Frame(b"abcd")]


def test_regex_frames_report_garbage_between_them_and_overflow() -> None:
    framer = RegexFramer(re.compile(rb"<(?P<v>[0-9.]+)>"), 32)
    assert framer.feed(b"<1.5> <2") == [Frame(b"<1.5>")]
    assert framer.feed(b".5>xx<3>") == [Frame(b"<2.5>"), Discarded("garbage", b"xx", 2), Frame(b"<3>")]
    out = framer.feed(b"z" * 40)
    assert out == [Discarded("oversize", b"z" * 40, 40)]
    assert framer.feed(b"<4>") == [Frame(b"<4>")]


_LINES = st.lists(st.binary(max_size=30).map(lambda b: b.replace(b"\n", b"").replace(b"\r", b"")), max_size=8)


@settings(max_examples=200, deadline=None)
@given(_LINES, st.lists(st.integers(min_value=0, max_value=400), max_size=6))
def test_line_frames_do_not_depend_on_chunking(lines: list[bytes], cuts: list[int]) -> None:
    data = b"".join(line + b"\r\n" for line in lines)
    out = _feed(LineFramer(b"\r\n", 20), data, cuts)
    assert [p for p in out if isinstance(p, Frame)] == [Frame(line) for line in lines if 0 < len(line) <= 20]
    assert sum(isinstance(p, Discarded) for p in out) == sum(len(line) > 20 for line in lines)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.sampled_from([b"<1>", b"<22.5>", b"xx", b" ", b"<", b">"]), max_size=12), st.lists(st.integers(0, 80))
)
def test_regex_frames_do_not_depend_on_chunking(parts: list[bytes], cuts: list[int]) -> None:
    data = b"".join(parts)
    regex = re.compile(rb"<[0-9.]+>")
    whole = [p for p in RegexFramer(regex, 1000).feed(data) if isinstance(p, Frame)]
    chunked = [p for p in _feed(RegexFramer(regex, 1000), data, cuts) if isinstance(p, Frame)]
    assert chunked == whole == [Frame(m.group(0)) for m in regex.finditer(data)]


def test_a_line_of_exactly_max_line_bytes_is_framed_when_its_terminator_arrives_split() -> None:
    framer = LineFramer(b"\r\n", 4)
    assert framer.feed(b"abcd\r") == []
    assert framer.feed(b"\nefghi\r\n") == [Frame(b"abcd"), Discarded("oversize", b"efghi", 5)]
