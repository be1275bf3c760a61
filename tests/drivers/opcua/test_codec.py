"""Golden values and property-based fuzzing of the pure OPC UA codec."""

from __future__ import annotations

import contextlib
import datetime as dt
import math
import uuid
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from avila_edge.config.model import DataType, PointConfig
from avila_edge.core import Quality
from drivers.opcua.codec import (
    BUILTIN_INTEGERS,
    MAX_STRING,
    CodecError,
    NodeRef,
    Sample,
    datetime_to_ns,
    decode_value,
    encode_write,
    parse_node_id,
    quality_of,
    source_time,
)
from drivers.opcua.config import OpcUaAddress


def pt(kind: str = "float64", **kw: Any) -> PointConfig:
    return PointConfig(id="pump1/x", address=OpcUaAddress(node="ns=2;s=x"), type=DataType(kind), **kw)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ns=2;s=Pump1.Flow", NodeRef(2, None, "s", "Pump1.Flow")),
        ("ns=2;i=1001", NodeRef(2, None, "i", 1001)),
        ("i=2258", NodeRef(0, None, "i", 2258)),
        ("s=plain", NodeRef(0, None, "s", "plain")),
        ("ns=3;s=a;b=c", NodeRef(3, None, "s", "a;b=c")),
        ("nsu=urn:vendor:plant;s=Pump1.Flow", NodeRef(0, "urn:vendor:plant", "s", "Pump1.Flow")),
        ("nsu=http://x.org/UA/;i=7", NodeRef(0, "http://x.org/UA/", "i", 7)),
        (
            "ns=1;g=09087E75-8E5E-499B-954F-F2A9603DB28A",
            NodeRef(1, None, "g", "09087e75-8e5e-499b-954f-f2a9603db28a"),
        ),
        ("ns=1;b=M/RbKBsRVkePCePcx24oRA==", NodeRef(1, None, "b", "M/RbKBsRVkePCePcx24oRA==")),
        ("  ns=2;s=Pump1.Flow ", NodeRef(2, None, "s", "Pump1.Flow")),
    ],
)
def test_node_id_strings_parse_into_their_parts(text: str, expected: NodeRef) -> None:
    assert parse_node_id(text) == expected


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("Pump1.Flow", "is not a NodeId"),
        ("ns=2;x=1", "is not a NodeId"),
        ("ns=70000;i=1", "beyond 65535"),
        ("ns=2;i=abc", "must be a whole number"),
        ("ns=2;i=4294967296", "must be a whole number"),
        ("ns=2;s=", "empty string identifier"),
        ("ns=2;g=not-a-guid", "is not a GUID"),
        ("ns=2;b=***", "is not base64"),
        ("nsu= ;s=x", "empty namespace URI"),
        ("ns=2;s=" + "x" * 5000, "longer than 4096"),
    ],
)
def test_malformed_node_ids_are_refused_in_plain_words(text: str, says: str) -> None:
    with pytest.raises(CodecError, match=says):
        parse_node_id(text)


def test_a_resolved_namespace_uri_becomes_an_index() -> None:
    ref = parse_node_id("nsu=urn:vendor:plant;s=Pump1.Flow").with_namespace(4)
    assert str(ref) == "ns=4;s=Pump1.Flow"


@given(
    st.builds(
        NodeRef,
        st.integers(0, 65535),
        st.none() | st.text(min_size=1).filter(lambda u: u.strip() and ";" not in u),
        st.just("s"),
        st.text(min_size=1, max_size=200).filter(lambda s: s.strip() == s and s),
    )
    | st.builds(NodeRef, st.integers(0, 65535), st.none(), st.just("i"), st.integers(0, 2**32 - 1))
)
def test_a_node_id_survives_formatting_and_parsing(ref: NodeRef) -> None:
    if ref.namespace_uri is not None:
        ref = NodeRef(0, ref.namespace_uri, ref.kind, ref.identifier)
    assert parse_node_id(str(ref)) == ref


@given(st.text(max_size=300))
def test_any_text_either_parses_or_is_refused_with_a_codec_error(text: str) -> None:
    with contextlib.suppress(CodecError):
        parse_node_id(text)


