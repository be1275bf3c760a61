"""The canonical entry encoding is exact, stable and round-trips."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from avila_edge.core import Event, JournalError, Quality, Reading
from avila_edge.journal import body_seq, decode_event, decode_reading, encode_event, encode_reading


def test_reading_body_is_sorted_compact_json_with_seq() -> None:
    r = Reading(point="pump1/flow", value=12.5, ts_source=1, ts_gateway=2)
    assert encode_reading(r, 7) == (
        b'{"point":"pump1/flow","quality":"good","seq":7,"ts_gateway":2,"ts_source":1,"type":"reading","value":12.5}'
    )


def test_bad_reading_body_carries_reason_and_null_value() -> None:
    r = Reading(point="pump1/flow", value=None, quality=Quality.BAD, reason="timeout", ts_source=1, ts_gateway=2)
    assert encode_reading(r, 0) == (
        b'{"point":"pump1/flow","quality":"bad","reason":"timeout","seq":0,"ts_gateway":2,"ts_source":1,'
        b'"type":"reading","value":null}'
    )


def test_event_body_sorts_attribute_keys() -> None:
    e = Event(kind="gap", source="journal", ts=5, attrs={"z": 1, "a": [1, "x"]})
    assert (
        encode_event(e, 3)
        == b'{"attrs":{"a":[1,"x"],"z":1},"kind":"gap","seq":3,"source":"journal","ts":5,"type":"event"}'
    )
    assert body_seq(encode_event(e, 3)) == 3


def test_bool_and_int_values_keep_their_type() -> None:
    for value in (True, False, 3, -(2**62), "text"):
        r = Reading(point="a/b", value=value, ts_source=1, ts_gateway=1)
        back = decode_reading(encode_reading(r, 1)).value
        assert back == value and type(back) is type(value)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_float_is_refused_naming_the_point(value: float) -> None:
    r = Reading(point="pump1/flow", value=value, ts_source=1, ts_gateway=1)
    with pytest.raises(JournalError, match="pump1/flow"):
        encode_reading(r, 0)


values = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=40),
)


@given(
    point=st.from_regex(r"[a-z][a-z0-9_-]{0,10}/[a-z][a-z0-9_.-]{0,10}", fullmatch=True),
    value=values,
    quality=st.sampled_from(list(Quality)),
    ts=st.integers(min_value=0, max_value=2**63 - 1),
    seq=st.integers(min_value=0, max_value=2**53),
)
def test_any_reading_round_trips(point: str, value: object, quality: Quality, ts: int, seq: int) -> None:
    reason = "" if quality is Quality.GOOD else "because"
    r = Reading(point=point, value=value, quality=quality, reason=reason, ts_source=ts, ts_gateway=ts)  # type: ignore[arg-type]
    assert decode_reading(encode_reading(r, seq)) == r.with_seq(seq)


@given(attrs=st.dictionaries(st.text(max_size=8), st.one_of(st.none(), st.integers(), st.text(max_size=8)), max_size=5))
def test_any_event_round_trips(attrs: dict[str, object]) -> None:
    e = Event(kind="k", source="s", ts=1, attrs=attrs)
    assert decode_event(encode_event(e, 9)) == e.with_seq(9)