@pytest.mark.parametrize(
    ("code", "quality"),
    [
        (0x00000000, Quality.GOOD),
        (0x00A20000, Quality.GOOD),  # GoodLocalOverride
        (0x40000000, Quality.UNCERTAIN),
        (0x408F0000, Quality.UNCERTAIN),  # UncertainLastUsableValue
        (0x80000000, Quality.BAD),
        (0x808C0000, Quality.BAD),  # BadSensorFailure
        (0xC0000000, Quality.BAD),  # reserved severity: treated as Bad
        (0x00000400, Quality.GOOD),  # info bits do not change the severity
    ],
)
def test_status_code_severity_bits_give_the_quality(code: int, quality: Quality) -> None:
    assert quality_of(code) is quality


def test_timestamps_become_ns_and_absent_or_absurd_ones_are_ignored() -> None:
    assert datetime_to_ns(dt.datetime(2024, 5, 1, 12, 0, 0, 250_000, tzinfo=dt.UTC)) == 1_714_564_800_250_000_000
    assert datetime_to_ns(dt.datetime(2024, 5, 1, 12, 0, 0)) == 1_714_564_800_000_000_000  # naive is UTC
    assert datetime_to_ns(dt.datetime(2024, 5, 1, 14, 0, tzinfo=dt.timezone(dt.timedelta(hours=2)))) == (
        1_714_564_800_000_000_000
    )
    assert datetime_to_ns(None) is None
    assert datetime_to_ns(dt.datetime(1601, 1, 1, tzinfo=dt.UTC)) is None  # OPC UA's "no time"
    assert datetime_to_ns(dt.datetime(9999, 12, 31, tzinfo=dt.UTC)) is None  # beyond int64 ns
    sample = Sample(handle=0, value=1.0, variant="Double", status=0, status_name="Good", source_ns=None, server_ns=7)
    assert source_time(sample, now_ns=9) == 7
    assert source_time(Sample(0, 1.0, "Double", 0, "Good", 5, 7), now_ns=9) == 5
    assert source_time(Sample(0, 1.0, "Double", 0, "Good", None, None), now_ns=9) == 9


@pytest.mark.parametrize(
    ("raw", "variant", "point", "value"),
    [
        (12.5, "Double", pt(), 12.5),
        (3, "Int32", pt(), 3.0),
        (3, "Int32", pt("int32"), 3),
        (3.0, "Double", pt("uint16"), 3),
        (True, "Boolean", pt("bool"), True),
        (0, "Byte", pt("bool"), False),
        (True, "Boolean", pt("uint16"), 1),
        (10, "Int16", pt("float64", scale=0.1, offset=-1.0), 0.0),
        (2**63, "UInt64", pt("uint64"), 2**63),
        ("PUMP-01", "String", pt("string"), "PUMP-01"),
        (b"caf\xc3\xa9", "ByteString", pt("string"), "café"),
        (42, "UInt32", pt("string"), "42"),
        (False, "Boolean", pt("string"), "false"),
        (dt.datetime(2024, 5, 1, tzinfo=dt.UTC), "DateTime", pt("string"), "2024-05-01T00:00:00+00:00"),
        (uuid.UUID(int=1), "Guid", pt("string"), "00000000-0000-0000-0000-000000000001"),
    ],
)
def test_values_become_the_points_type_with_scale_and_offset(
    raw: Any, variant: str, point: PointConfig, value: Any
) -> None:
    got = decode_value(raw, variant, point)
    assert got == value
    assert type(got) is type(value)


@pytest.mark.parametrize(
    ("raw", "variant", "point", "says"),
    [
        (None, "Null", pt(), "no value"),
        ([1.0, 2.0], "Double", pt(), "array of 2"),
        ("abc", "String", pt(), "expected a number for a float64 point, the server sent String 'abc'"),
        (2.5, "Double", pt("bool"), "expected a Boolean"),
        (2, "Int32", pt("bool"), "expected a Boolean"),
        (70_000, "Int32", pt("int16"), "outside the range of int16"),
        (-1, "Int32", pt("uint32"), "outside the range of uint32"),
        (1.5, "Double", pt("int32"), "whole number"),
        (math.inf, "Double", pt("int32"), "whole number"),
        (math.nan, "Double", pt(), "nan"),
        (math.inf, "Double", pt(), "inf"),
        (b"\xff\xfe", "ByteString", pt("string"), "not UTF-8"),
        (b"x" * (MAX_STRING + 1), "ByteString", pt("string"), "more than"),
        ("x" * (MAX_STRING + 1), "String", pt("string"), "more than"),
        (object(), "ExtensionObject", pt("string"), "cannot be shown as text"),
        ({"a": 1}, "ExtensionObject", pt(), "expected a number"),
    ],
)
def test_values_that_do_not_fit_are_refused_in_plain_words(
    raw: Any, variant: str, point: PointConfig, says: str
) -> None:
    with pytest.raises(CodecError, match=says):
        decode_value(raw, variant, point)


_ANY_VALUE = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=50)
    | st.binary(max_size=50)
    | st.datetimes()
    | st.uuids(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)


@given(_ANY_VALUE, st.sampled_from(list(DataType)), st.sampled_from(["Double", "String", "Null", "Variant", ""]))
def test_any_value_decodes_or_is_refused_with_a_codec_error(raw: Any, kind: DataType, variant: str) -> None:
    try:
        value = decode_value(raw, variant, pt(kind.value))
    except CodecError:
        return
    assert isinstance(value, bool | int | float | str)
    if isinstance(value, float):
        assert math.isfinite(value)


@pytest.mark.parametrize(
    ("value", "point", "builtin", "raw"),
    [
        (1234, pt(), "Double", 1234.0),
        (1.8, pt(scale=0.001), "Double", 1800.0),
        (1.5, pt(), "Float", 1.5),
        (7, pt("uint16"), "UInt16", 7),
        (7.0, pt("uint16"), "UInt16", 7),
        (0.0007, pt(scale=0.0001), "Int32", 7),  # float noise of the inverse scale is not a fraction
        (True, pt("bool"), "Boolean", True),
        (1, pt("bool"), "Boolean", True),
        ("auto", pt("string"), "String", "auto"),
        (-128, pt("int16"), "SByte", -128),
    ],
)
def test_writes_take_the_nodes_built_in_type(value: Any, point: PointConfig, builtin: str, raw: Any) -> None:
    got = encode_write(value, point, builtin)
    assert got == raw
    assert type(got) is type(raw)


@pytest.mark.parametrize(
    ("value", "point", "builtin", "says"),
    [
        ("fast", pt(), "Double", "not a number"),
        (1.5, pt(), "Int16", "not a whole number"),
        (70_000, pt("uint16"), "UInt16", "does not fit a UInt16"),
        (-1, pt("uint32"), "Byte", "does not fit a Byte"),
        (2, pt("bool"), "Boolean", "not true or false"),
        (5, pt("string"), "String", "not text"),
        (1.0, pt(scale=0.0), "Double", "scale 0"),
        (math.nan, pt(), "Double", "not a finite number"),
        (1e39, pt(), "Float", "does not fit a Float"),
        (1, pt(), "DateTime", "not supported"),
        ("x" * (MAX_STRING + 1), pt("string"), "String", "longer than"),
    ],
)
def test_writes_that_do_not_fit_the_node_are_refused(value: Any, point: PointConfig, builtin: str, says: str) -> None:
    with pytest.raises(CodecError, match=says):
        encode_write(value, point, builtin)


@given(
    st.one_of(st.booleans(), st.integers(), st.floats(), st.text(max_size=20)),
    st.sampled_from(
        [
            "Boolean",
            "SByte",
            "Byte",
            "Int16",
            "UInt16",
            "Int32",
            "UInt32",
            "Int64",
            "UInt64",
            "Float",
            "Double",
            "String",
            "DateTime",
            "Guid",
        ]
    ),
    st.floats(min_value=-1e6, max_value=1e6),
)
def test_any_write_is_encoded_within_range_or_refused(value: Any, builtin: str, scale: float) -> None:
    point = pt("float64", scale=scale)
    try:
        raw = encode_write(value, point, builtin)
    except CodecError:
        return
    if builtin in ("Float", "Double"):
        assert isinstance(raw, float)
        assert math.isfinite(raw)
    elif builtin == "Boolean":
        assert isinstance(raw, bool)
    elif builtin == "String":
        assert isinstance(raw, str)
    else:
        low, high = BUILTIN_INTEGERS[builtin]
        assert isinstance(raw, int)
        assert low <= raw <= high
